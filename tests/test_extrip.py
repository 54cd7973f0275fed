"""EXTRIP criteria: cut-points by hand, probabilities of clear-cut posteriors built with known
clearances (az.from_dict), and the grades of NUTS-free fits recomputed from their clearances."""

import math

import arviz as az
import numpy as np
import pytest

from dialyzability.results.extrip import CRITERIA, GRADES, MIN_THALF_H, grade_probabilities
from dialyzability.results.quantities import compute_all

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


def _posterior(volume, cl_renal, cl_nonrenal, cl_ectr, seed, spread=0.1):
    """A posterior (az.from_dict) of one case with one HD modality, the clearances and the
    volume scattered log-normally (SD ``spread``) around the given values."""
    rng = np.random.default_rng(seed)

    def draws(x, *extra):
        return x * np.exp(spread * rng.normal(size=(2, 500, *extra)))

    idata = az.from_dict(
        posterior={
            "volume": draws(volume),
            "cl_renal": draws(cl_renal),
            "cl_nonrenal": draws(cl_nonrenal),
            "cl_ectr": draws(cl_ectr, 1),
        },
        coords={"modality": ["HD"]},
        dims={"cl_ectr": ["modality"]},
    )
    return idata.posterior


def test_clearly_dialyzable_case_gets_grade_d():
    # CL_ECTR 15 L/h against 1.5 L/h endogenous, V 50 L: t1/2 off = 0.693*50/1.5 = 23 h > 4 h;
    # share 15/16.5 = 91 % > 75 %; 6-h removal 91 % x (1 - e^(-16.5*6/50)) = 78 % > 30 %
    post = _posterior(50.0, 1.0, 0.5, 15.0, seed=31)
    extrip = grade_probabilities(compute_all(post, ["HD"]), ["HD"])
    assert extrip["p_thalf_off_above_4h"] > 0.9
    assert set(extrip["modalities"]["HD"]) == set(BY_NAME)
    for per in extrip["modalities"]["HD"].values():
        assert per["D"] > 0.9


def test_clearly_not_dialyzable_case_gets_grade_n():
    # CL_ECTR 0.2 L/h against 10 L/h endogenous: share 2 % < 25 %; 6-h removal
    # 2 % x (1 - e^(-10.2*6/50)) = 1.4 % < 3 %; t1/2 on/off = 10/10.2 = 98 % > 75 %;
    # t1/2 off = 0.693*50/10 = 3.5 h < 4 h: the criteria mostly do not apply
    post = _posterior(50.0, 8.0, 2.0, 0.2, seed=32)
    extrip = grade_probabilities(compute_all(post, ["HD"]), ["HD"])
    for per in extrip["modalities"]["HD"].values():
        assert per["N"] > 0.9
    assert extrip["p_thalf_off_above_4h"] < 0.5


def test_a_posterior_straddling_a_cut_point_splits_between_two_grades():
    # share exactly 75 % at the centre: CL_ECTR = 3 x endogenous; half the draws each side
    post = _posterior(50.0, 1.0, 1.0, 6.0, seed=33, spread=0.05)
    extrip = grade_probabilities(compute_all(post, ["HD"]), ["HD"])
    share = extrip["modalities"]["HD"]["clearance_share"]
    assert share["D"] + share["M"] == pytest.approx(1.0)
    assert 0.4 < share["D"] < 0.6


def _by_hand(post, m):
    """The grades of each draw recomputed from the posterior's clearances and volume."""
    endogenous = (post["cl_renal"] + post["cl_nonrenal"]).values.ravel()
    ectr = post["cl_ectr"].sel(modality=m).values.ravel()
    volume = post["volume"].values.ravel()
    share = 100 * ectr / (endogenous + ectr)
    removed = share * (1 - np.exp(-6 * (endogenous + ectr) / volume))
    thalf_ratio = 100 - share

    def grade(x, cuts, higher):
        d, mm, s = cuts
        if higher:
            return np.where(x > d, 0, np.where(x > mm, 1, np.where(x >= s, 2, 3)))
        return np.where(x < d, 0, np.where(x <= mm, 1, np.where(x <= s, 2, 3)))

    return {
        "removed_6h": grade(removed, (30, 10, 3), True),
        "clearance_share": grade(share, (75, 50, 25), True),
        "thalf_ratio": grade(thalf_ratio, (25, 50, 75), False),
        "removal_share": grade(share, (75, 50, 25), True),
    }, math.log(2) * volume / endogenous


@pytest.mark.parametrize("key", ["lee", "rich", "anuric", "two_modalities"])
def test_summary_grades_equal_grades_recomputed_from_the_clearances(free_fit, key):
    result = free_fit(key)
    extrip = result.summary().extrip
    post = result.posterior
    assert list(extrip["modalities"]) == result.modalities
    for m in result.modalities:
        grades, thalf_off = _by_hand(post, m)
        for name, g in grades.items():
            per = extrip["modalities"][m][name]
            assert per["label"] == BY_NAME[name].label
            for i, k in enumerate(GRADES):
                assert per[k] == pytest.approx((g == i).mean(), abs=2e-3)
        assert extrip["p_thalf_off_above_4h"] == pytest.approx((thalf_off > MIN_THALF_H).mean())


def test_clearance_criteria_agree_draw_by_draw(free_fit):
    """In a one-compartment model the last three criteria are one number seen three ways (the
    module's stated limitation): their grade probabilities coincide."""
    extrip = free_fit("lee").summary().extrip["modalities"]["HD"]
    for g in GRADES:
        assert extrip["clearance_share"][g] == extrip["removal_share"][g]
        assert extrip["thalf_ratio"][g] == pytest.approx(extrip["clearance_share"][g], abs=2e-3)
