"""Effluent samples as an observation kind: C_E(t) = CL_ECTR · C_p(t) / Q_E (issue 13).

The prediction against the array form and against hand arithmetic, the case errors, the saved
posterior's groups, the report and ``check``, and one real fit of a case whose only
information on CL_ECTR is its effluent samples."""

import math

import numpy as np
import pytest

from dialyzability.design import BatchDesign, case_events, effluent_sample_name, make_batch
from dialyzability.io.case import CaseError, parse_case
from dialyzability.io.drugs import load_drug
from dialyzability.model.build import build_model
from dialyzability.pk.closed_form import solve_batch
from dialyzability.simulate import EFFLUENT_FLOW, simulate_case

from .conftest import case_of, nuts_free_fit, simulated_case


def _prior(model, draws, seed):
    """Forward draws of every free variable and deterministic (not the observations)."""
    import pymc as pm

    names = [v.name for v in model.free_RVs] + [v.name for v in model.deterministics]
    return pm.sample_prior_predictive(
        draws=draws, model=model, var_names=names, random_seed=seed
    ).prior


def _iv_case(**session):
    """100 mg iv at 0; levels at 1 and 4 h; HD from 2 to 6 h at Q_E 30 L/h, sampled at 4 h."""
    return {
        "id": "iv-effluent",
        "drug": "baclofen",
        "patient": {"weight": "70 kg"},
        "doses": [{"time_h": 0, "amount": "100 mg", "route": "iv"}],
        "concentrations": [
            {"time_h": 1, "value": "1.8 mg/L"},
            {"time_h": 4, "value": "0.9 mg/L"},
        ],
        "sessions": [
            {
                "modality": "HD",
                "start_h": 2,
                "end_h": 6,
                "effluent_flow": "30 L/h",
                "effluent_samples": [{"time_h": 4, "concentration": "0.3 mg/L"}],
            }
            | session
        ],
    }


def test_the_sample_time_is_a_sampling_event_of_the_kinetics():
    # iv bolus, no absorption: V = 50 L, CL = 5 L/h (k = 0.1/h), CL_ECTR = 10 L/h on 2-6 h
    # (k = 0.3/h). C_p(4) = (100/50) e^(-0.1·2) e^(-0.3·2) = 2 e^(-0.8) = 0.898658 mg/L and
    # C_E(4) = CL_ECTR · C_p(4) / Q_E = 10 · 0.898658 / 30 = 0.299553 mg/L.
    case = case_of(_iv_case())
    events, design, index = case_events(case)
    assert design.samples[index["effluent_samples"][0]] == events.labels.index(
        effluent_sample_name(1, 1)
    )
    times = np.array([events.resolve({})], dtype=float)
    one = np.ones(1)
    out = solve_batch(
        times, BatchDesign.stack([design]), 50 * one, 5 * one, np.array([[10.0]]), one, one, 0 * one
    )
    c_p = out["conc"][0, index["effluent_samples"][0]]
    assert c_p == pytest.approx(2 * math.exp(-0.8), rel=1e-12)
    assert 10 * c_p / 30 == pytest.approx(0.299553, rel=1e-5)


def test_prediction_is_cl_ectr_times_plasma_over_effluent_flow_at_prior_draws():
    """At prior draws of the model, pred_effluent_sample equals CL_ECTR · C_p(t) / Q_E with C_p
    from the array form fed with the draw's parameters (by hand: one modality, Q_E = 30 L/h,
    so each sample is cl_ectr[draw] / 30 times the array form's concentration at its time)."""
    case = simulated_case("effluent_samples", 2)
    model = build_model([case]).model
    prior = _prior(model, 20, 3)
    events, design, index = case_events(case)
    times = np.array([events.resolve({})], dtype=float)
    for d in range(20):
        p = {n: prior[n].values[0, d] for n in ("volume", "cl_renal", "cl_nonrenal", "ka")}
        p |= {n: prior[n].values[0, d] for n in ("bioavailability", "a0", "cl_ectr")}
        out = solve_batch(
            times,
            BatchDesign.stack([design]),
            p["volume"],
            p["cl_renal"] + p["cl_nonrenal"],
            p["cl_ectr"],
            p["ka"],
            p["bioavailability"],
            p["a0"],
        )
        c_p = out["conc"][0, index["effluent_samples"]]
        want = p["cl_ectr"][0, 0] * c_p / EFFLUENT_FLOW
        np.testing.assert_allclose(prior["pred_effluent_sample"].values[0, d], want, rtol=1e-10)
        # and the levels are still the first samples
        np.testing.assert_allclose(
            prior["pred_level"].values[0, d], out["conc"][0, : len(case.concentrations)], 1e-10
        )


def test_a_sample_at_the_time_of_a_level_is_the_level_times_the_sieving_coefficient():
    case = case_of(_iv_case())
    model = build_model([case]).model
    prior = _prior(model, 50, 1)
    level_at_4 = prior["pred_level"].values[0, :, 1]
    sieving = prior["cl_ectr"].values[0, :, 0, 0] / 30.0
    np.testing.assert_allclose(
        prior["pred_effluent_sample"].values[0, :, 0], sieving * level_at_4, rtol=1e-12
    )


def test_a_sample_without_effluent_flow_is_a_case_error_naming_the_field():
    raw = _iv_case()
    del raw["sessions"][0]["effluent_flow"]
    with pytest.raises(CaseError) as err:
        parse_case(raw, "x.toml")
    e = err.value
    assert (e.path, e.block, e.field) == ("x.toml", "[[sessions]] #1", "effluent_flow")
    assert "effluent_flow is needed to use effluent samples" in e.reason


