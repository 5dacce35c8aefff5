"""Warm starts (matchbench.warm): a command the server forks is the command run cold.

One real server for the module (it imports torch, timm, open_clip and faiss: seconds); each
test runs `matchbench` as Snakemake would, with ``MATCHBENCH_WARM`` pointing at it or not.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml
from conftest import strip_progress, tiny_config, write_config

from matchbench import warm

SPEED = re.compile(r"[\d.]+ images/s")  # the one thing that may differ between two runs
CONFIG = tiny_config(
    run="warm",
    datasets={
        "miniworld": {
            "family": "miniworld",
            "options": {
                "seed": 0,
                "image_size": 32,
                "categories": ["triangle", "square"],
                "per_class": {"train": 6, "val": 0, "test": 2},
                "instances_per_class": 2,
            },
        }
    },
    backbones={"resnet-mini": {}},
    extract={"batch_size": 4, "shard_size": 8},
    tracks={"ssl": {"dataset": "miniworld", "backbones": ["resnet-mini"]}},
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[warm.Server]:
    log = tmp_path_factory.mktemp("warm") / "server.log"
    started = warm.start(log)
    # start() points this process's environment at the server; the tests say per command.
    os.environ.pop(warm.ENV, None)
    assert started is not None, log.read_text()
    yield started
    started.stop()


def env(socket: Path | None) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k != warm.ENV}
    if socket is not None:
        out[warm.ENV] = str(socket)
    return out


def matchbench(
    args: list[str], cwd: Path, socket: Path | None, **kw
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["matchbench", *args], cwd=cwd, env=env(socket), capture_output=True, text=True,
        timeout=300, **kw,
    )  # fmt: skip


def served(server: warm.Server, *words: str) -> list[int]:
    """Pids the server's log says it forked for a command containing ``words``."""
    pids = []
    for line in server.log.read_text().splitlines():
        m = re.search(r"pid (\d+): matchbench (.*)$", line)
        if m and all(w in m.group(2) for w in words):
            pids.append(int(m.group(1)))
    return sorted(set(pids))


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_stage_chain_writes_the_same_bytes_warm_and_cold(
    server: warm.Server, tmp_path: Path
) -> None:
    """download -> prepare -> extract (a network job) in two folders, cold and warm: the same
    exit status, the same words to the user, the same features."""
    runs = {}
    for name, socket in (("cold", None), ("warm", server.socket)):
        root = tmp_path / name
        root.mkdir()
        write_config(root / "config.yaml", CONFIG)
        said = []
        for args in (
            ["download", "--dataset", "miniworld"],
            ["prepare", "--dataset", "miniworld"],
            ["extract", "--dataset", "miniworld", "--model", "resnet-mini"],
        ):
            proc = matchbench([args[0], "--config", "config.yaml", *args[1:]], root, socket)
            assert proc.returncode == 0, proc.stderr
            said.append(
                (
                    SPEED.sub("<speed>", proc.stdout),
                    SPEED.sub("<speed>", strip_progress(proc.stderr)),
                )
            )
        runs[name] = (root, said)
    assert served(server, "extract", "resnet-mini"), server.log.read_text()
    (cold, cold_said), (hot, hot_said) = runs["cold"], runs["warm"]
    assert hot_said == cold_said
    arrays = sorted(p.relative_to(cold) for p in cold.rglob("*.npy"))
    assert arrays and arrays == sorted(p.relative_to(hot) for p in hot.rglob("*.npy"))
    for rel in arrays:
        assert np.array_equal(np.load(cold / rel), np.load(hot / rel)), rel


def test_a_users_mistake_reads_the_same_and_exits_the_same(
    server: warm.Server, tmp_path: Path
) -> None:
    cold = matchbench(["check", "--config", "missing.yaml"], tmp_path, None)
    hot = matchbench(["check", "--config", "missing.yaml"], tmp_path, server.socket)
    assert cold.returncode == hot.returncode == 2
    assert hot.stderr == cold.stderr and "missing.yaml" in hot.stderr
    assert served(server, "check", "missing.yaml")


