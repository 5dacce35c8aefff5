"""Warm starts: a local Snakemake run's jobs fork from one process that imported torch once.

Every network job of the demo is a fresh ``matchbench`` process, and each paid 7-9 s of imports
(torch, timm and through them torchvision, which imports ``torch._dynamo``; open_clip; faiss)
before a few seconds of work: a quarter of the demo's CPU time
(``benchmarks/job_overheads.py``). So a local run starts one **server** (:func:`start`, from
the Snakefile's ``onstart`` when ``warm_start`` is on and jobs run in Snakemake's own
environment, not a conda env or container): it imports those libraries and every
stage module once, then waits on a Unix socket. A ``matchbench`` command that finds the socket
in ``MATCHBENCH_WARM`` is a **client** (:func:`run_in_server`): it hands the server its
arguments, working directory, environment, umask and its stdin/stdout/stderr (file descriptors
passed over the socket), and the server forks a **child** that runs the command exactly as
``matchbench.cli.main`` would in a new process, writing to the client's own streams. The client
exits with the child's exit status.

What keeps a forked job equal to a cold one:

- The server runs no torch or faiss computation, so no OpenMP or intra-op thread pool exists
  to be broken by ``fork``; each child sets its threads and seeds as a cold process does, and
  the tests compare a warm Snakemake run's metrics with a cold ``dvc repro``'s, byte for byte.
- The child takes the client's working directory, environment (``os.environ``, so C code sees
  it too), umask and standard streams; ``sys.stdout``/``sys.stderr`` are rebuilt on them with
  the buffering a new process would choose; ``atexit`` handlers run at its exit as they would.
- Libraries read a few settings from the environment while being imported; the server imports
  them in Snakemake's environment, which is the environment every job inherits.

Lifetimes: a client killed in any way closes its connection, and the server then kills the
child (no job outlives what Snakemake thinks is running); the server exits when Snakemake
exits (``onsuccess``/``onerror`` stop it, and it checks its parent every half second in case
neither ran). Where anything is missing (no server, a stale socket, a cluster node that cannot
reach the socket) the command runs in a process of its own, as before. The socket lives in a
folder only its user can enter, and the server serves only connections of its own user id.

Cost: Snakemake's ``benchmark:`` files measure the client, so their wall time (``s``) is the
job's but their CPU and memory columns are the client's; the server's log
(``<paths.logs>/warm-server.log``) gives each job's pid, command, exit status and time.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import select
import signal
import socket
import struct
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

ENV = "MATCHBENCH_WARM"
SOCKET_NAME = "server.sock"
# What the server imports before serving; a module that fails to import is skipped (the
# child imports it itself, or reports the error a cold process would).
PRELOAD = (
    "torch",
    "timm",
    "open_clip",
    "faiss",
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "PIL.Image",
    "matplotlib",
)
_HEADER = struct.Struct("!I")
_POLL_S = 0.5
CHILD_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # what a client forwards


# ---------------------------------------------------------------- client


def run_in_server(argv: list[str]) -> int | None:
    """Run ``matchbench argv`` in the warm server named by ``$MATCHBENCH_WARM``; its exit
    status, or None when there is no server to run it (the caller then runs it itself)."""
    path = os.environ.get(ENV)
    if not path:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None  # no server (stopped, or on another machine): run cold
    with sock:
        request = {
            "argv": list(argv),
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "umask": _umask(),
        }
        payload = json.dumps(request).encode()
        fds, opened = _standard_fds()
        # From the request on, a signal is the child's: held until the server names it (the
        # server forks before it answers, so a signal may come first), never the client's death.
        with _Forwarder() as forward:
            try:
                try:
                    socket.send_fds(sock, [_HEADER.pack(len(payload)) + payload], fds)
                except OSError:
                    return None  # the server went away between connect and send: run cold
            finally:
                for fd in opened:
                    os.close(fd)
            reader = sock.makefile("r", encoding="ascii")
            first = reader.readline().split()
            if len(first) != 2 or first[0] != "pid":
                return None  # refused before forking (it says why in its log): run cold
            child = int(first[1])
            forward.attach(child)
            last = reader.readline().split()
            if len(last) == 2 and last[0] == "exit":
                return int(last[1])
            print(
                f"matchbench: the warm server ({path}) stopped while running this command "
                f"(pid {child}); run it again, or with warm_start: false",
                file=sys.stderr,
            )
            return 1


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _standard_fds() -> tuple[list[int], list[int]]:
    """Descriptors 0, 1, 2 to hand over; a closed one is replaced by /dev/null (opened here)."""
    fds, opened = [], []
    for fd, mode in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            null = os.open(os.devnull, mode)
            opened.append(null)
            fds.append(null)
    return fds, opened


class _Forwarder:
    """SIGINT, SIGTERM and SIGHUP sent to the client reach the child (as they would reach a
    cold job); the client keeps waiting for its exit status. Installed before the request is
    sent: a signal that comes before the server names the child waits for :meth:`attach`, and
    one that comes when there is no child after all (:meth:`release`, on leaving the ``with``
    block without one: the command will run cold, or the request failed) is delivered to the
    client itself, as if it had not been caught."""

    def __init__(self) -> None:
        self.child: int | None = None
        self.pending: list[int] = []
        self.previous = {s: signal.signal(s, self._handle) for s in CHILD_SIGNALS}

    def __enter__(self) -> _Forwarder:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.child is None:  # whatever ended the request before a child was named
            self.release()

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.child is None:
            self.pending.append(signum)
        else:
            self._send(signum)

    def _send(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.child, signum)  # type: ignore[arg-type]

    def attach(self, child: int) -> None:
        self.child = child
        for signum in self.pending:
            self._send(signum)
        self.pending.clear()

    def release(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for signum in self.pending:
            signal.raise_signal(signum)


# ---------------------------------------------------------------- starting and stopping


class Server:
    """A started server: its process, socket and log (:func:`start`)."""

    def __init__(self, process: subprocess.Popen[bytes], folder: Path, log: Path) -> None:
        self.process, self.folder, self.log = process, folder, log
        self.socket = folder / SOCKET_NAME

    def stop(self) -> None:
        """Stop the server (its running children are killed) and remove its folder."""
        import subprocess

        if os.environ.get(ENV) == str(self.socket):
            del os.environ[ENV]
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(OSError):
            self.socket.unlink()  # gone already when the server stopped itself
        with contextlib.suppress(OSError):
            self.folder.rmdir()


def start(log: str | Path, timeout_s: float = 60.0) -> Server | None:
    """Start a server for this process's commands and point ``$MATCHBENCH_WARM`` at it (every
    command this process starts from now on inherits it). Returns None, with a line on
    stderr, if it did not come up within ``timeout_s``: the jobs then run cold."""
    import subprocess
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="matchbench-warm-"))  # mode 0700: its user only
    sock = folder / SOCKET_NAME
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "matchbench.warm",
                str(sock),
                str(os.getpid()),
                str(jobs_file(log)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the jobs, not the server
        )
    server = Server(process, folder, log)
    deadline = time.monotonic() + timeout_s
    while not sock.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            print(
                f"matchbench: the warm server did not start (see {log}); jobs run cold",
                file=sys.stderr,
            )
            return None
        time.sleep(0.05)
    os.environ[ENV] = str(sock)
    return server


# ---------------------------------------------------------------- `matchbench warm CMD`


def add_arguments(parser: Any) -> None:
    import argparse

    parser.add_argument(
        "--log",
        default="logs/warm-server.log",
        help="the server's log: each job's pid, command, exit status and time (default: %(default)s)",
    )
    parser.add_argument(
        "argv",
        metavar="COMMAND",
        nargs=argparse.REMAINDER,
        help="the command whose matchbench jobs run warm, after `--` (e.g. -- dvc repro)",
    )


def run(args: Any) -> int:
    """``matchbench warm -- dvc repro``: run a command with a server for the ``matchbench``
    commands it starts (Snakemake starts its own; ``dvc repro`` and scripts can use this)."""
    import subprocess

    from matchbench.errors import MatchbenchError

    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not command:
        raise MatchbenchError("no command given; e.g. matchbench warm -- dvc repro")
    server = start(args.log)
    try:
        try:
            return subprocess.call(command)
        except FileNotFoundError:
            raise MatchbenchError(f"{command[0]!r}: no such command") from None
    finally:
        if server is not None:
            server.stop()


# ---------------------------------------------------------------- server

JOB_COLUMNS = ("pid", "exit", "seconds", "max_rss_mb", "ended", "stderr", "command")


def jobs_file(log: str | Path) -> Path:
    """The server's record of its jobs beside its log (``warm-server.jobs.tsv``): a row per
    job with its peak memory (Snakemake's ``benchmark:`` files see only the client) and the
    file its stderr went to, which names the job (``matchbench.report.provenance``)."""
    log = Path(log)
    return log.with_name(f"{log.stem}.jobs.tsv")


def read_jobs(path: str | Path) -> list[dict[str, str]]:
    """The rows of a :func:`jobs_file` (none when it is absent)."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [dict(zip(JOB_COLUMNS, line.split("\t"), strict=False)) for line in lines[1:] if line]


def serve(
    path: str, parent: int, record: str | None = None, preload: tuple[str, ...] = PRELOAD
) -> None:
    """Listen on ``path``, import ``preload`` and the stage modules, then fork a child per
    request until SIGTERM, or until ``parent`` is gone; each job ends as a row of ``record``."""
    jobs_tsv = Path(record) if record else None
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    listener.listen(64)
    # Clients that come during the imports wait in the backlog; the socket appears (renamed)
    # only once bound, so `start` never sees a half-made one.
    os.rename(path + ".tmp", path)
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    wake_r, wake_w = os.pipe()  # a signal writes a byte here: SIGCHLD ends the select at once
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    t0 = time.perf_counter()
    loaded = _preload(preload)
    _log(f"imported {', '.join(loaded)} in {time.perf_counter() - t0:.1f} s; serving at {path}")

    jobs: dict[int, Job] = {}
    while not stopping:
        if os.getppid() != parent:
            _log(f"parent {parent} is gone: stopping")
            break
        watched = [listener, wake_r, *(job.conn for job in jobs.values() if not job.orphan)]
        readable, _, _ = select.select(watched, [], [], _POLL_S)
        for conn in readable:
            if conn == wake_r:
                os.read(wake_r, 512)
            elif conn is listener:
                job = _accept(listener, jobs, (wake_r, wake_w))
                if job is not None:
                    jobs[job[0]] = job[1]
            else:  # a client sends nothing after its request: readable means it is gone
                pid = next(p for p, job in jobs.items() if job.conn is conn)
                _log(f"pid {pid}: its client is gone; killing it")
                jobs[pid].orphan = True  # watched no more: reaped at its SIGCHLD
                _kill(pid)
        _reap(jobs, jobs_tsv)
    for pid in list(jobs):
        _kill(pid)
    while jobs:
        _reap(jobs, jobs_tsv, block=True)
    listener.close()
    with contextlib.suppress(OSError):
        os.unlink(path)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(path))  # the private folder start() made for the socket
    _log("stopped")


