"""The lock files still cover pyproject.toml: a requirement declared there but not pinned (or pinned
at a version it no longer allows) would install nothing, or the wrong thing, from the lock."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)
REGENERATE = "declared in pyproject.toml but not pinned as declared: run `make lock`"


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return data


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    return {canonicalize_name(name): version for name, version in PIN.findall(text)}


def unpinned(requirements: list[str], pinned: dict[str, str]) -> list[str]:
    """The requirements that `pinned` leaves out or pins at a version they exclude."""
    missing = []
    for line in requirements:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if name == "usersvc":
            continue  # the project's own extras, listed on their own
        version = pinned.get(name)
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            missing.append(line)
    return missing


def test_the_dev_lock_pins_every_declared_requirement(project: dict[str, Any]) -> None:
    declared = [
        *project["project"]["dependencies"],
        *project["project"]["optional-dependencies"]["embedded"],
        *project["project"]["optional-dependencies"]["dev"],
    ]
    assert unpinned(declared, pins("requirements-dev.lock")) == [], REGENERATE


def test_the_runtime_lock_pins_the_dependencies_and_the_build_backend(
    project: dict[str, Any],
) -> None:
    declared = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    assert unpinned(declared, pins("requirements.lock")) == [], REGENERATE


def test_both_locks_pin_the_same_versions() -> None:
    dev, runtime = pins("requirements-dev.lock"), pins("requirements.lock")
    differing = {name: (version, dev.get(name)) for name, version in runtime.items()}
    assert {name: pair for name, pair in differing.items() if pair[0] != pair[1]} == {}
