"""`matchbench dvc-export`: write dvc.yaml from the Snakemake DAG, one DVC stage per job.

Snakemake is the one DAG; dvc.yaml is derived from it, never edited by hand. The jobs come from
``snakemake --dry-run --forceall --printshellcmds`` (Snakemake 9's job info: rule, input,
output, log, wildcards and the exact shell command). ``--detailed-summary`` is no use here: it
reports inputs and commands only for outputs that already exist.

Each stage runs the job's shell command byte for byte, preceded by the ``mkdir -p`` Snakemake
does before every job (the command's ``2> logs/...`` needs the log folder; DVC creates no
folders). See docs/dvc.md for the choices: which files are deps, outs, metrics and plots.
"""

from __future__ import annotations

import argparse
import difflib
import heapq
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from matchbench.config import load_config
from matchbench.errors import MatchbenchError
from matchbench.io import write_text
from matchbench.layout import Layout
from matchbench.reruns import SOURCE_ROOT, job_reads, parse_command

DEFAULT_CONFIG = "config/default.yaml"
DEFAULT_OUT = "dvc.yaml"
SNAKEFILE = "workflow/Snakefile"

# DVC accepts letters, digits, "-" and "_" in stage names (treeverse/dvc#3767): "@" is taken
# by foreach/matrix and ":" by `dvc.yaml:stage` targets. Rule and wildcard values are joined
# by "--"; any other character ("+" in "<backbone>+<recipe>") becomes "_".
_NAME_SEP = "--"
_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]")

_RULE_LINE = re.compile(r"^(local)?(rule|checkpoint) (\w+):$")
_FIELD_LINE = re.compile(r"^    (\w+): (.*)$")
_SHELL_PREFIX = "Shell command: "
_STATS_ROW = re.compile(r"^(\w+)\s+(\d+)$")
_TIMESTAMP = re.compile(r"^\[[^\]]+\]$")


@dataclass(frozen=True)
class Job:
    rule: str
    wildcards: tuple[tuple[str, str], ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    logs: tuple[str, ...]
    shellcmd: str | None


# --- Snakemake's side ----------------------------------------------------------------------


def snakemake_argv(configfile: str) -> list[str]:
    return [
        sys.executable, "-m", "snakemake",
        "--snakefile", SNAKEFILE,
        "--configfile", configfile,
        "--dry-run", "--forceall", "--printshellcmds", "--nolock",
    ]  # fmt: skip


def dry_run(configfile: str, cwd: Path) -> str:
    """Snakemake's dry-run text for ``configfile`` (every job, forced)."""
    proc = subprocess.run(
        snakemake_argv(configfile), cwd=cwd, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr + proc.stdout).strip().splitlines()[-20:])
        raise MatchbenchError(f"snakemake --dry-run failed for {configfile}:\n{tail}")
    return proc.stdout + "\n" + proc.stderr


def _files(value: str, what: str, rule: str) -> tuple[str, ...]:
    files = tuple(value.split(", "))
    for f in files:
        # Snakemake annotates flagged files ("x (pipe)") and unresolved ones ("<TBD>").
        if not f or f != f.strip() or f.endswith(")") or "<TBD>" in f:
            raise MatchbenchError(
                f"rule {rule}: {what} {f!r} cannot be expressed in dvc.yaml "
                "(flagged, checkpoint-dependent or oddly named file)"
            )
    return files


def _job(rule: str, fields: dict[str, str], shell: str | None) -> Job:
    wildcards = tuple(
        tuple(item.split("=", 1)) for item in fields["wildcards"].split(", ")
    ) if "wildcards" in fields else ()  # fmt: skip
    return Job(
        rule=rule,
        wildcards=wildcards,  # type: ignore[arg-type]
        inputs=_files(fields["input"], "input", rule) if "input" in fields else (),
        outputs=_files(fields["output"], "output", rule) if "output" in fields else (),
        logs=_files(fields["log"], "log", rule) if "log" in fields else (),
        shellcmd=None if shell in (None, "None") else shell,
    )


def _job_stats(lines: list[str]) -> dict[str, int]:
    """The "Job stats" table Snakemake prints before the jobs: rule -> count."""
    try:
        start = lines.index("Job stats:")
    except ValueError:
        raise MatchbenchError("snakemake printed no job stats: no jobs to export?") from None
    counts: dict[str, int] = {}
    for line in lines[start + 3 :]:
        m = _STATS_ROW.match(line.strip())
        if not m or m.group(1) == "total":
            break
        counts[m.group(1)] = int(m.group(2))
    return counts


