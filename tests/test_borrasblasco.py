"""The published sustained-release lithium case with a delayed secondary peak, fitted with the
two-route absorption (slow: a real fit). `python scripts/secondary_peak.py` prints it beside the
one-compartment, first-order fit."""

import numpy as np
import pytest

from tests.conftest import CASES


def _coverage(result):
    pp = result.idata.posterior_predictive["concentration"].values
    pp = pp.reshape(-1, pp.shape[-1])
    lo, hi = np.quantile(pp, [0.025, 0.975], axis=0)
    obs = result.idata.observed_data["concentration"].values
    return (lo <= obs) & (obs <= hi)


@pytest.mark.slow
def test_the_two_route_absorption_predicts_all_six_levels():
    from dialyzability.api import fit, load_case

    case = load_case(CASES / "borrasblasco2007-lithium.toml")
    dual = fit(case, seed=1, structure="two-compartment", absorption="dual")
    assert dual.diagnostics().converged
    assert _coverage(dual).all()
