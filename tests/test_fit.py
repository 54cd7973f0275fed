"""Fits and their summaries: the summary.json/summary.csv contract (DESIGN §7) and the
pooled summary on NUTS-free fits (tests/conftest.py); save/load, seeds and convergence on real
NUTS fits."""

import json

import numpy as np
import pytest

from dialyzability.api import fit
from dialyzability.design import POPULATION_SPREAD, case_events, tau_name
from dialyzability.io.case import load_case, parse_case
from dialyzability.results.fit import Fit
from dialyzability.results.quantities import HDI_PROB, describe, expand
from dialyzability.simulate import DESIGNS, simulate_case

from .conftest import LEE

SMALL = {"draws": 300, "tune": 300, "chains": 2}
LEE_QUANTITIES = {
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


def test_outputs_follow_the_contract(lee_free_dir):
    assert {p.name for p in lee_free_dir.iterdir()} >= {
        "posterior.nc",
        "summary.json",
        "summary.csv",
    }
    summary = json.loads((lee_free_dir / "summary.json").read_text())
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
    assert summary["threshold_mg_per_L"] == pytest.approx(0.4)  # baclofen's upper therapeutic
    assert set(summary["quantities"]) == LEE_QUANTITIES
    for q in summary["quantities"].values():
        assert set(q) >= {"label", "unit", "mean", "median", "sd", "hdi"}
        assert q["hdi"][0] <= q["median"] <= q["hdi"][1] and q["sd"] >= 0
    assert summary["quantities"]["cl_renal"]["unit"] == "L/h"
    assert 0 <= summary["quantities"]["ratio"]["p_above_1"] <= 1
    assert summary["quantities"]["hours_saved"]["hdi"][0] >= 0  # ECTR only adds elimination
    assert set(summary["diagnostics"]) == {"r_hat_max", "ess_bulk_min", "divergences", "converged"}
    # the timing ranges are latent and reported, inside their ranges
    assert set(summary["timings"]) == {
        "t_urine1_start",
        "t_session1_start",
        "t_session2_start",
        "t_session3_start",
    }
    lo, hi = summary["timings"]["t_urine1_start"]["hdi"]
    assert 2 <= lo < hi <= 14
    # classical estimates: named, each computable or with its reason
    assert summary["classical"] and all(
        e["computable"] or e["reason"] for e in summary["classical"].values()
    )
    # EXTRIP: four criteria of HD, each four probabilities summing to 1
    assert set(summary["extrip"]) == {"p_thalf_off_above_4h", "applies", "modalities"}
    for per in summary["extrip"]["modalities"]["HD"].values():
        assert sum(per[g] for g in "DMSN") == pytest.approx(1.0)
    # summary.csv: one row per quantity and timing, the numbers of summary.json
    csv = (lee_free_dir / "summary.csv").read_text().splitlines()
    assert (
        csv[0].startswith("name,label,unit,interval,mean,median,sd,hdi_low,hdi_high,")
        and len(csv) == 1 + 15 + 4
    )
    rows = {**summary["quantities"], **summary["timings"]}
    import csv as csv_module

    for line in csv_module.DictReader(csv):
        q = rows.pop(line["name"])
        assert line["unit"] == q["unit"] and line["label"] == q["label"]
        values = [line[k] for k in ("mean", "median", "sd", "hdi_low", "hdi_high")]
        assert [float(x) for x in values] == pytest.approx(
            [q["mean"], q["median"], q["sd"], *q["hdi"]], rel=1e-5, abs=1e-300
        )
    assert rows == {}


@pytest.mark.parametrize("design", DESIGNS)
def test_summary_of_each_design(free_fit, design):
    result = free_fit(design)
    summary = result.summary()
    post = result.posterior
    names = [name for name, _, _ in expand(result.modalities, set(post.data_vars))]
    assert list(summary.quantities) == names
    draws = result.quantities()
    for name, q in summary.quantities.items():
        expected = describe(draws[name], 0.95, q["scale"])  # the interval policy of the row
        assert {k: q[k] for k in ("mean", "median", "sd", "hdi")} == {
            k: expected[k] for k in ("mean", "median", "sd", "hdi")
        }
        assert q["hdi"][0] <= q["median"] <= q["hdi"][1]
    ratio = (post["cl_ectr"].sel(modality="HD") / post["cl_renal"]).values
    assert summary.quantities["ratio"]["p_above_1"] == pytest.approx((ratio > 1).mean())
    # a timing given as a range is latent and reported; one that is known is not
    ranges = case_events(result.case)[0].latent()
    assert set(summary.timings) == set(ranges)
    for name, (lo, hi) in ranges.items():
        t = summary.timings[name]
        assert lo <= t["hdi"][0] <= t["hdi"][1] <= hi and t["unit"] == "h"
        assert f"(range {lo:g}-{hi:g} h)" in t["label"]
    # the text table lists every quantity and timing, the diagnostics last
    table = summary.table()
    for name in [*summary.quantities, *summary.timings]:
        assert f"\n  {name} " in table
    lines = table.splitlines()
    last = [line for line in lines if line.startswith("Diagnostics: ")]
    assert last == [f"Diagnostics: {summary.diagnostics.sentence()}"]
    # a fit that fails the gate says so first (2 x 250 prior draws may)
    assert lines[0].startswith("NOT CONVERGED") != summary.diagnostics.converged
    assert summary.case == result.case.id and len(summary.to_csv().splitlines()) == 1 + len(
        summary.quantities
    ) + len(summary.timings)


def test_summary_intervals_follow_the_hdi_probability(free_fit):
    result = free_fit("lee")
    wide, narrow = result.summary(), result.summary(0.5)
    assert narrow.hdi_prob == 0.5 and narrow.to_json()["hdi_prob"] == 0.5
    for name, q in wide.quantities.items():
        n = narrow.quantities[name]
        assert n["median"] == q["median"]
        assert q["hdi"][0] <= n["hdi"][0] <= n["hdi"][1] <= q["hdi"][1]
    assert "50% interval" in narrow.table()


def test_divergent_draws_fail_the_convergence_gate(free_fit):
    d = free_fit("lee_divergent").summary().to_json()["diagnostics"]
    assert d["divergences"] == 3 and d["converged"] is False
    ok = free_fit("lee").summary().to_json()["diagnostics"]
    assert ok["divergences"] == 0


def test_case_without_session_reports_no_ectr_quantity(free_fit):
    summary = free_fit("no_session").summary()
    assert set(summary.quantities) == {
        "cl_renal",
        "cl_nonrenal",
        "volume",
        "thalf_off",
        "removed_renal",
    }
    assert summary.extrip["modalities"] == {}


def test_two_modalities_are_named_per_modality(free_fit):
    summary = free_fit("two_modalities").summary()
    for base in ("cl_ectr", "ratio", "ratio_total", "thalf_on", "thalf_ratio", "removed_6h"):
        assert base not in summary.quantities
        assert {f"{base}_HD", f"{base}_CVVH"} <= set(summary.quantities)
    assert "p_above_1" in summary.quantities["ratio_CVVH"]
    assert set(summary.extrip["modalities"]) == {"HD", "CVVH"}


def test_pooled_summary_contract(free_fit, pooled_free_dir):
    pooled = free_fit("pooled")
    summary = json.loads((pooled_free_dir / "summary.json").read_text())
    assert set(summary) >= {"drug", "hdi_prob", "n_cases", "population", "cases", "diagnostics"}
    assert summary["drug"] == "baclofen" and summary["hdi_prob"] == HDI_PROB
    assert summary["n_cases"] == len(pooled.cases) and list(summary["cases"]) == pooled.batch.ids
    expected = {tau_name(p) for p in POPULATION_SPREAD}
    for m in pooled.batch.modalities:
        for k in pooled.batch.kidney_classes:
            expected |= {f"ratio_{m}_{k}", f"ratio_new_{m}_{k}"}
    assert set(summary["population"]) == expected
    for name, q in summary["population"].items():
        assert q["hdi"][0] <= q["median"] <= q["hdi"][1]
        assert ("p_above_1" in q) == name.startswith("ratio")
    assert all(q["median"] > 0 for n, q in summary["population"].items() if n.startswith("tau_"))
    for c in pooled.cases:
        row = summary["cases"][c.id]
        assert row["kidney_function"] == c.kidney_function and row["modalities"] == c.modalities
        assert ("unpooled_ratio" in row) == bool(c.modalities)
    # a case of the pooled summary reads as that case's single-case summary, shrunk (three
    # cases: two modalities, no session, anuric; each summary costs its toxicity curves)
    for cid in ("lee2020-two-modalities", "lee2020-no-session", "sim-anuric-7"):
        single = pooled.view(cid).summary().quantities
        assert json.loads(json.dumps(single)) == summary["cases"][cid]["quantities"]


def test_a_case_of_a_pooled_fit_reads_like_a_single_fit(free_fit):
    pooled = free_fit("pooled")
    view = pooled.view("lee2020-two-modalities")
    post = view.posterior
    assert "case" not in post.dims
    assert list(post["modality"].values) == ["HD", "CVVH"] == view.modalities
    assert list(post["session"].values) == ["session1", "session2", "session3"]
    assert list(post["latent_time"].values) == list(case_events(view.case)[0].latent())
    assert list(view.predictive["concentration"]["level"].values) == ["level1"]
    # its draws are the pooled fit's draws at that case
    i = pooled.batch.ids.index("lee2020-two-modalities")
    np.testing.assert_array_equal(
        post["cl_renal"].values, pooled.idata.posterior["cl_renal"].isel(case=i).values
    )
    with pytest.raises(AttributeError, match="view"):
        _ = pooled.case


def test_saved_fit_loads_with_the_same_summary(lee_fit_dir):
    loaded = Fit.load(lee_fit_dir)
    stored = json.loads((lee_fit_dir / "summary.json").read_text())
    assert json.loads(json.dumps(loaded.summary().to_json())) == stored
    attrs = loaded.idata.attrs
    assert attrs["hdi_prob"] == HDI_PROB and "dialyzability_version" in attrs
    assert "baclofen.toml" in attrs["priors"] and json.loads(attrs["config"])["seed"] == 3


def test_same_seed_same_summary(lee_fit_dir):
    again = fit(load_case(LEE), seed=3, **SMALL)
    stored = json.loads((lee_fit_dir / "summary.json").read_text())
    assert json.loads(json.dumps(again.summary().to_json())) == stored


def test_altered_posterior_is_refused(lee_fit_dir, tmp_path):
    loaded = Fit.load(lee_fit_dir)
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
