"""Packaging: environment.yml agrees with pyproject.toml; version, entry point, light import."""
from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")
import yaml  # PyYAML: installed with papermill (test extra) and jupyter-book (book extra)
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from the PyPI ones
CONDA_TO_PYPI = {"pytorch": "torch", "pytorch-cpu": "torch", "pytorch-gpu": "torch"}


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def conda_requirement(text: str) -> tuple[str, SpecifierSet]:
    """``numpy>=1.24`` or ``python=3.11`` (conda's fuzzy ``=``: 3.11.*) as a name and a specifier set."""
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", text)
    assert match, f"cannot parse conda dependency {text!r}"
    name, spec = match.groups()
    if re.fullmatch(r"=[^=<>!]+", spec):
        version = spec[1:]
        spec = f"=={version}" if version.endswith("*") else f"=={version}.*"
    return canonicalize_name(CONDA_TO_PYPI.get(name, name)), SpecifierSet(spec.replace(" ", ""))


def split_environment(env: dict) -> tuple[dict[str, SpecifierSet], dict[str, SpecifierSet], list[str]]:
    """Conda packages, pip packages (name -> specifier set) and pip's other lines (-e ..., options)."""
    conda, pip, other = {}, {}, []
    for item in env["dependencies"]:
        if isinstance(item, dict):
            for line in item.get("pip", []):
                if line.startswith("-"):
                    other.append(line)
                else:
                    req = Requirement(line)
                    pip[canonicalize_name(req.name)] = req.specifier
        else:
            name, spec = conda_requirement(item)
            conda[name] = spec
    return conda, pip, other


def _probe_versions(*specs: SpecifierSet) -> list[Version]:
    """Versions on and around every bound the specifiers name."""
    probes = {Version("0.1"), Version("999")}
    for spec in specs:
        for clause in spec:
            text = clause.version.rstrip(".*")
            try:
                v = Version(text)
            except InvalidVersion:
                continue
            parts = list(v.release)
            probes.add(v)
            for i in range(len(parts)):
                for step in (-1, 1):
                    bumped = parts[:i] + [max(0, parts[i] + step)] + [0] * (len(parts) - i - 1)
                    probes.add(Version(".".join(map(str, bumped))))
            probes.add(Version(".".join(map(str, parts + [1]))))
    return sorted(probes)


def compatible(env_spec: SpecifierSet, project_spec: SpecifierSet) -> bool:
    """Every probed version environment.yml allows, pyproject allows too, and it allows some."""
    probes = _probe_versions(env_spec, project_spec)
    allowed = [v for v in probes if env_spec.contains(v, prereleases=True)]
    return bool(allowed) and all(project_spec.contains(v, prereleases=True) for v in allowed)


def test_the_compatibility_check_itself():
    assert compatible(SpecifierSet(">=2.3,<=2.14.1"), SpecifierSet(">=2.3,<=2.14.1"))
    assert compatible(SpecifierSet("==2.5.*"), SpecifierSet(">=2.3,<=2.14.1"))
    assert not compatible(SpecifierSet(">=2.0"), SpecifierSet(">=2.3"))  # looser minimum
    assert not compatible(SpecifierSet(">=2.3"), SpecifierSet(">=2.3,<=2.14.1"))  # no cap
    assert not compatible(SpecifierSet(">=3,<2"), SpecifierSet(""))  # allows nothing
    assert conda_requirement("python=3.11") == ("python", SpecifierSet("==3.11.*"))
    assert conda_requirement("pytorch>=2.3") == ("torch", SpecifierSet(">=2.3"))


def test_every_dependency_is_in_environment_yml_with_a_compatible_spec(pyproject, environment):
    conda, pip, _ = split_environment(environment)
    for line in pyproject["project"]["dependencies"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        found = [spec for spec in (pip.get(name), conda.get(name)) if spec is not None]
        assert found, f"{req.name} (pyproject.toml) is missing from environment.yml"
        for spec in found:
            assert compatible(spec, req.specifier), (
                f"{req.name}: environment.yml says {str(spec) or 'any version'}, pyproject.toml {req.specifier}"
            )


def test_environment_yml_adds_no_package_pyproject_does_not_know(pyproject, environment):
    conda, pip, _ = split_environment(environment)
    known = {canonicalize_name(Requirement(d).name) for d in pyproject["project"]["dependencies"]}
    for extra in pyproject["project"].get("optional-dependencies", {}).values():
        known |= {canonicalize_name(Requirement(d).name) for d in extra}
    assert set(pip) <= known, f"pip packages not in pyproject.toml: {sorted(set(pip) - known)}"
    assert set(conda) - known <= {"python", "pip"}, f"conda packages not in pyproject.toml: {sorted(set(conda) - known)}"


def test_python_and_the_project_itself(pyproject, environment):
    conda, _, other = split_environment(environment)
    python = conda["python"]
    assert python.contains("3.11.0"), "environment.yml should pin Python 3.11"
    assert SpecifierSet(pyproject["project"]["requires-python"]).contains("3.11.0")
    editable = [line for line in other if line.startswith("-e")]
    assert len(editable) == 1, "environment.yml should install the project with pip's -e"
    match = re.fullmatch(r"-e\s+\.(?:\[([\w,\s-]+)\])?", editable[0].strip())
    assert match, f"unexpected editable line {editable[0]!r}"
    extras = {e.strip() for e in (match.group(1) or "").split(",") if e.strip()}
    assert "book" in extras
    assert extras <= set(pyproject["project"]["optional-dependencies"])


def test_version_matches_pyproject(pyproject):
    import clutils

    assert clutils.__version__ == pyproject["project"]["version"]


def test_console_script_points_at_the_cli(pyproject):
    target = pyproject["project"]["scripts"]["clutils"]
    module, _, attr = target.partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_importing_the_package_is_light():
    code = "import sys, clutils; print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
