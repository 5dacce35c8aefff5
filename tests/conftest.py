"""Shared fixtures.

``http_server``: a real HTTP/1.1 server on 127.0.0.1 (a ``ThreadingHTTPServer`` on port 0, in a
thread) that serves the files under ``server.root``. Use it wherever code downloads something
(datasets, model weights) so tests run the real network code path, offline::

    def test_weights(http_server):
        (http_server.root / "w.safetensors").write_bytes(data)
        download_url(http_server.url("w.safetensors"), dest)
        assert http_server.count("w.safetensors") == 1

It supports ``Range: bytes=a-`` / ``bytes=a-b`` (206 + Content-Range, 416 past the end) and
``HEAD``, and has hooks to misbehave, each applying to the first ``times`` GETs of a path:

- ``truncate(path, after, times=1)``: send the full headers, ``after`` body bytes, then close;
- ``fail(path, status=503, times=1)``: answer an error status with no body;
- ``ignore_range = True``: answer every GET with 200 and the whole file, as some servers do.

Every request is recorded in ``server.requests`` (``Request(method, path, range, status,
body_bytes)``); ``count(path)`` and ``bytes_sent(path)`` sum them. The server shuts down at
fixture teardown.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # relative to the server root, without a leading slash
    range: str | None  # the Range header as sent, or None
    status: int
    body_bytes: int  # body bytes the server wrote (recorded just before writing them)


@dataclass
class _Hook:
    times: int
    value: int


@dataclass
class LocalHTTPServer:
    root: Path
    port: int = 0
    ignore_range: bool = False
    requests: list[Request] = field(default_factory=list)
    _truncate: dict[str, _Hook] = field(default_factory=dict)
    _fail: dict[str, _Hook] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{urllib.parse.quote(path.lstrip('/'))}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def truncate(self, path: str, after: int, times: int = 1) -> None:
        """The next ``times`` GETs of ``path`` send ``after`` body bytes, then drop the connection."""
        with self._lock:
            self._truncate[path.lstrip("/")] = _Hook(times, after)

    def fail(self, path: str, status: int = 503, times: int = 1) -> None:
        """The next ``times`` GETs of ``path`` answer ``status`` with an empty body."""
        with self._lock:
            self._fail[path.lstrip("/")] = _Hook(times, status)

    def count(self, path: str | None = None, method: str = "GET") -> int:
        """Requests made (for ``path``, or in all)."""
        return len(self._matching(path, method))

    def bytes_sent(self, path: str | None = None) -> int:
        """Body bytes sent (for ``path``, or in all)."""
        return sum(r.body_bytes for r in self._matching(path, "GET"))

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._truncate.clear()
            self._fail.clear()
            self.ignore_range = False

    def _matching(self, path: str | None, method: str) -> list[Request]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.method == method and (path is None or r.path == path.lstrip("/"))
            ]

    def _take(self, hooks: dict[str, _Hook], path: str) -> int | None:
        with self._lock:
            hook = hooks.get(path)
            if hook is None or hook.times <= 0:
                return None
            hook.times -= 1
            return hook.value

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)


_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


def _make_handler(server: LocalHTTPServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # keep pytest output clean; requests are recorded instead

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _record(self, rel: str, rng: str | None, status: int, sent: int) -> None:
            server._record(Request(self.command, rel, rng, status, sent))

        def _error(self, rel: str, rng: str | None, status: int, extra: dict | None = None):
            self._record(rel, rng, status, 0)
            self.send_response(status)
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _serve(self, body: bool) -> None:
            rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
            rng = self.headers.get("Range")
            target = (server.root / rel).resolve()
            if not target.is_file() or not target.is_relative_to(server.root.resolve()):
                return self._error(rel, rng, 404)
            if body and (status := server._take(server._fail, rel)) is not None:
                return self._error(rel, rng, status)
            size = target.stat().st_size
            start, end, status = 0, size - 1, 200
            m = _RANGE.fullmatch(rng or "")
            if m and not server.ignore_range:
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                if start >= size or start > end:
                    return self._error(rel, rng, 416, {"Content-Range": f"bytes */{size}"})
                status = 206
            length = end - start + 1
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            cut = server._take(server._truncate, rel) if body else None
            n = 0 if not body else length if cut is None else min(cut, length)
            # Recorded before the response goes out, so a client that has it sees the record.
            self._record(rel, rng, status, n)
            self.end_headers()
            if not body:
                return
            with open(target, "rb") as f:
                f.seek(start)
                self.wfile.write(f.read(n))
            self.wfile.flush()
            if cut is not None:
                self.close_connection = True

    return Handler


@pytest.fixture
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHTTPServer]:
    """A real HTTP server on 127.0.0.1 serving ``server.root`` (see the module docstring)."""
    root = tmp_path_factory.mktemp("http_root")
    state = LocalHTTPServer(root=root)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- tiny configs

# Torch threads for the tests that train in the test process: two alone, one per pytest-xdist
# worker (one worker per core: a second thread would only wait for the other worker's core).
WORKER_THREADS = 1 if "PYTEST_XDIST_WORKER" in os.environ else 2

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "tiny.yaml"  # the seconds-long DAG the integration tests run

# The small backbones the tests build from (random init; fixed normalisation so no pretrained
# config is needed).
_NORM = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
BACKBONES: dict[str, dict] = {
    "resnet-mini": {"source": "timm", "arch": "test_resnet", "image_size": 32, **_NORM},
    "vit-tiny": {
        "source": "timm",
        "arch": "test_vit",
        "image_size": 64,
        **_NORM,
        "kwargs": {"patch_size": 8, "img_size": 64},
    },
    "repvgg-mini": {"source": "timm", "arch": "repvgg_a0", "image_size": 112, **_NORM},
}


def merge(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` deep-merged in (mappings merge; anything else replaces)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def tiny_config(
    root: Path | None = None,
    *,
    datasets: dict,
    tracks: dict,
    backbones: dict | None = None,
    **top: object,
) -> dict:
    """The one factory of the tests' configs: a raw config on the CPU, one thread, seed 0, paths
    under ``root`` (when given), the named tracks and datasets; ``backbones`` maps a name to an
    entry of :data:`BACKBONES` overridden by its value (``{"resnet-mini": {}}``) or to a whole
    new entry (with ``source``); ``top`` sets (deep-merges) any other top-level key."""
    resolved = {
        name: spec if "source" in spec else merge(BACKBONES[name], spec)
        for name, spec in (backbones or {}).items()
    }
    raw: dict = {
        "run": "test",
        "seed": 0,
        "device": "cpu",
        "threads": 1,
        "datasets": datasets,
        "backbones": resolved,
        "extract": {"workers": 0},
        "tracks": tracks,
    }
    if root is not None:
        raw["paths"] = {k: str(Path(root) / k) for k in ("data", "results", "reports")}
    return merge(raw, top)


def write_config(path: Path, raw: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


_PROGRESS_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d ")


def strip_progress(stderr: str) -> str:
    """``stderr`` without the timestamped progress lines a stage writes when stderr is not a
    terminal (``matchbench.progress``): what is left is what the stage says to a person."""
    return "".join(
        line for line in stderr.splitlines(keepends=True) if not _PROGRESS_LINE.match(line)
    )


# --------------------------------------------------------------------------- the tiny DAG, run once

TINY_REL = "tests/configs/tiny.yaml"


def dvc_env(home: Path) -> dict[str, str]:
    """This interpreter's tools first on PATH; git, DVC and Snakemake kept away from the real
    home, caches and network."""
    (home / "dvc-global").mkdir(parents=True, exist_ok=True)
    (home / "dvc-global" / "config").write_text(
        "[core]\n    analytics = false\n    check_update = false\n"
    )
    e = dict(os.environ)
    e.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}",
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"),
        DVC_NO_ANALYTICS="1",
        DVC_GLOBAL_CONFIG_DIR=str(home / "dvc-global"),
        DVC_SYSTEM_CONFIG_DIR=str(home / "dvc-system"),
        DVC_SITE_CACHE_DIR=str(home / "dvc-site-cache"),
        GIT_CONFIG_NOSYSTEM="1",
    )
    return e


def run_in(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a command; on failure, fail the test with the last 40 lines of its output."""
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        pytest.fail(f"{' '.join(argv)} exited {proc.returncode} in {cwd}:\n{tail}")
    return proc.stdout + proc.stderr


