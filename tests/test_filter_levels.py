"""Pre-/post-filter levels: a level's ``site`` and ``session`` (issue 13).

A pre-filter level is the systemic level; a post-filter level is predicted as
C_p(t) · (1 − CL_ECTR/Q), Q the session's plasma flow Q_B (1 − Hct). The case errors, the
compiled model's prediction, the classical A-V clearance, the curves that leave post-filter
levels out, the tidy sheet and the NONMEM export."""

import csv

import numpy as np
import pytest

from dialyzability.design import BatchDesign, case_events, make_batch, structure, unused_fields
from dialyzability.io.case import CaseError, load_case, parse_case
from dialyzability.io.drugs import load_drug
from dialyzability.results.nca import classical_estimates, measured_levels
from dialyzability.simulate import BLOOD_FLOW, HAEMATOCRIT, simulate_case

from .conftest import case_of


def _raw(**patient):
    """100 mg iv at 0; a level at 1 h; HD 2-6 h at 250 mL/min (15 L/h), an A-V pair at 3 h
    (1.5 and 1.0 mg/L); a level at 8 h."""
    return {
        "id": "av",
        "drug": "baclofen",
        "patient": {"weight": "70 kg", **patient},
        "doses": [{"time_h": 0, "amount": "100 mg", "route": "iv"}],
        "concentrations": [
            {"time_h": 1, "value": "2 mg/L"},
            {"time_h": 3, "value": "1.5 mg/L", "site": "pre-filter", "session": 1},
            {"time_h": 3, "value": "1.0 mg/L", "site": "post-filter", "session": 1},
            {"time_h": 8, "value": "0.5 mg/L"},
        ],
        "sessions": [
            {"modality": "HD", "start_h": 2, "end_h": 6, "blood_flow": "250 mL/min"},
            {"modality": "HD", "start_h": 20, "end_h": 24},
        ],
    }


def test_every_problem_of_the_sites_is_reported_at_once_naming_the_field():
    raw = _raw()
    raw["concentrations"] += [
        {"time_h": 4, "value": "1 mg/L", "site": "post-filter"},  # 5: no session
        {"time_h": 4.5, "value": "1 mg/L", "site": "pre-filter", "session": 3},  # 6: none such
        {"time_h": 21, "value": "1 mg/L", "site": "post-filter", "session": 2},  # 7: no Q_B
        {"time_h": 9, "value": "1 mg/L", "site": "post-filter", "session": 1},  # 8: outside
        {"time_h": 5, "value": "1 mg/L", "site": "post-filter", "session": 1, "matrix": "blood"},
        {"time_h": 5.5, "value": "1 mg/L", "session": 1},  # 10: a session without a site
    ]
    with pytest.raises(CaseError) as err:
        parse_case(raw, "av.toml")
    got = {(p.file, p.block, p.index, p.field): p.message for p in err.value.problems}
    where = {k[1:] for k in got}
    assert where == {
        ("concentrations", 5, "session"),
        ("concentrations", 6, "session"),
        ("concentrations", 7, "site"),
        ("concentrations", 8, "time_h"),
        ("concentrations", 9, "matrix"),
        ("concentrations", 10, "site"),
    }
    assert all(k[0] == "av.toml" for k in got)
    text = str(err.value)
    assert "a post-filter level needs its session" in text
    assert "session 3 does not exist (the case has 2 in [[sessions]])" in text
    assert "needs the blood flow of its session" in text and "[[sessions]] #2" in text
    assert "outside its session #1 (2 h to 6 h)" in text
    assert "must be a plasma or serum level" in text
    assert "session is given without a site" in text
    # each names its block as a case file writes it
    labels = {p.labels() for p in err.value.problems}
    assert ("[[concentrations]] #7", "site") in labels


def test_a_post_filter_level_may_share_its_time_with_the_pre_filter_one_only():
    case = case_of(_raw())
    assert [c.post_filter for c in case.concentrations] == [False, False, True, False]
    raw = _raw()
    raw["concentrations"].append(
        {"time_h": 3, "value": "0.9 mg/L", "site": "post-filter", "session": 1}
    )
    with pytest.raises(CaseError) as err:
        parse_case(raw, "av.toml")
    assert err.value.field == "time_h" and "two plasma post-filter levels" in err.value.reason
    raw = _raw()
    raw["concentrations"][1].pop("site"), raw["concentrations"][1].pop("session")
    raw["concentrations"].append({"time_h": 3, "value": "1.4 mg/L", "site": "pre-filter",
                                  "session": 1})  # fmt: skip
    with pytest.raises(CaseError, match="two plasma levels at the same time"):
        parse_case(raw, "av.toml")


