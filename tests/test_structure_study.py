"""Studies of the structural models (slow; `python scripts/structure_study.py` prints the table).

Two-compartment truths with a rebound after the session, seen richly and sparsely, and
one-compartment truths seen richly, each fitted with both structures (issue 14)."""

import numpy as np
import pytest

from dialyzability.simulate import structure_study

NAMES = ("ratio", "cl_renal", "cl_ectr")


@pytest.mark.slow
def test_two_compartments_cover_the_truth_and_loo_prefers_them_where_they_are_seen():
    rows = structure_study(per_design=8, seed=300, one_compartment=5)
    two = [r for r in rows if r["truth"] == "two-compartment"]
    assert len(two) >= 16
    fits = [r["fits"]["two-compartment"] for r in two]
    assert all(f["diagnostics"]["divergences"] == 0 for f in fits)
    for name in NAMES:
        assert np.mean([f[name]["covered"] for f in fits]) >= 0.85, name
    rich = [r for r in two if r["design"] == "rebound_rich"]
    preferred = [r["comparison"]["preferred"] == "two-compartment" for r in rich]
    assert np.mean(preferred) >= 0.8
    one = [r for r in rows if r["truth"] == "one-compartment"]
    not_two = [r["comparison"]["preferred"] != "two-compartment" for r in one]
    assert np.mean(not_two) >= 0.8
