"""The lock files (issue 13) are true: every dependency pyproject.toml declares is pinned there at
a version its range allows, the two locks agree, and this environment (made from the dev lock by
bin/_setup.sh, as CI makes it) holds exactly the pinned versions. torch is pinned by the install
scripts instead (bin/_setup.sh, the Dockerfile), and must agree with them too."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pins(lock: str) -> dict[str, Version]:
    pins = {}
    for line in (ROOT / lock).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if match:
            pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


def _declared(*extras: str) -> list[Requirement]:
    """The requirements of the project and the named extras, following the extras' references to
    the project's own other extras (``steward[ray,flavors]``)."""
    pending, seen, found = list(extras), set(), [Requirement(text) for text in PYPROJECT["dependencies"]]
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in PYPROJECT["optional-dependencies"][extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == "steward":
                pending.extend(requirement.extras)
            else:
                found.append(requirement)
    return found


@pytest.mark.parametrize(
    ("lock", "extras"), [("requirements-dev.txt", ("dev",)), ("requirements.txt", ("flavors",))]
)
def test_every_declared_dependency_is_pinned_inside_its_range(lock, extras):
    pins = _pins(lock)
    declared = [requirement for requirement in _declared(*extras) if requirement.name != "torch"]
    assert len(declared) > 20
    missing = [
        str(requirement) for requirement in declared if canonicalize_name(requirement.name) not in pins
    ]
    outside = [
        f"{requirement} locked at {pins[canonicalize_name(requirement.name)]}"
        for requirement in declared
        if canonicalize_name(requirement.name) in pins
        and not requirement.specifier.contains(pins[canonicalize_name(requirement.name)], prereleases=True)
    ]
    assert missing == [], f"not in {lock}: run bin/lock"
    assert outside == [], f"{lock} is stale: run bin/lock"
    assert "torch" not in pins  # installed first by the scripts, from the CPU or a CUDA index


def test_the_two_locks_agree():
    runtime, dev = _pins("requirements.txt"), _pins("requirements-dev.txt")
    assert {
        name: (version, dev.get(name)) for name, version in runtime.items() if dev.get(name) != version
    } == {}


def test_this_environment_is_the_dev_lock():
    pins = _pins("requirements-dev.txt")
    installed = {}
    for name in pins:
        try:
            installed[name] = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            installed[name] = None
    assert {name: (pins[name], found) for name, found in installed.items() if found != pins[name]} == {}


def test_torch_is_pinned_alike_by_the_install_scripts_and_inside_its_range():
    setup_pin = re.search(r'^TORCH_PIN="([^"]+)"$', (ROOT / "bin/_setup.sh").read_text(), re.M).group(1)
    image_pin = re.search(
        r"^ARG TORCH_SPEC=torch==(\S+)$", (ROOT / "config/deploy/Dockerfile").read_text(), re.M
    ).group(1)
    declared = next(Requirement(text) for text in PYPROJECT["dependencies"] if text.startswith("torch"))
    assert setup_pin == image_pin
    assert declared.specifier.contains(setup_pin)
    assert Version(metadata.version("torch")).public == setup_pin