def parse_dry_run(text: str) -> list[Job]:
    """Jobs from ``snakemake --dry-run --printshellcmds`` output (Snakemake 9 format).

    The parse is checked against Snakemake's own job counts, so a format change fails loudly
    instead of producing a partial dvc.yaml.
    """
    lines = text.splitlines()
    jobs: list[Job] = []
    rule: str | None = None
    fields: dict[str, str] = {}
    shell: str | None = None
    after_shell = False
    for line in lines:
        if after_shell:
            after_shell = False
            # A job's block ends with its command; what follows is a blank line, the next
            # job's timestamp or the closing job stats. Anything else continues the command.
            if line.strip() and line != "Job stats:" and not _TIMESTAMP.match(line):
                raise MatchbenchError(
                    f"rule {rule}: multi-line shell command; dvc-export expects one line "
                    "(a rule runs one `matchbench` subcommand)"
                )
        if m := _RULE_LINE.match(line):
            if rule is not None:
                jobs.append(_job(rule, fields, shell))
            if m.group(2) == "checkpoint":
                raise MatchbenchError(
                    f"rule {m.group(3)} is a checkpoint: its downstream jobs are unknown "
                    "until it runs, so dvc.yaml cannot list them"
                )
            rule, fields, shell = m.group(3), {}, None
        elif rule is not None and (m := _FIELD_LINE.match(line)):
            fields[m.group(1)] = m.group(2)
        elif rule is not None and line.startswith(_SHELL_PREFIX):
            shell, after_shell = line[len(_SHELL_PREFIX) :], True
    if rule is not None:
        jobs.append(_job(rule, fields, shell))

    expected = _job_stats(lines)
    found: dict[str, int] = {}
    for job in jobs:
        found[job.rule] = found.get(job.rule, 0) + 1
    if found != expected:
        raise MatchbenchError(
            f"could not parse Snakemake's dry run: job stats say {expected}, parsed {found} "
            "(rules with `message:` or a changed Snakemake output format are not supported)"
        )
    return jobs


# --- DVC's side ----------------------------------------------------------------------------


def stage_name(job: Job) -> str:
    return _NAME_SEP.join([job.rule, *(_NAME_BAD.sub("_", v) for _, v in job.wildcards)])


def _folders(paths: list[str]) -> list[str]:
    return sorted({str(PurePosixPath(p).parent) for p in paths} - {"."})


def present_keys(raw: dict[str, Any], keys: list[str]) -> list[str]:
    """The keys DVC can track: those written in the config file (DVC refuses absent params).

    A key left to its default is covered by the schema file among the stage's deps. A name
    with a dot cannot be addressed by DVC's dotted keys: its parent key stands for it.
    """
    found: list[str] = []
    for key in keys:
        node, path = raw, []
        for part in key.split("."):
            if isinstance(node, dict) and part in node:
                node, path = node[part], [*path, part]
            else:
                break
        whole = len(path) == len(key.split("."))
        if whole:
            found.append(key)
        elif (
            path and not isinstance(node, dict) or path and any("." in name for name in node)
        ):  # a dotted name: its parent holds it
            found.append(".".join(path))
    return sorted(dict.fromkeys(found))


def stage(job: Job, context: Context) -> dict[str, Any]:
    """One DVC stage running exactly what Snakemake runs for ``job``, with the params and code
    it reads (matchbench.reruns: the same answer the rule's rerun params hold)."""
    assert job.shellcmd is not None
    products = [*job.outputs, *job.logs]
    folders = _folders(products)
    cmd: str | list[str] = job.shellcmd
    if folders:
        # Snakemake creates these before running a job; DVC does not.
        cmd = [shlex.join(["mkdir", "-p", *folders]), job.shellcmd]
    keys, files = job_reads(context.cfg, *parse_command(job.shellcmd))
    # The package's files as the repository holds them (src/matchbench/...), whichever copy of
    # the package is installed.
    code = [f"src/{f.relative_to(SOURCE_ROOT).as_posix()}" for f in files]
    entry: dict[str, Any] = {
        "desc": " ".join([f"snakemake rule {job.rule}", *(f"{k}={v}" for k, v in job.wildcards)]),
        "cmd": cmd,
        "deps": sorted({*job.inputs, *code}),
    }
    params = present_keys(context.raw, keys)
    if params:
        entry["params"] = [{context.configfile: params}]
    outs = sorted(p for p in products if not context.layout.is_summary(p))
    metrics = sorted(p for p in job.outputs if context.layout.is_summary(p))
    if outs:
        entry["outs"] = outs
    if metrics:
        entry["metrics"] = metrics
    return entry


@dataclass(frozen=True)
class Context:
    """What every stage is built from: the config (raw and resolved) and the repository root."""

    configfile: str
    raw: dict[str, Any]
    cfg: dict[str, Any]
    layout: Layout
    root: Path

    @classmethod
    def load(cls, configfile: str, root: Path) -> Context:
        cfg = load_config(root / configfile)
        raw = yaml.safe_load((root / configfile).read_text(encoding="utf-8"))
        return cls(configfile, raw, cfg, Layout.of(cfg), root.resolve())


