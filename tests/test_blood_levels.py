"""Whole-blood levels: C_blood = B:P · C_p, B:P with its prior from the drug model (issue 13)."""

import math

import numpy as np
import pytest

from dialyzability.design import BatchDesign, case_events
from dialyzability.io.drugs import Sourced, blood_plasma_prior, load_drug
from dialyzability.model.build import build_model
from dialyzability.pk.closed_form import solve_batch

from .conftest import case_of, nuts_free_fit, simulated_case
from .test_effluent_samples import _prior


def _mixed_case():
    """Oral dose; a plasma, a serum and a whole-blood level."""
    return case_of(
        {
            "id": "mixed-matrices",
            "drug": "baclofen",
            "patient": {"weight": "70 kg"},
            "doses": [{"time_h": 0, "amount": "500 mg"}],
            "concentrations": [
                {"time_h": 3, "value": "2 mg/L", "matrix": "plasma"},
                {"time_h": 6, "value": "1.5 mg/L", "matrix": "serum"},
                {"time_h": 9, "value": "1.2 mg/L", "matrix": "blood"},
            ],
        }
    )


def test_a_blood_level_is_bp_times_the_plasma_level_and_serum_is_plasma():
    case = _mixed_case()
    model = build_model([case]).model
    prior = _prior(model, 20, 5)
    events, design, _ = case_events(case)
    times = np.array([events.resolve({})], dtype=float)
    for d in range(20):
        p = {n: prior[n].values[0, d] for n in ("volume", "cl_renal", "cl_nonrenal", "ka")}
        p |= {n: prior[n].values[0, d] for n in ("bioavailability", "a0")}
        out = solve_batch(
            times,
            BatchDesign.stack([design]),
            p["volume"],
            p["cl_renal"] + p["cl_nonrenal"],
            np.zeros((1, 1)),
            p["ka"],
            p["bioavailability"],
            p["a0"],
        )
        c_p = out["conc"][0]
        bp = float(prior["blood_plasma_ratio"].values[0, d])
        # plasma and serum: C_p; whole blood: B:P · C_p
        want = c_p * np.array([1.0, 1.0, bp])
        np.testing.assert_allclose(prior["pred_level"].values[0, d], want, rtol=1e-10)


def test_bp_is_in_the_model_only_with_a_blood_level():
    assert "blood_plasma_ratio" not in build_model([simulated_case("rich", 1)]).model.named_vars
    model = build_model([simulated_case("blood", 1)]).model
    assert "blood_plasma_ratio" in model.named_vars
    # its prior is the drug model's (baclofen cites no ratio: the default, median 1, sigma 0.5)
    draws = np.log(_prior(model, 1000, 2)["blood_plasma_ratio"].values.ravel())
    prior = load_drug("baclofen").priors.blood_plasma_ratio
    assert prior.origin == "default.toml" and (prior.median, prior.sigma) == (1.0, 0.5)
    assert draws.mean() == pytest.approx(0.0, abs=0.05)
    assert draws.std() == pytest.approx(0.5, abs=0.05)


def test_bp_prior_spans_the_cited_range_with_margin():
    prior = blood_plasma_prior(Sourced(value=(0.8, 1.25), source="a study"), "x.toml")
    # median sqrt(0.8 · 1.25) = 1; sigma = (log(1.25/0.8)/2 + 0.2)/1.96 = (0.2231 + 0.2)/1.96
    assert prior.median == pytest.approx(1.0)
    assert prior.sigma == pytest.approx((0.5 * math.log(1.25 / 0.8) + 0.2) / 1.96)
    lo, hi = (
        prior.median * math.exp(-1.96 * prior.sigma),
        prior.median * math.exp(1.96 * prior.sigma),
    )
    assert lo == pytest.approx(0.8 / math.exp(0.2)) and hi == pytest.approx(1.25 * math.exp(0.2))
    assert "a study" in prior.source
    # a drug model that names the ratio not found (valproate: its one source's 0.28 is below
    # 1 - haematocrit) takes the default's prior
    valproate = load_drug("valproate")
    assert "blood_plasma_ratio" in valproate.not_found
    assert valproate.priors.blood_plasma_ratio.origin == "default.toml"


def test_simulated_blood_case_has_its_prior_predictive_and_quantity():
    case = simulated_case("blood", 3)
    fit = nuts_free_fit([case], draws=250)
    pp = fit.idata.prior_predictive["concentration"]
    assert pp.dims == ("chain", "draw", "level") and pp.sizes["level"] == 5
    assert "blood_plasma_ratio" in fit.summary().quantities
    assert fit.idata.posterior["blood_plasma_ratio"].dims == ("chain", "draw")
