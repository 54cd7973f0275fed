"""Studies of the structural models (slow; `python scripts/structure_study.py` prints the table).

Two-compartment truths with a rebound after the session, seen richly and sparsely, and
one-compartment truths seen richly, each fitted with both structures (issue 14). The study is
run once per session of the slow tests and read by each test."""

import numpy as np
import pytest

NAMES = ("ratio", "cl_renal", "cl_ectr")


@pytest.fixture(scope="module")
def study():
    from dialyzability.simulate import structure_study

    return structure_study(per_design=8, seed=300, one_compartment=5)


@pytest.mark.slow
def test_two_compartments_cover_the_truth_without_divergences(study):
    two = [r for r in study if r["truth"] == "two-compartment"]
    assert len(two) >= 16
    fits = [r["fits"]["two-compartment"] for r in two]
    assert all(f["diagnostics"]["divergences"] == 0 for f in fits)
    for name in NAMES:
        assert np.mean([f[name]["covered"] for f in fits]) >= 0.85, name


@pytest.mark.slow
def test_loo_does_not_prefer_two_compartments_where_there_is_one(study):
    one = [r for r in study if r["truth"] == "one-compartment"]
    assert len(one) >= 5
    assert np.mean([r["comparison"]["preferred"] != "two-compartment" for r in one]) >= 0.8


@pytest.mark.slow
@pytest.mark.xfail(
    reason="LOO prefers two compartments (by more than 2 SE) in 5 of the 8 rich rebound cases at "
    "seed 300 (6 of 8 with the earlier 8-level design): with about 12 observations the SE of "
    "the elpd difference is as large as the difference (Sivula et al. arXiv:2008.10296)",
    strict=False,
)
def test_loo_prefers_two_compartments_where_the_rebound_is_seen(study):
    rich = [r for r in study if r["truth"] == "two-compartment" and r["design"] == "rebound_rich"]
    assert np.mean([r["comparison"]["preferred"] == "two-compartment" for r in rich]) >= 0.8
