"""Pooled model: tidy CSV input, a small pooled fit, the pool command; slow: population recovery."""

import json

import numpy as np
import pytest

from dialyzability.api import fit_cases, pool
from dialyzability.cli import EXIT_NOT_CONVERGED, main
from dialyzability.io.case import CaseError, load_case, parse_case
from dialyzability.io.tidy import load_tidy_csv
from dialyzability.model.build import PoolError, build_model
from dialyzability.results.population import case_ratio, population_draws
from dialyzability.simulate import simulate_population

from .conftest import CASES, LEE, ROOT


def test_tidy_csv_gives_the_same_case_as_the_toml():
    [from_csv] = load_tidy_csv(ROOT / "data" / "example-tidy.csv")
    a, b = from_csv.to_json(), load_case(LEE).to_json()
    del a["id"], b["id"], b["urine"][0]["volume"]  # the CSV example omits the urine volume
    assert a == b


def test_tidy_csv_errors_name_row_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("case,drug,kind,start,value,unit\nx,baclofen,level,soon,3,mg/L\n")
    with pytest.raises(CaseError, match=r"row\[2\]\.start") as info:
        load_tidy_csv(path)
    assert info.value.field == "start"
    path.write_text("case,drug,kind,strat\nx,baclofen,level,1\n")
    with pytest.raises(CaseError, match="unknown column"):
        load_tidy_csv(path)


def test_pooling_several_drugs_is_refused():
    cases = [load_case(p) for p in sorted(CASES.glob("*.toml"))]
    if len({c.drug for c in cases}) > 1:
        with pytest.raises(PoolError, match="one drug"):
            build_model(cases, population="hierarchical")
    with pytest.raises(PoolError):
        build_model([], population="hierarchical")


def test_pooled_model_has_finite_gradient_for_mixed_designs():
    raws, _, _ = simulate_population(8, seed=4)
    cases = [parse_case(r, r["id"]) for r in raws]
    model = build_model(cases, population="hierarchical").model
    point = model.initial_point()
    assert np.isfinite(model.compile_logp(mode="FAST_COMPILE")(point))
    assert np.all(np.isfinite(model.compile_dlogp(mode="FAST_COMPILE")(point)))


def test_pool_command_on_published_cases(tmp_path):
    out = tmp_path / "pool"
    args = [
        "pool",
        str(CASES),
        "--drug",
        "baclofen",
        "--out",
        str(out),
        "--seed",
        "2",
        "--quiet",
        "--no-unpooled",
        "--draws",
        "200",
        "--tune",
        "200",
        "--chains",
        "2",
    ]
    # so short a run may fail the convergence gate: the outputs are written all the same
    assert main(args) in (0, EXIT_NOT_CONVERGED)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"population", "cases", "diagnostics", "drug", "hdi_prob"}
    n_baclofen = sum(load_case(p).drug == "baclofen" for p in CASES.glob("*.toml"))
    assert summary["n_cases"] == len(summary["cases"]) == n_baclofen
    for case in summary["cases"].values():
        assert {"cl_renal", "volume"} <= set(case["quantities"])
    assert "ratio_HD_normal" in summary["population"]
    assert (out / "forest.png").stat().st_size > 10_000
    report = (out / "report.md").read_text()
    q = summary["population"]["ratio_HD_normal"]
    from dialyzability.outputs.report import interval, median

    assert f"at {median(q)} (95 % interval {interval(q)})" in report


def test_pool_without_drug_choice_on_mixed_folder_is_an_error(tmp_path, capsys):
    drugs = {load_case(p).drug for p in CASES.glob("*.toml")}
    if len(drugs) < 2:
        pytest.skip("the shipped cases are of one drug")
    assert main(["pool", str(CASES), "--out", str(tmp_path)]) == 1
    assert "one drug" in capsys.readouterr().err


@pytest.mark.slow
def test_population_ratio_is_recovered_and_pooling_narrows():
    raws, _, population = simulate_population(30, seed=11)
    cases = [parse_case(r, r["id"]) for r in raws]
    pooled = pool(cases, seed=11)
    assert pooled.diagnostics().divergences == 0
    draws = np.log(population_draws(pooled)["ratio_HD_normal"]).ravel()
    lo, hi = np.percentile(draws, [2.5, 97.5])
    assert lo <= population.log_ratio <= hi
    unpooled = fit_cases(cases, "fixed", seed=11)  # the same cases side by side, unpooled
    widths_pooled, widths_single = [], []
    for i in range(len(cases)):
        q = np.log(case_ratio(pooled.view(i)))
        widths_pooled.append(np.subtract(*np.percentile(q, [97.5, 2.5])))
        single = np.log(case_ratio(unpooled.view(i)))
        widths_single.append(np.subtract(*np.percentile(single, [97.5, 2.5])))
    assert np.mean(widths_pooled) < np.mean(widths_single)