def test_model_predicts_the_post_filter_level_through_the_plasma_flow():
    """At a random point of the compiled model: the post-filter level is the systemic level at
    its time times 1 − CL_ECTR/Q, Q = 15 L/h × (1 − 0.35) = 9.75 L/h; the other levels are the
    array form's concentrations, and its pre-filter partner is the systemic level."""
    from dialyzability.model.build import build_model
    from dialyzability.pk.closed_form import solve_batch
    from dialyzability.pk.structure import Structure

    case = case_of(_raw(haematocrit=0.35))
    model = build_model([case], structure=Structure()).model
    names = ["volume", "cl_renal", "cl_nonrenal", "ka", "bioavailability", "a0"]
    outputs = [*names, "pred_level", "cl_ectr"]
    graphs = model.replace_rvs_by_values([model[n] for n in outputs])
    f = model.compile_fn(graphs, inputs=model.value_vars, on_unused_input="ignore")
    rng = np.random.default_rng(13)
    point = {k: rng.normal(0, 0.7, np.shape(v)) for k, v in model.initial_point().items()}
    got = dict(zip(outputs, f(point), strict=True))
    events, design, _ = case_events(case)
    times = np.array([events.resolve({})], dtype=float)
    p = [got[n] for n in names]
    out = solve_batch(times, BatchDesign.stack([design]), p[0], p[1] + p[2], got["cl_ectr"], *p[3:])
    c_p = out["conc"][0]
    cl = float(got["cl_ectr"][0, 0])
    assert 0 < cl < 9.75
    want = c_p * np.array([1, 1, 1 - cl / 9.75, 1])
    np.testing.assert_allclose(got["pred_level"], want, rtol=1e-10)
    assert got["pred_level"][1] == pytest.approx(c_p[2])  # the pair shares its C_p(t)


def test_without_haematocrit_the_plasma_flow_is_the_blood_flow_as_for_the_bound():
    batch = make_batch([case_of(_raw())], load_drug("baclofen"))
    assert batch.level_post_filter.tolist() == [False, False, True, False]
    np.testing.assert_allclose(batch.data["filter_plasma_flow"], [15.0])
    assert batch.ectr_bound()[1][0, 0] == pytest.approx(15.0)
    batch = make_batch([case_of(_raw(haematocrit=0.35))], load_drug("baclofen"))
    np.testing.assert_allclose(batch.data["filter_plasma_flow"], [9.75])
    # a case without post-filter levels has no such data (its compiled model is unchanged)
    plain = simulate_case("rich", 1)[0]
    assert "filter_plasma_flow" not in {
        k for k, v in make_batch([case_of(plain)], load_drug("baclofen")).data.items() if v.size
    }


def test_structure_keeps_the_session_of_a_level():
    raw = _raw()
    raw["sessions"][1]["modality"] = "CVVH"
    raw["sessions"][1]["blood_flow"] = "150 mL/min"
    other = _raw()
    other["sessions"][1]["modality"] = "CVVH"
    other["sessions"][1]["blood_flow"] = "150 mL/min"
    other["concentrations"][1]["time_h"] = other["concentrations"][2]["time_h"] = 21
    other["concentrations"][1]["session"] = other["concentrations"][2]["session"] = 2
    # the same numbers blanked, but the pair is cleared by another modality
    assert structure(case_of(raw)) != structure(case_of(other))
    batch = make_batch([case_of(other)], load_drug("baclofen"))
    assert batch.modalities[batch.levels.modality[2]] == "CVVH"


def test_site_and_session_are_not_listed_as_unused():
    assert unused_fields(case_of(_raw(haematocrit=0.35))) == []


def test_classical_av_clearance_of_a_pair_by_hand():
    # Q = 15 L/h × (1 − 0.35) = 9.75 L/h; E = (1.5 − 1.0)/1.5 = 1/3; CL = 9.75/3 = 3.25 L/h
    est = {e.name: e for e in classical_estimates(case_of(_raw(haematocrit=0.35)))}
    pair = est["cl_ectr_session1_av_level3"]
    assert pair.value == pytest.approx(3.25) and pair.matrix == "plasma"
    assert pair.window == (3.0, 3.0) and "A-V" in pair.method
    # without the haematocrit: 15 L/h × 1/3 = 5 L/h, and the method says so
    pair = {e.name: e for e in classical_estimates(case_of(_raw()))}["cl_ectr_session1_av_level3"]
    assert pair.value == pytest.approx(5.0) and "haematocrit not reported" in pair.method


