"""Fits of real and simulated cases: the summary contract, save/load, seeds, convergence."""

import json

import numpy as np
import pytest

from dialyzability.api import fit
from dialyzability.io.case import load_case, parse_case
from dialyzability.results.fit import Fit
from dialyzability.results.quantities import HDI_PROB
from dialyzability.simulate import simulate_case

from .conftest import LEE

SMALL = {"draws": 300, "tune": 300, "chains": 2}


@pytest.fixture
def cli_fit(lee_fit_dir):
    return lee_fit_dir


def test_outputs_follow_the_contract(cli_fit):
    assert {p.name for p in cli_fit.iterdir()} >= {"posterior.nc", "summary.json", "summary.csv"}
    summary = json.loads((cli_fit / "summary.json").read_text())
    assert set(summary) >= {
        "case",
        "drug",
        "hdi_prob",
        "quantities",
        "diagnostics",
        "classical",
        "extrip",
    }
    assert summary["case"] == "lee2020-baclofen" and summary["drug"] == "baclofen"
    assert summary["hdi_prob"] == HDI_PROB == 0.95
    expected = {
        "cl_renal",
        "cl_nonrenal",
        "cl_ectr",
        "ratio",
        "ratio_total",
        "volume",
        "thalf_off",
        "thalf_on",
        "thalf_ratio",
        "removed_6h",
        "removed_renal",
        "removed_ectr",
        "time_below_ectr",
        "time_below_no_ectr",
        "hours_saved",
    }
    assert set(summary["quantities"]) == expected
    for q in summary["quantities"].values():
        assert set(q) >= {"unit", "mean", "median", "sd", "hdi"}
        assert q["hdi"][0] <= q["median"] <= q["hdi"][1]
    assert summary["quantities"]["cl_renal"]["unit"] == "L/h"
    assert 0 <= summary["quantities"]["ratio"]["p_above_1"] <= 1
    assert set(summary["diagnostics"]) == {"r_hat_max", "ess_bulk_min", "divergences", "converged"}
    # the timing ranges are latent and reported
    assert set(summary["timings"]) == {
        "t_urine1_start",
        "t_session1_start",
        "t_session2_start",
        "t_session3_start",
    }
    lo, hi = summary["timings"]["t_urine1_start"]["hdi"]
    assert 2 <= lo < hi <= 14
    csv = (cli_fit / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("name,label,unit") and len(csv) == 1 + 15 + 4


def test_saved_fit_loads_with_the_same_summary(cli_fit):
    loaded = Fit.load(cli_fit)
    stored = json.loads((cli_fit / "summary.json").read_text())
    assert json.loads(json.dumps(loaded.summary().to_json())) == stored
    attrs = loaded.idata.attrs
    assert attrs["hdi_prob"] == HDI_PROB and "dialyzability_version" in attrs
    assert "baclofen.toml" in attrs["priors"] and json.loads(attrs["config"])["seed"] == 3


def test_same_seed_same_summary(cli_fit):
    again = fit(load_case(LEE), seed=3, **SMALL)
    stored = json.loads((cli_fit / "summary.json").read_text())
    assert json.loads(json.dumps(again.summary().to_json())) == stored


def test_altered_posterior_is_refused(cli_fit, tmp_path):
    loaded = Fit.load(cli_fit)
    loaded.idata.attrs["priors"] = "[]"
    loaded.save(tmp_path)
    with pytest.raises(ValueError, match="hash"):
        Fit.load(tmp_path)


def test_founding_case_converges_with_default_settings():
    result = fit(load_case(LEE), seed=20201795)
    d = result.diagnostics()
    assert d.divergences == 0
    assert d.r_hat_max <= 1.01
    assert d.ess_bulk_min >= 400
    assert d.converged


@pytest.mark.parametrize("level_factor", [1.0, 3.0])
def test_same_window_ratio_equals_amount_ratio(level_factor):
    """Urine and effluent over the same window: CL ratio = amount ratio, whatever the levels."""
    raw, _ = simulate_case("same_window", seed=8, noise=0.02)
    for c in raw["concentrations"]:  # levels off by a factor: the ratio must not care
        value, unit = c["value"].split(" ", 1)
        c["value"] = f"{float(value) * level_factor:.6g} {unit}"
    case = parse_case(raw, raw["id"])
    amount_ratio = case.sessions[0].amount / case.urine[0].recovered
    result = fit(case, seed=1, **SMALL)
    median = float(np.median(result.quantities()["ratio"]))
    assert median == pytest.approx(amount_ratio, rel=0.10)
