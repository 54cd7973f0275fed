"""The package's layout (DESIGN §2): stages import only downwards; PyMC stays where the model is
built, sampled and compiled; the closed form exists once as an array form and once as the
compiled kernel."""

import ast
import shutil
import subprocess

import pytest

from .conftest import ROOT

SRC = ROOT / "src" / "dialyzability"


def test_import_contracts_are_kept():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.fail("import-linter is a test dependency (pip install -e '.[dev]')")
    run = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_the_interval_step_is_written_in_two_places_only():
    """The interval update A_end = A e^(-k dt) + ka G D(k, ka, dt) appears in the array form
    (pk/closed_form.py) and in the kernel (pk/kernel.py), and divided exponentials besides only
    in the two-compartment curves between events (pk/two_compartment.py): nowhere outside the
    kinetics."""
    holders = set()
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in (
                "divided_exp",
                "divided_exp_partials",
            ):
                holders.add(path.relative_to(SRC).as_posix())
            if isinstance(node, ast.Attribute) and node.attr in (
                "divided_exp",
                "divided_exp_partials",
            ):
                holders.add(path.relative_to(SRC).as_posix())
    assert holders <= {"pk/closed_form.py", "pk/kernel.py", "pk/two_compartment.py"}, holders
