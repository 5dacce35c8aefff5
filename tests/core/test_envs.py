"""The conda environments of `snakemake --use-conda` agree with constraints.txt and pyproject.toml.

Conda channels cannot be reached from the test machines, so these tests check the files
themselves: every envs/*.yaml parses, each pinned package has the version of constraints.txt,
that version satisfies pyproject.toml's range, and every requirement of the package is provided
(so pip, installing matchbench into the env, has nothing left to choose).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
ENVS = sorted((ROOT / "envs").glob("*.yaml")) + sorted((ROOT / "envs").glob("*.yml"))

# conda-forge package name -> PyPI distribution name, where they differ.
CONDA_TO_PYPI = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "pytorch-gpu": "torch",
    "open-clip-torch": "open_clip_torch",
    "matplotlib-base": "matplotlib",
    "faiss-cpu": "faiss-cpu",
    "faiss-gpu": "faiss-gpu-cu12",
    "snakemake-minimal": "snakemake",
}
# Conda packages that are tools, not Python requirements of matchbench.
NOT_REQUIREMENTS = {"python", "pip"}

CONDA_SPEC = re.compile(
    r"^(?:(?P<channel>[\w.-]+)::)?(?P<name>[A-Za-z0-9_.-]+)"
    r"\s*(?:(?P<op>==|=|>=|<=|>|<|!=)\s*(?P<version>[^\s=]+)(?:=(?P<build>\S+))?)?$"
)


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirements() -> dict[str, Requirement]:
    """pyproject's runtime requirements by canonical name."""
    reqs = [Requirement(r) for r in pyproject()["project"]["dependencies"]]
    return {canonicalize_name(r.name): r for r in reqs}


def constraints() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"constraints.txt: {line!r} is not an exact pin"
        pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


def load_env(path: Path) -> dict[str, Any]:
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict), f"{path}: not a mapping"
    return env


def conda_specs(env: dict[str, Any]) -> list[str]:
    return [d for d in env.get("dependencies", []) if isinstance(d, str)]


def pip_lines(env: dict[str, Any]) -> list[str]:
    sections = [d["pip"] for d in env.get("dependencies", []) if isinstance(d, dict) and "pip" in d]
    return [line for section in sections for line in section]


def pinned(env: dict[str, Any]) -> list[tuple[str, str, Version]]:
    """(where, canonical PyPI name, version) of every exactly pinned package of the env."""
    out = []
    for spec in conda_specs(env):
        m = CONDA_SPEC.match(spec.strip())
        assert m, f"conda spec {spec!r} does not parse"
        name = m["name"].lower()
        if name in NOT_REQUIREMENTS or m["op"] is None:
            continue
        assert m["op"] in ("=", "=="), f"conda spec {spec!r}: pin exactly (== or =)"
        out.append(
            (
                f"conda {spec}",
                canonicalize_name(CONDA_TO_PYPI.get(name, name)),
                Version(m["version"]),
            )
        )
    for line in pip_lines(env):
        if line.startswith("-"):
            continue  # an option (-e, -r, --index-url ...)
        req = Requirement(line)
        specs = list(req.specifier)
        if len(specs) == 1 and specs[0].operator == "==":
            out.append((f"pip {line}", canonicalize_name(req.name), Version(specs[0].version)))
    return out


def provided(env: dict[str, Any]) -> set[str]:
    names = set()
    for spec in conda_specs(env):
        m = CONDA_SPEC.match(spec.strip())
        if m:
            names.add(canonicalize_name(CONDA_TO_PYPI.get(m["name"].lower(), m["name"])))
    for line in pip_lines(env):
        if not line.startswith("-"):
            names.add(canonicalize_name(Requirement(line).name))
    return names


def test_there_is_an_environment():
    assert ROOT / "envs" / "matchbench.yaml" in ENVS


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_parses_and_uses_conda_forge(path):
    env = load_env(path)
    assert env.get("channels", [])[:1] == ["conda-forge"], f"{path.name}: conda-forge first"
    assert "defaults" not in env["channels"]
    assert isinstance(env.get("dependencies"), list) and env["dependencies"]
    for spec in conda_specs(env):
        assert CONDA_SPEC.match(spec.strip()), f"{path.name}: {spec!r} is not a conda match spec"
    for d in env["dependencies"]:
        assert isinstance(d, str) or (isinstance(d, dict) and set(d) == {"pip"}), d
    if pip_lines(env):
        assert any(CONDA_SPEC.match(s)["name"] == "pip" for s in conda_specs(env)), (
            f"{path.name}: a pip section needs pip among the conda dependencies"
        )


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_python_satisfies_requires_python(path):
    env = load_env(path)
    (python,) = [s for s in conda_specs(env) if CONDA_SPEC.match(s)["name"] == "python"]
    version = CONDA_SPEC.match(python)["version"]
    assert version, f"{path.name}: pin python"
    requires = pyproject()["project"]["requires-python"]
    assert Version(version) in SpecifierSet(requires), f"python {version} vs {requires}"


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_pins_agree_with_constraints_and_pyproject(path):
    env = load_env(path)
    pins, reqs = constraints(), requirements()
    found = pinned(env)
    assert found, f"{path.name}: nothing pinned"
    for where, name, version in found:
        assert name in pins, f"{path.name}: {where}: {name} is not in constraints.txt"
        assert version == pins[name], f"{path.name}: {where}, but constraints.txt has {pins[name]}"
        if name in reqs:
            assert reqs[name].specifier.contains(version, prereleases=True), (
                f"{path.name}: {where} is outside pyproject.toml's {reqs[name]}"
            )


def test_main_env_provides_every_requirement_and_the_package():
    env = load_env(ROOT / "envs" / "matchbench.yaml")
    missing = sorted(set(requirements()) - provided(env))
    assert not missing, f"envs/matchbench.yaml lacks {missing}: pip would pick their versions"
    editable = [line for line in pip_lines(env) if line.startswith(("-e ", "--editable "))]
    assert editable, "the package itself is installed by the pip section"
    # Everything the package needs is pinned, so creating the env twice gives the same versions.
    pinned_names = {name for _, name, _ in pinned(env)}
    assert not sorted(set(requirements()) - pinned_names)


def test_conda_to_pypi_map_is_used_for_renamed_packages():
    env = load_env(ROOT / "envs" / "matchbench.yaml")
    names = {CONDA_SPEC.match(s)["name"] for s in conda_specs(env)}
    assert "pytorch" in names and "torch" not in names  # conda-forge's name for torch
    assert "open-clip-torch" in names
    assert {"torch", "open-clip-torch", "matplotlib"} <= {n for _, n, _ in pinned(env)}