def dvc_repo(dest: Path, env: dict[str, str]) -> Path:
    """A git + DVC repository holding the workflow, its configs, the package's sources (each
    stage depends on the modules it runs) and dvc.yaml for the tiny config."""
    for name in ("workflow", "config", "envs", "tests/configs"):
        shutil.copytree(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("*.egg-info", "__pycache__")
    shutil.copytree(ROOT / "src", dest / "src", ignore=ignore)
    for name in (".gitignore", ".dvcignore"):
        shutil.copy2(ROOT / name, dest / name)
    run_in(["git", "init", "-q"], dest, env)
    run_in(["dvc", "init", "-q"], dest, env)
    run_in(["matchbench", "dvc-export", "--configfile", TINY_REL], dest, env)
    return dest


@dataclass(frozen=True)
class TinyRuns:
    """The tiny DAG run once by `snakemake` and once by `dvc repro`, side by side (one core
    each), in two git + DVC repositories; ``pristine`` is a copy of the Snakemake one taken as
    soon as it finished (mtimes kept), for tests that change their workspace."""

    env: dict[str, str]
    snakemake: Path
    dvc: Path
    pristine: Path
    tmp: Path


def _tiny_layout(tmp: Path) -> TinyRuns:
    """Where the tiny DAG's runs live under ``tmp`` (made by :func:`_run_tiny`)."""
    env = dvc_env(tmp / "home")
    return TinyRuns(env=env, snakemake=tmp / "snakemake", dvc=tmp / "dvc", pristine=tmp / "pristine", tmp=tmp)  # fmt: skip


def _run_tiny(tmp: Path) -> TinyRuns:
    runs = _tiny_layout(tmp)
    env = runs.env
    smk = dvc_repo(runs.snakemake, env)
    dvc = dvc_repo(runs.dvc, env)
    argv = ["snakemake", "--cores", "1", "--configfile", TINY_REL]
    proc = subprocess.Popen(argv, cwd=smk, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        # Warm too (matchbench.warm), as Snakemake's jobs are: the two runs' metrics must agree,
        # and test_warm checks that a forked job writes what a new process writes.
        run_in(["matchbench", "warm", "--log", str(tmp / "warm-dvc.log"), "--", "dvc", "repro"], dvc, env)  # fmt: skip
    finally:
        out, _ = proc.communicate()
    if proc.returncode != 0:
        pytest.fail(f"snakemake exited {proc.returncode}:\n" + "\n".join(out.splitlines()[-40:]))
    shutil.copytree(smk, runs.pristine, symlinks=True)  # copy2: file and folder mtimes kept
    return runs


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> TinyRuns:
    """One run of the tiny DAG per tool for the whole session: test_dvc compares the two,
    test_pipeline works on a copy of Snakemake's.

    Under pytest-xdist the session is one per worker, so the first worker to ask makes the runs
    in the folder the workers share, under a file lock, and the others wait for it and use them
    (test_dvc is scheduled first and test_pipeline last: the ordering below)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return _run_tiny(tmp_path_factory.mktemp("tiny"))
    import fcntl

    tmp = tmp_path_factory.getbasetemp().parent / "tiny"
    with open(f"{tmp}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        done, failed = Path(f"{tmp}.done"), Path(f"{tmp}.failed")
        if failed.exists():
            pytest.fail(f"the tiny DAG failed on another worker:\n{failed.read_text()}")
        if not done.exists():
            try:
                runs = _run_tiny(tmp)
            except BaseException as e:  # pytest.fail is a BaseException
                failed.write_text(str(e)[-4000:])
                raise
            done.touch()
            return runs
    return _tiny_layout(tmp)


# --------------------------------------------------------------------------- pytest-xdist

# The README's test line runs the suite on one worker per core (pytest-xdist, `--dist loadfile`
# in pyproject.toml: a file's tests stay on one worker, so its module fixtures are made once).
# The tiny DAG's two users are scheduled first and last (`--no-loadscope-reorder` keeps this
# order): one worker makes the DAG while the others run the rest of the suite, and test_pipeline
# then finds it made.
_FIRST, _LAST = "tests/core/test_dvc.py", "tests/core/test_pipeline.py"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def path(item: pytest.Item) -> str:
        return item.nodeid.split("::")[0]

    items.sort(key=lambda item: {_FIRST: 0, _LAST: 2}.get(path(item), 1))  # stable