def _preload(modules: tuple[str, ...]) -> list[str]:
    import importlib

    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as e:  # an optional library absent: its jobs import (or fail) themselves
            _log(f"not preloaded: {name} ({type(e).__name__}: {e})")
    from matchbench import cli

    for module, _ in cli.COMMANDS.values():
        try:
            importlib.import_module(module)
        except Exception as e:
            _log(f"not preloaded: {module} ({type(e).__name__}: {e})")
    return loaded


class Job:
    """A forked job: the client's connection, when it started, its command and stderr."""

    def __init__(self, conn: socket.socket, command: str, stderr: str) -> None:
        self.conn, self.command, self.stderr = conn, command, stderr
        self.start = time.perf_counter()
        self.orphan = False  # its client is gone


def _accept(
    listener: socket.socket, jobs: dict[int, Job], wake: tuple[int, int]
) -> tuple[int, Job] | None:
    conn, _ = listener.accept()
    fds: list[int] = []
    try:
        uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        if uid != os.getuid():
            raise PermissionError(f"a connection from uid {uid}")
        conn.settimeout(10)
        data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        (size,) = _HEADER.unpack(data[: _HEADER.size])
        body = data[_HEADER.size :]
        while len(body) < size:
            more = conn.recv(size - len(body))
            if not more:
                raise ConnectionError("the client closed before its request was whole")
            body += more
        request = json.loads(body)
        if len(fds) != 3:
            raise ValueError(f"{len(fds)} file descriptors, expected stdin, stdout, stderr")
    except Exception as e:
        _log(f"refused a request: {type(e).__name__}: {e}")
        for fd in fds:
            os.close(fd)
        conn.close()
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    # A signal the client forwards can reach the child before it has dropped the server's
    # handlers (which would swallow it): blocked across the fork, it stays pending until the
    # child unblocks it with its own handlers in place, and the server's own until it does.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, CHILD_SIGNALS)
    pid = os.fork()
    if pid == 0:
        _child(
            request,
            fds,
            wake,
            close=[conn, listener, *(job.conn for job in jobs.values())],
            mask=mask,
        )
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    try:
        stderr = os.readlink(f"/proc/self/fd/{fds[2]}")  # the job's log file, which names it
    except OSError:
        stderr = ""
    for fd in fds:
        os.close(fd)
    command = " ".join(["matchbench", *request["argv"]])
    if len(command) > 300:  # the report's command names every metrics file
        command = f"{command[:300]}... ({len(request['argv'])} arguments)"
    _log(f"pid {pid}: {command}")
    try:
        conn.sendall(f"pid {pid}\n".encode())
    except OSError:
        _kill(pid)  # the client is gone already; _reap collects the child
    return pid, Job(conn, command, stderr)