def test_a_pair_without_its_partner_or_without_extraction_is_not_computable():
    raw = _raw()
    raw["concentrations"][1]["time_h"] = 2.5  # the pre-filter level drawn at another time
    pair = {e.name: e for e in classical_estimates(case_of(raw))}["cl_ectr_session1_av_level3"]
    assert pair.value is None
    assert pair.reason == "not computable: no pre-filter level of session #1 at 3 h"
    raw = _raw()
    raw["concentrations"][2]["value"] = "1.6 mg/L"  # not below the pre-filter level
    pair = {e.name: e for e in classical_estimates(case_of(raw))}["cl_ectr_session1_av_level3"]
    assert pair.value is None and "no extraction measurable" in pair.reason


def test_post_filter_levels_stay_out_of_the_curve_and_the_auc():
    raw = _raw()
    raw["sessions"][0]["recovered"] = "20 mg"
    case = case_of(raw)
    # the curve: 1 h, 3 h (the pre-filter level is the systemic level), 8 h; not the 1.0 mg/L
    assert measured_levels(case) == [(1.0, 2.0), (3.0, 1.5), (8.0, 0.5)]
    session = {e.name: e for e in classical_estimates(case)}["cl_ectr_session1"]
    # log-down from (1, 2) to (3, 1.5) over 2-3 h, and from (3, 1.5) to (8, 0.5) over 3-6 h
    lam1, lam2 = np.log(2 / 1.5) / 2, np.log(1.5 / 0.5) / 5
    c2, c6 = 2 * np.exp(-lam1), 1.5 * np.exp(-3 * lam2)
    auc = (c2 - 1.5) / lam1 + (1.5 - c6) / lam2
    assert session.auc == pytest.approx(auc)
    # nor is a post-filter level the plasma level of an effluent sample at its time
    raw["sessions"][0] |= {
        "effluent_flow": "30 L/h",
        "effluent_samples": [{"time_h": 3, "concentration": "0.3 mg/L"}],
    }
    raw["concentrations"][1] |= {"value": "1.5 mg/L"}
    sample = {e.name: e for e in classical_estimates(case_of(raw))}["cl_ectr_session1_sample1"]
    assert sample.value == pytest.approx(30 * 0.3 / 1.5)  # the pre-filter level, not 1.0


def test_tidy_sheet_round_trip(tmp_path):
    from dialyzability.io.case import load_cases

    case = case_of(_raw(haematocrit=0.35))
    rows = [
        {"kind": "patient", "field": "weight", "value": "70", "unit": "kg"},
        {"kind": "patient", "field": "haematocrit", "value": "0.35"},
        {"kind": "dose", "start": "0", "value": "100", "unit": "mg", "route": "iv"},
        {"kind": "level", "start": "1", "value": "2", "unit": "mg/L"},
        {"kind": "level", "start": "3", "value": "1.5", "unit": "mg/L", "site": "pre-filter",
         "session": "1"},
        {"kind": "level", "start": "3", "value": "1.0", "unit": "mg/L", "site": "post-filter",
         "session": "1"},
        {"kind": "level", "start": "8", "value": "0.5", "unit": "mg/L"},
        {"kind": "session", "start": "2", "end": "6", "modality": "HD",
         "blood_flow": "250 mL/min"},
        {"kind": "session", "start": "20", "end": "24", "modality": "HD"},
    ]  # fmt: skip
    out = tmp_path / "av.csv"
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["case", "drug", *rows[0], "start", "end",
                                                "route", "site", "session", "modality",
                                                "blood_flow"], restval="")  # fmt: skip
        writer.writeheader()
        for row in rows:
            writer.writerow({"case": "av", "drug": "baclofen", **row})
    (back,) = load_cases([out])
    assert back.to_json() == case.to_json()
    # a bad session number names its row and column
    rows[5]["session"] = "first"
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list({"case": 0, "drug": 0} | {
            k: 0 for r in rows for k in r}), restval="")  # fmt: skip
        writer.writeheader()
        for row in rows:
            writer.writerow({"case": "av", "drug": "baclofen", **row})
    with pytest.raises(CaseError) as err:
        load_cases([out])
    assert {(p.block, p.index, p.field) for p in err.value.problems} >= {("row", 7, "session")}


def test_tidy_sheet_names_the_row_of_a_site_problem(tmp_path):
    from dialyzability.io.tidy import parse_rows

    header = ["case", "drug", "kind", "start", "end", "value", "unit", "site", "session",
              "modality"]  # fmt: skip
    rows = [
        header,
        ["x", "baclofen", "level", "3", "", "1", "mg/L", "post-filter", "1", ""],
        ["x", "baclofen", "session", "2", "6", "", "", "", "", "HD"],
    ]
    with pytest.raises(CaseError) as err:
        parse_rows(rows, "x.csv")
    (problem,) = err.value.problems
    assert (problem.block, problem.index, problem.field) == ("row", 2, "site")
    assert "needs the blood flow of its session" in problem.message


