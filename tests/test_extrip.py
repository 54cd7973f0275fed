"""EXTRIP criteria: cut-points by hand, probabilities from fits of clear-cut synthetic cases."""

import math

import numpy as np
import pytest

from dialyzability.api import fit
from dialyzability.io.case import parse_case
from dialyzability.results.extrip import CRITERIA, GRADES, grade_probabilities
from dialyzability.simulate import Truth, simulate_case

BY_NAME = {c.name: c for c in CRITERIA}


@pytest.mark.parametrize(
    ("criterion", "value", "grade"),
    [
        ("removed_6h", 31, "D"),
        ("removed_6h", 30, "M"),
        ("removed_6h", 10.5, "M"),
        ("removed_6h", 10, "S"),
        ("removed_6h", 3, "S"),
        ("removed_6h", 2.9, "N"),
        ("clearance_share", 0.76, "D"),
        ("clearance_share", 0.75, "M"),
        ("clearance_share", 0.25, "S"),
        ("clearance_share", 0.24, "N"),
        ("thalf_ratio", 24, "D"),
        ("thalf_ratio", 25, "M"),
        ("thalf_ratio", 50, "M"),
        ("thalf_ratio", 60, "S"),
        ("thalf_ratio", 75, "S"),
        ("thalf_ratio", 76, "N"),
    ],
)
def test_cut_points(criterion, value, grade):
    assert GRADES[int(BY_NAME[criterion].grades([value])[0])] == grade


def test_probabilities_sum_to_one():
    rng = np.random.default_rng(0)
    n = 1000
    q = {
        "thalf_off": rng.lognormal(1.5, 0.5, n),
        "removed_6h": rng.uniform(0, 60, n),
        "ratio_total": rng.uniform(0, 1, n),
        "thalf_ratio": rng.uniform(0, 100, n),
    }
    out = grade_probabilities(q, ["HD"])
    for per in out["modalities"]["HD"].values():
        assert sum(per[g] for g in GRADES) == pytest.approx(1.0)
    assert out["p_thalf_off_above_4h"] == pytest.approx((q["thalf_off"] > 4).mean())


def _fit_truth(cl_ectr, cl_renal, cl_nonrenal, seed):
    truth = Truth(
        weight=70.0,
        volume=50.0,
        cl_renal=cl_renal,
        cl_nonrenal=cl_nonrenal,
        cl_ectr={"HD": cl_ectr},
        ka=1.0,
        bioavailability=0.8,
    )
    raw, _ = simulate_case("rich", seed=seed, noise=0.05, truth=truth)
    return fit(parse_case(raw, raw["id"]), seed=seed, draws=500, tune=500, chains=2)


def test_clearly_dialyzable_case_gets_grade_d():
    # CL_ECTR 15 L/h against 1.5 L/h endogenous, V 50 L: t1/2 off = 0.693*50/1.5 = 23 h > 4 h;
    # share 15/16.5 = 91 % > 75 %; 6-h removal 91 % x (1 - e^(-16.5*6/50)) = 78 % > 30 %
    result = _fit_truth(15.0, 1.0, 0.5, seed=31)
    extrip = result.summary().extrip
    assert extrip["p_thalf_off_above_4h"] > 0.9
    for per in extrip["modalities"]["HD"].values():
        assert per["D"] > 0.9


def test_clearly_not_dialyzable_case_gets_grade_n():
    # CL_ECTR 0.2 L/h against 10 L/h endogenous: share 2 % < 25 %; 6-h removal
    # 2 % x (1 - e^(-10.2*6/50)) = 1.4 % < 3 %; t1/2 on/off = 10/10.2 = 98 % > 75 %
    result = _fit_truth(0.2, 8.0, 2.0, seed=32)
    extrip = result.summary().extrip
    for per in extrip["modalities"]["HD"].values():
        assert per["N"] > 0.9
    assert math.isfinite(extrip["p_thalf_off_above_4h"])