def test_a_sample_outside_its_session_is_a_case_error():
    raw = _iv_case(effluent_samples=[{"time_h": 8, "concentration": "0.3 mg/L"}])
    with pytest.raises(CaseError) as err:
        parse_case(raw, "x.toml")
    assert err.value.block == "[[sessions]] #1 effluent_samples #1"
    assert err.value.field == "time_h" and "outside its session" in err.value.reason


def test_samples_are_observed_with_log_likelihood_and_predictive_per_sample():
    case = simulated_case("effluent_samples", 1)
    fit = nuts_free_fit([case], draws=250)
    names = [effluent_sample_name(1, k) for k in (1, 2, 3)]
    idata = fit.idata
    assert list(idata.observed_data["effluent_concentration"].effluent_sample.values) == names
    for group in ("log_likelihood", "posterior_predictive", "prior_predictive"):
        var = idata[group]["effluent_concentration"]
        assert var.dims == ("chain", "draw", "effluent_sample")
        assert var.sizes["effluent_sample"] == 3 and np.isfinite(var.values).all()
    assert "effluent_sample" not in idata.log_likelihood["concentration"].dims
    # the error prior is the kind's own
    assert load_drug("baclofen").errors["effluent_sample"].origin == "default.toml"


def test_report_figure_and_check_show_the_samples():
    from dialyzability.cli import describe_case
    from dialyzability.outputs.plots import levels_data
    from dialyzability.outputs.report import build_report

    case = simulated_case("effluent_samples", 1)
    fit = nuts_free_fit([case], draws=250)
    text = build_report(fit, fit.summary(), []).markdown()
    assert "## Effluent samples: measured against modelled" in text
    assert "HD session 1, sample 3" in text and "CL_ECTR / Q_E" in text
    samples = levels_data(fit, points=20, max_draws=50)["effluent_samples"]
    assert [s["value"] for s in samples] == [
        e.concentration for e in case.sessions[0].effluent_samples
    ]
    assert all(s["low"] < s["median"] < s["high"] for s in samples)
    shown = describe_case(case)
    listed = [x for x in shown.splitlines() if x.startswith("      effluent sample ")]
    assert len(listed) == 3 and "effluent flow 30 L/h" in shown
    # and the classical estimate of each sample, here without a level at the sample's time
    assert shown.count("effluent sample #") == 3


def test_pooled_batch_labels_and_modalities_of_samples():
    raw_a, _ = simulate_case("effluent_samples", 1)
    raw_b, _ = simulate_case("rich", 2)
    raw_b["sessions"][0]["modality"] = "CVVH"
    raw_b["sessions"][0]["effluent_flow"] = "2 L/h"
    raw_b["sessions"][0]["effluent_samples"] = [
        {"time_h": raw_b["sessions"][0]["start_h"] + 1, "concentration": "0.1 mg/L"}
    ]
    a, b = case_of(raw_a), case_of(raw_b)
    batch = make_batch([a, b], load_drug("baclofen"))
    s = batch.effluent_samples
    assert s.labels[-1] == f"{b.id}:session1_sample1" and len(s) == 4
    assert [batch.modalities[m] for m in s.modality] == ["HD", "HD", "HD", "CVVH"]
    np.testing.assert_array_equal(batch.data["effluent_sample_flow"], [30, 30, 30, 2])
    assert list(s.where) == [5, 6, 7, 5]  # after each case's five levels
    model = build_model(batch, population="hierarchical").model
    assert model["pred_effluent_sample"].eval().shape == (4,)


def test_an_effluent_samples_only_case_narrows_cl_ectr():
    """One real fit: no urine, no effluent total; CL_ECTR is seen only through the samples
    (and the levels). Its posterior interval is much narrower than its prior's."""
    from dialyzability.api import fit

    raw, truth = simulate_case("effluent_samples", 4)
    case = case_of(raw)
    assert not case.urine and case.sessions[0].amount is None
    result = fit(case, draws=300, tune=400, chains=2, seed=4)
    q = result.summary().quantities["cl_ectr"]
    width = math.log(q["hdi"][1] / q["hdi"][0])
    prior = math.log(q["prior"]["hdi"][1] / q["prior"]["hdi"][0])
    assert width < 0.4 * prior
    assert q["hdi"][0] <= truth.cl_ectr["HD"] <= q["hdi"][1]


def test_classical_effluent_clearance_of_a_sample_with_a_level_at_its_time():
    from dialyzability.results.nca import classical_estimates

    # Q_E · C_E / C_p = 30 L/h · 0.3 mg/L / 0.9 mg/L = 10 L/h (the level at 4 h)
    raw = _iv_case()
    raw["sessions"][0]["effluent_samples"].append({"time_h": 5, "concentration": "0.2 mg/L"})
    est = {e.name: e for e in classical_estimates(case_of(raw))}
    first = est["cl_ectr_session1_sample1"]
    assert first.value == pytest.approx(10.0) and first.matrix == "plasma"
    second = est["cl_ectr_session1_sample2"]
    assert second.value is None
    assert second.reason == "not computable: no quantified plasma or serum level measured at 5 h"
    raw["concentrations"][1]["matrix"] = "blood"
    blood = {e.name: e for e in classical_estimates(case_of(raw))}["cl_ectr_session1_sample1"]
    assert blood.value is None and "only a whole-blood level" in blood.reason