def test_nonmem_export_keeps_site_session_and_haematocrit(tmp_path):
    from dialyzability.io.nonmem import POST_FILTER_LEVEL, read_nonmem, write_nonmem

    raw, _ = simulate_case("filter_pairs", 3)
    case = case_of(raw)
    path = write_nonmem(case, tmp_path / "pairs.csv")[0]
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    levels = [r for r in rows if r["CMT"] == "2" and r["EVID"] == "0"]
    post = [r for r in levels if r["SITE"] == "2"]
    assert len(post) == 3 and all(r["DVID"] == str(POST_FILTER_LEVEL) for r in post)
    assert all(r["SESSION"] == "1" for r in levels if r["SITE"] != "0")
    assert {r["HCT"] for r in rows} == {f"{HAEMATOCRIT:g}"}
    (back,) = read_nonmem(path)

    def key(c):
        return (c["time_h"], c.get("site", ""))

    a, b = case.to_json(), back.to_json()
    assert sorted(a["concentrations"], key=key) == sorted(b["concentrations"], key=key)
    assert a["patient"] == b["patient"]


def test_filter_pairs_design_is_a_valid_case_with_the_bounded_truth():
    raw, truth = simulate_case("filter_pairs", 5)
    case = load_case_from(raw)
    assert not case.urine and case.sessions[0].amount is None
    assert case.sessions[0].blood_flow == pytest.approx(BLOOD_FLOW)
    sites = [c.site for c in case.concentrations]
    assert sites.count("pre-filter") == sites.count("post-filter") == 3 and sites.count(None) == 3
    q = BLOOD_FLOW * (1 - HAEMATOCRIT)
    assert 0 < truth.cl_ectr["HD"] < q
    est = [e for e in classical_estimates(case) if "_av_" in e.name]
    assert len(est) == 3 and all(e.computable for e in est)
    # noise 0.1 on each level of a pair: the A-V clearance is near the truth
    median = float(np.median([e.value for e in est]))
    assert abs(np.log(median / truth.cl_ectr["HD"])) < 0.5


def load_case_from(raw):
    return parse_case(raw, raw["id"])


def test_check_prints_the_site_and_the_pair(tmp_path):
    from dialyzability.cli import describe_case

    shown = describe_case(case_of(_raw(haematocrit=0.35)))
    assert "1 mg/L plasma, post-filter (HD session 1)" in shown
    assert "A-V pair at post-filter level #3: 3.25 L/h" in shown


def test_loading_a_toml_case_with_sites(tmp_path, write_case):
    case = load_case(write_case(_raw(haematocrit=0.35)))
    assert case.concentrations[2].site == "post-filter" and case.concentrations[2].session == 1


def test_figure_report_and_saved_posterior_treat_post_filter_levels_as_levels():
    from dialyzability.outputs.plots import levels_data, plot_levels
    from dialyzability.outputs.report import build_report

    from .conftest import nuts_free_fit

    case = case_of(simulate_case("filter_pairs", 2)[0])
    fit = nuts_free_fit([case], draws=250)
    idata = fit.idata
    # each post-filter level is an observed level with its log-likelihood and predictive draw
    assert idata.observed_data["concentration"].sizes["level"] == 9
    for group in ("log_likelihood", "posterior_predictive"):
        assert np.isfinite(idata[group]["concentration"].values).all()
    pred = idata.posterior["pred_level"].values
    cl = idata.posterior["cl_ectr"].values[..., 0, 0]
    q = BLOOD_FLOW * (1 - HAEMATOCRIT)
    np.testing.assert_allclose(pred[..., 4], pred[..., 3] * (1 - cl / q), rtol=1e-10)
    d = levels_data(fit, points=20, max_draws=50)
    post = [o for o in d["observed"] if o["site"] == "post-filter"]
    assert len(post) == 3
    assert all(o["predicted"]["low"] < o["predicted"]["median"] < o["predicted"]["high"]
               for o in post)  # fmt: skip
    assert not any("predicted" in o for o in d["observed"] if o["site"] != "post-filter")
    fig = plot_levels(fit, d)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert any(x.startswith("post-filter level") for x in labels)
    text = build_report(fit, fit.summary(), []).markdown()
    assert "post-filter (venous line) levels are modelled as C_p × (1 − CL_ECTR/Q)" in text
    assert "A-V pair at post-filter level #5" in text
