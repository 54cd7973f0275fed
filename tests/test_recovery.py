"""Parameter recovery over simulated designs (slow: about 10 minutes)."""

import pytest

from dialyzability.simulate import recovery_study


@pytest.mark.slow
def test_hdi_covers_truth_in_most_cases_without_divergences():
    rows = recovery_study(per_design=4, seed=100)
    assert len(rows) >= 24
    assert all(r["diagnostics"].divergences == 0 for r in rows)
    for name in ("ratio", "cl_renal", "cl_ectr"):
        coverage = sum(r[name]["covered"] for r in rows) / len(rows)
        assert coverage >= 0.85, (name, coverage)
