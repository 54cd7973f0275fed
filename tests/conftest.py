"""Shared fixtures: the shipped founding case and helpers to write case files."""

from __future__ import annotations

import copy
import os
import tempfile
import tomllib
from pathlib import Path

import pytest
import tomli_w

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "data" / "cases"
LEE = CASES / "lee2020-baclofen.toml"

# the suite compiles into a cache of its own, never the user's (dialyzability.inference.compiled)
os.environ["DIALYZABILITY_CACHE"] = tempfile.mkdtemp(prefix="dialyzability-test-cache-")


@pytest.fixture
def lee_raw() -> dict:
    """The founding case as a dict, to be mutated by a test."""
    with LEE.open("rb") as fh:
        return copy.deepcopy(tomllib.load(fh))


@pytest.fixture
def write_case(tmp_path):
    """Write a dict as a TOML case file and return its path."""

    def write(raw: dict, name: str = "case.toml") -> Path:
        path = tmp_path / name
        path.write_bytes(tomli_w.dumps(raw).encode())
        return path

    return write


@pytest.fixture(scope="session")
def lee_fit_dir(tmp_path_factory):
    """The founding case fitted once through the CLI (short run), with every output."""
    from dialyzability.cli import main

    out = tmp_path_factory.mktemp("lee-fit")
    args = ["fit", str(LEE), "--out", str(out), "--seed", "3", "--quiet"]
    args += ["--draws", "300", "--tune", "300", "--chains", "2"]
    assert main(args) == 0
    return out