def _child(
    request: dict[str, Any],
    fds: list[int],
    wake: tuple[int, int],
    close: list[socket.socket],
    mask: set[signal.Signals],
) -> None:
    """In the forked child: become the client's command, run it, exit with its status."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        for s in close:
            s.close()
        for fd in wake:
            os.close(fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # what came since the fork lands now
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(request["cwd"])
        os.umask(int(request["umask"]))
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.pop(ENV, None)  # commands this job starts run cold (e.g. under dvc)
        _reopen_standard_streams()
        sys.argv = ["matchbench", *request["argv"]]
        from matchbench import cli

        try:
            code = cli.main(list(request["argv"]))
        except SystemExit as e:  # argparse's --help, --version and usage errors
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if 0 <= code < 256 else 1)


def _reopen_standard_streams() -> None:
    """``sys.stdin``/``stdout``/``stderr`` on the new descriptors 0-2, buffered as a new
    process would buffer them (stdout line-buffered on a terminal, stderr always)."""
    enc = {"encoding": sys.stdout.encoding, "errors": sys.stdout.errors}
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), **enc)
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w", closefd=False)), line_buffering=os.isatty(1), **enc
    )
    sys.stderr = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
        line_buffering=True,
        encoding=sys.stderr.encoding,
        errors="backslashreplace",
    )


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _reap(jobs: dict[int, Job], record: Path | None, block: bool = False) -> None:
    """Collect ended children: log and record each, and tell its client its exit status."""
    while jobs:
        try:
            pid, status, usage = os.wait4(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            jobs.clear()
            return
        if pid == 0:
            return
        job = jobs.pop(pid, None)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code  # killed by signal n: 128 + n, as a shell says
        seconds = time.perf_counter() - job.start if job else 0.0
        peak = usage.ru_maxrss / 1024  # KiB on Linux
        command = job.command if job else "?"
        _log(f"pid {pid}: exit {code} after {seconds:.1f} s, peak {peak:.0f} MB ({command})")
        if job is not None:
            if record is not None:
                _record(record, pid, code, seconds, peak, job)
            with contextlib.suppress(OSError):
                job.conn.sendall(f"exit {code}\n".encode())
            job.conn.close()
        if block:
            return


def _record(path: Path, pid: int, code: int, seconds: float, peak: float, job: Job) -> None:
    row = (
        pid,
        code,
        f"{seconds:.2f}",
        f"{peak:.1f}",
        f"{time.time():.0f}",
        job.stderr,
        job.command,
    )
    fresh = not path.exists()
    with open(path, "a", encoding="utf-8") as f:
        if fresh:
            f.write("\t".join(JOB_COLUMNS) + "\n")
        f.write("\t".join(str(v).replace("\t", " ").replace("\n", " ") for v in row) + "\n")


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} warm: {message}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(
            "usage: python -m matchbench.warm SOCKET PARENT_PID [JOBS_TSV] (started by matchbench.warm.start)"
        )
    serve(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) == 4 else None)