def test_the_child_reads_the_clients_stdin_in_its_folder(
    server: warm.Server, tmp_path: Path
) -> None:
    text = yaml.safe_dump(CONFIG)
    cold = matchbench(["check", "--config", "/dev/stdin"], tmp_path, None, input=text)
    hot = matchbench(["check", "--config", "/dev/stdin"], tmp_path, server.socket, input=text)
    assert cold.returncode == hot.returncode == 0, hot.stderr
    assert (hot.stdout, hot.stderr) == (cold.stdout, cold.stderr)


def _blocked_client(server: warm.Server, tmp_path: Path) -> tuple[subprocess.Popen, int]:
    """A warm `check` that waits on its stdin (held open here), and its child's pid."""
    before = set(served(server, "check", "/dev/stdin"))
    client = subprocess.Popen(
        ["matchbench", "check", "--config", "/dev/stdin"], cwd=tmp_path, env=env(server.socket),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    wait_for(lambda: set(served(server, "check", "/dev/stdin")) - before)
    (child,) = set(served(server, "check", "/dev/stdin")) - before
    assert not gone(child)
    return client, child


def test_sigterm_to_the_client_reaches_the_child(server: warm.Server, tmp_path: Path) -> None:
    client, child = _blocked_client(server, tmp_path)
    client.send_signal(signal.SIGTERM)
    client.communicate(timeout=30)
    assert client.returncode == 128 + signal.SIGTERM  # as a shell reports a job killed so
    wait_for(lambda: gone(child))


def test_a_signal_before_the_server_names_the_child_waits_for_it() -> None:
    """The server forks, then answers with the child's pid: a SIGTERM to the client between
    the two used to kill the client by the default action, leaving its child running."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        forward = warm._Forwarder()
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # caught: this process lives on
            assert forward.pending == [signal.SIGTERM] and child.poll() is None
            forward.attach(child.pid)
            assert child.wait(timeout=10) == -signal.SIGTERM and forward.pending == []
        finally:
            forward.release()
    finally:
        child.kill()
        child.wait()


def test_a_signal_held_for_a_refused_request_is_the_clients_own() -> None:
    """When the server forks no child (the command will run cold), a held signal goes to the
    handler the client had before, as if it had never been caught."""
    seen: list[int] = []
    before = signal.signal(signal.SIGHUP, lambda signum, _frame: seen.append(signum))
    try:
        with warm._Forwarder() as forward:  # left without a child: released
            os.kill(os.getpid(), signal.SIGHUP)
            assert seen == [] and forward.pending == [signal.SIGHUP]
        assert seen == [signal.SIGHUP]
        os.kill(os.getpid(), signal.SIGHUP)  # the client's handler again
        assert seen == [signal.SIGHUP, signal.SIGHUP]
    finally:
        signal.signal(signal.SIGHUP, before)


def test_a_client_killed_outright_takes_its_child_along(
    server: warm.Server, tmp_path: Path
) -> None:
    client, child = _blocked_client(server, tmp_path)
    client.kill()  # SIGKILL: no handler runs; the server sees the connection close
    client.communicate(timeout=30)
    wait_for(lambda: gone(child))
    assert f"pid {child}: its client is gone" in server.log.read_text()


def test_without_a_server_the_command_runs_cold(tmp_path: Path) -> None:
    proc = matchbench(["check", "--config", "missing.yaml"], tmp_path, tmp_path / "no.sock")
    assert proc.returncode == 2 and "missing.yaml: config file not found" in proc.stderr


def test_the_server_stops_when_its_parent_does(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    code = (
        "import sys; from matchbench import warm; s = warm.start(sys.argv[1]); "
        "print(s.process.pid, s.socket, flush=True)"  # and exit without stopping it
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(log)], capture_output=True, text=True, check=True
    )
    pid, socket = out.stdout.split()
    wait_for(lambda: gone(int(pid)))
    assert not Path(socket).exists() and "is gone: stopping" in log.read_text()


def test_matchbench_warm_runs_a_command_with_a_server(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    proc = matchbench(["warm", "--log", str(log), "--", "matchbench", "--version"], tmp_path, None)
    assert proc.returncode == 0 and proc.stdout.startswith("matchbench ")
    assert re.search(r"pid \d+: exit 0 after .* \(matchbench --version\)", log.read_text())
    bad = matchbench(["warm"], tmp_path, None)
    assert bad.returncode == 2 and "no command given" in bad.stderr