def _topological(stages: dict[str, dict[str, Any]]) -> list[str]:
    """Stage names, producers before consumers, ties broken by name: stable and readable."""
    producer = {
        out: name
        for name, s in stages.items()
        for out in [*s.get("outs", []), *s.get("metrics", [])]
    }
    needs = {name: {producer[d] for d in s["deps"] if d in producer} for name, s in stages.items()}
    users: dict[str, set[str]] = {name: set() for name in stages}
    for name, deps in needs.items():
        for d in deps:
            users[d].add(name)
    ready = [name for name, deps in needs.items() if not deps]
    heapq.heapify(ready)
    order = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for user in users[name]:
            needs[user].discard(name)
            if not needs[user]:
                heapq.heappush(ready, user)
    if len(order) != len(stages):
        raise MatchbenchError("the Snakemake DAG has a cycle?")  # cannot happen: it is a DAG
    return order


def plots(jobs: list[Job], context: Context) -> list[str]:
    """Top-level plots: the report's figures folder, as image plots.

    `dvc plots show` then renders the project's own figures (learning curves included) into a
    page that needs no JavaScript: DVC's template loads Vega from a CDN, so data plots of
    ``train_log.csv`` would be blank offline."""
    figures = context.layout.report(context.cfg["run"], "figures")
    return [figures] if any(figures in job.outputs for job in jobs) else []


def build(jobs: list[Job], context: Context) -> dict[str, Any]:
    stages: dict[str, dict[str, Any]] = {}
    for job in jobs:
        if job.shellcmd is None:
            if job.outputs:
                raise MatchbenchError(
                    f"rule {job.rule} has no shell command (run:/script:): dvc.yaml cannot run it"
                )
            continue  # a target rule such as `all`
        name = stage_name(job)
        if name in stages:
            raise MatchbenchError(
                f"two jobs map to the DVC stage name {name!r}: rename a wildcard value "
                "(stage names keep only letters, digits, '-' and '_')"
            )
        stages[name] = stage(job, context)
    doc: dict[str, Any] = {"stages": {name: stages[name] for name in _topological(stages)}}
    if figures := plots(jobs, context):
        doc["plots"] = figures
    return doc


def command_line(configfile: str, out: str) -> str:
    argv = ["matchbench", "dvc-export"]
    if configfile != DEFAULT_CONFIG:
        argv += ["--configfile", configfile]
    if out != DEFAULT_OUT:
        argv += ["--out", out]
    return shlex.join(argv)


def render(doc: dict[str, Any], configfile: str, out: str) -> str:
    header = (
        f"# Generated from the Snakemake DAG by `{command_line(configfile, out)}`: do not edit.\n"
        "# Rerun it after changing workflow/ or the config; with `--check` it tells whether this\n"
        "# file is stale. See docs/dvc.md.\n"
    )
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=10_000)
    return header + body


def export(configfile: str, out: str, cwd: Path) -> str:
    """The text of dvc.yaml for ``configfile`` (a path relative to the repository root)."""
    context = Context.load(configfile, cwd)
    return render(build(parse_dry_run(dry_run(configfile, cwd)), context), configfile, out)


# --- CLI -----------------------------------------------------------------------------------


def _relative_config(configfile: str, root: Path) -> str:
    """The config path as the stages get it (the Snakefile passes it relative to the root)."""
    path = (root / configfile).resolve()
    if not path.is_file():
        raise MatchbenchError(f"{configfile}: config file not found")
    try:
        return path.relative_to(root.resolve()).as_posix()
    except ValueError:
        raise MatchbenchError(
            f"{configfile}: the config file must be inside the repository ({root}) "
            "so that dvc.yaml works in every clone"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--configfile",
        default=DEFAULT_CONFIG,
        help=f"config to export the DAG of, relative to the repository root (default: {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help=f"file to write (default: {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the file differs from what would be written (stale)",
    )


def run(args: argparse.Namespace) -> int:
    root = Path.cwd()
    if not (root / SNAKEFILE).is_file():
        raise MatchbenchError(f"{SNAKEFILE} not found: run dvc-export from the repository root")
    configfile = _relative_config(args.configfile, root)
    out = Path(args.out)
    regenerate = f"regenerate it with `{command_line(configfile, out.as_posix())}`"
    if args.check and not out.is_file():
        print(f"dvc-export: {out} does not exist; {regenerate}", file=sys.stderr)
        return 1
    text = export(configfile, out.as_posix(), root)
    if not args.check:
        write_text(out, text)
        n = len(yaml.safe_load(text)["stages"])
        print(f"dvc-export: {n} stages from the Snakemake DAG of {configfile} -> {out}")
        return 0
    current = out.read_text(encoding="utf-8")
    if current == text:
        print(f"dvc-export: {out} is up to date with the Snakemake DAG of {configfile}")
        return 0
    print(
        f"dvc-export: {out} is stale (differs from the Snakemake DAG); {regenerate}",
        file=sys.stderr,
    )
    diff = difflib.unified_diff(
        current.splitlines(), text.splitlines(), f"{out} (now)", f"{out} (expected)", lineterm=""
    )
    sys.stderr.write("\n".join(list(diff)[:60]) + "\n")
    return 1
