import json
import re
import subprocess
import sys

import pytest

from dialyzability.cli import EXIT_NOT_CONVERGED, main

from .conftest import LEE


def test_check_founding_case(capsys):
    assert main(["check", str(LEE)]) == 0
    out = capsys.readouterr().out
    assert "14 h: 0.882 mg/L serum" in out
    assert "2-14 h (range) to 26-38 h (range): 42 mg" in out  # urine window as a range
    assert len(re.findall(r"^    #\d HD ", out, flags=re.M)) == 3
    assert out.count("a single level cannot bracket the window") == 2
    assert "Renal clearance, urine #1: not computable" in out
    assert "HD clearance, session #1: not computable" in out


def test_check_json(capsys):
    assert main(["check", "--json", str(LEE)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["case"]["concentrations"][0]["value"] == pytest.approx(0.882)
    assert data["case"]["urine"][0]["start_h"] == [2, 14]
    assert all(not e["computable"] for e in data["classical"])


def test_bad_file_exit_1_without_traceback(tmp_path, lee_raw, write_case, capsys):
    lee_raw["sessions"][0]["modality"] = "dialysis"
    path = write_case(lee_raw)
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{path}: sessions[1].modality: " in err


def test_console_script_help_runs():
    result = subprocess.run(
        [sys.executable, "-m", "dialyzability.cli", "check", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "classical" in result.stdout


# --- output commands on NUTS-free fits (tests/conftest.py) -------------------------------


def _copy_fit(directory, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(directory / "posterior.nc", copy / "posterior.nc")
    return copy


def test_report_command_honours_hdi_and_threshold(lee_free_dir, tmp_path, capsys):
    copy = _copy_fit(lee_free_dir, tmp_path)
    assert main(["report", str(copy), "--hdi", "0.5", "--threshold", "0.2 mg/L"]) == 0
    out = capsys.readouterr().out
    assert "50% interval" in out and f"Wrote to {copy}" in out
    default = json.loads((lee_free_dir / "summary.json").read_text())
    summary = json.loads((copy / "summary.json").read_text())
    assert summary["hdi_prob"] == 0.5 and summary["threshold_mg_per_L"] == 0.2
    for name, q in summary["quantities"].items():
        wide = default["quantities"][name]
        if name.startswith(("time_below", "hours_saved")):
            continue  # depend on the threshold
        assert q["median"] == wide["median"]
        assert wide["hdi"][0] <= q["hdi"][0] <= q["hdi"][1] <= wide["hdi"][1]
    # draw by draw the level falls below 0.2 mg/L no sooner than below 0.4 mg/L
    for name in ("time_below_ectr", "time_below_no_ectr"):
        assert summary["quantities"][name]["median"] >= default["quantities"][name]["median"]
    assert "below 0.2 mg/L" in (copy / "report.md").read_text()


def test_threshold_in_molar_units():
    from dialyzability.cli import _threshold
    from dialyzability.io.case import load_case

    case = load_case(LEE)
    assert _threshold("1 umol/L", case) == pytest.approx(0.21366)  # baclofen 213.66 g/mol
    assert _threshold("400 ng/mL", case) == pytest.approx(0.4)
    assert _threshold(None, case) is None


def test_report_bad_threshold_is_a_clear_error(lee_free_dir, tmp_path, capsys):
    copy = _copy_fit(lee_free_dir, tmp_path)
    assert main(["report", str(copy), "--threshold", "0.2 parsecs"]) == 1
    err = capsys.readouterr().err
    assert "--threshold" in err and "Traceback" not in err
    assert not (copy / "summary.json").exists()


def test_report_of_unreadable_posterior_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "posterior.nc").write_bytes(b"not a netCDF file")
    assert main(["report", str(tmp_path)]) == 1
    assert "cannot be read as a fit" in capsys.readouterr().err


def test_pool_outputs_are_written_whole(pooled_free_dir, free_fit):
    from dialyzability.results.fit import Fit

    names = {p.name for p in pooled_free_dir.iterdir()}
    expected = {"posterior.nc", "summary.json", "draws.csv", "forest.png", "report.md"}
    assert names == {*expected, "report.html"}
    assert (pooled_free_dir / "forest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loaded = Fit.load(pooled_free_dir)
    assert loaded.population == "hierarchical"
    assert [c.id for c in loaded.cases] == free_fit("pooled").batch.ids
    summary = json.loads((pooled_free_dir / "summary.json").read_text())
    assert list(summary["cases"]) == [c.id for c in loaded.cases]


def test_report_command_rebuilds_a_pooled_fit(pooled_free_dir, tmp_path):
    copy = _copy_fit(pooled_free_dir, tmp_path)
    assert main(["report", str(copy)]) in (0, EXIT_NOT_CONVERGED)
    assert {p.name for p in copy.iterdir()} >= {"summary.json", "forest.png", "report.md"}
    stored = json.loads((pooled_free_dir / "summary.json").read_text())
    for row in stored["cases"].values():  # the single-case fits are not saved with the pool
        row.pop("unpooled_ratio", None)
    assert json.loads((copy / "summary.json").read_text()) == stored


# --- user drug models (--models-dir, $DIALYZABILITY_MODELS) and `drugs` ------------------------


def _fake_run(cases, population, config, drug=None, progressbar=False):
    """``inference.run.run`` without NUTS: the model's prior draws relabelled as a posterior
    (as :func:`tests.conftest.nuts_free_fit`), so a command's whole path runs in seconds."""
    import arviz as az
    import numpy as np
    import xarray as xr

    from dialyzability.design import make_batch
    from dialyzability.inference.run import complete, prior_draws
    from dialyzability.io.drugs import load_drug
    from dialyzability.pk.structure import Structure

    from .conftest import _relabel

    batch = make_batch(list(cases), drug or load_drug(cases[0].drug))
    chosen = config.get("structure") or {}
    structure = Structure.of(batch.drug, chosen.get("disposition"), chosen.get("absorption"))
    config["structure"] = structure.record()
    prior = prior_draws(batch, population, config["seed"], structure=structure)
    posterior = _relabel(prior, 2, 200)
    stats = xr.Dataset(
        {"diverging": (("chain", "draw"), np.zeros((2, 200), dtype=bool))},
        coords={"chain": posterior.chain, "draw": posterior.draw},
    )
    sampled = az.InferenceData(posterior=posterior, sample_stats=stats)
    return complete(sampled, batch, prior, config["seed"]), batch


EXTRIP = {
    "dialyzability": "moderately dialyzable",
    "evidence": "D",
    "recommendation": "suggested (2D)",
    "source": "Made-up grading for a test, 2026",
}


def _models_folder(folder):
    """A user folder: ``baclofen.toml`` overriding the shipped one, ``mydrug.toml`` a new drug
    (baclofen's model) with a published EXTRIP grade; no default.toml."""
    import tomllib

    import tomli_w

    from dialyzability.io.drugs import load_drug

    with open(load_drug("baclofen").path, "rb") as fh:
        raw = tomllib.load(fh)
    folder.mkdir()
    (folder / "baclofen.toml").write_bytes(
        tomli_w.dumps({**raw, "description": "user baclofen"}).encode()
    )
    mine = {**raw, "name": "mydrug", "description": "a user drug", "extrip": EXTRIP}
    (folder / "mydrug.toml").write_bytes(tomli_w.dumps(mine).encode())
    return folder


def test_models_dir_is_used_by_check_fit_pool_and_report(
    tmp_path, lee_raw, write_case, monkeypatch, capsys
):
    import shutil

    from dialyzability.api import recorded_models_dir
    from dialyzability.results.fit import Fit

    folder = _models_folder(tmp_path / "models")
    mine = write_case({**lee_raw, "drug": "mydrug", "id": "mine-1"}, "mine-1.toml")
    other = write_case({**lee_raw, "drug": "mydrug", "id": "mine-2"}, "mine-2.toml")
    lee = write_case(lee_raw, "lee.toml")
    # check: the user drug is found only in its folder
    assert main(["check", str(mine)]) == 1
    assert "unknown drug 'mydrug'" in capsys.readouterr().err
    assert main(["check", str(mine), "--models-dir", str(folder)]) == 0
    assert "Case mine-1: mydrug" in capsys.readouterr().out

    monkeypatch.setattr("dialyzability.api.run", _fake_run)
    # fit: the overriding file is used and named, on the console and in the report
    out = tmp_path / "fit"
    args = ["fit", str(lee), "--out", str(out), "--seed", "1", "--quiet"]
    assert main([*args, "--models-dir", str(folder)]) in (0, EXIT_NOT_CONVERGED)
    said = f"drug model: {folder.resolve() / 'baclofen.toml'} (overrides the shipped baclofen.toml)"
    assert said in capsys.readouterr().out
    assert "D" + said[1:] + "." in (out / "report.md").read_text()
    assert recorded_models_dir(out) == str(folder.resolve())
    config = json.loads(Fit.load(out).idata.attrs["config"])
    assert config["drug_file"] == str(folder.resolve() / "baclofen.toml")

    # pool: the new drug's published EXTRIP grade beside the pooled EXTRIP criteria
    pooled = tmp_path / "pool"
    args = ["pool", str(mine), str(other), "--out", str(pooled), "--seed", "2", "--quiet"]
    assert main([*args, "--no-unpooled", "--models-dir", str(folder)]) in (0, EXIT_NOT_CONVERGED)
    summary = json.loads((pooled / "summary.json").read_text())
    assert summary["drug"] == "mydrug" and summary["extrip"]["published"] == EXTRIP
    assert summary["drug_model"].endswith("mydrug.toml (a user file)")
    assert (
        f"drug model: {folder.resolve() / 'mydrug.toml'} (a user file)" in capsys.readouterr().out
    )
    report = (pooled / "report.md").read_text()
    assert "Published EXTRIP grading of mydrug: moderately dialyzable (M), level of" in report
    # report: the fit recorded its folder, and --models-dir supplies a moved one
    assert main(["report", str(pooled)]) in (0, EXIT_NOT_CONVERGED)
    moved = folder.rename(tmp_path / "moved")
    assert main(["report", str(pooled)]) == 1
    err = capsys.readouterr().err
    assert "--models-dir" in err and str(folder.resolve()) in err and "Traceback" not in err
    assert main(["report", str(pooled), "--models-dir", str(moved)]) in (0, EXIT_NOT_CONVERGED)
    shutil.rmtree(moved)


def test_models_environment_variable_and_option_precedence(tmp_path, lee_raw, write_case, capsys):
    from dialyzability.io.resources import MODELS_ENV

    folder = _models_folder(tmp_path / "env")
    other = tmp_path / "opt"
    other.mkdir()
    (other / "baclofen.toml").write_text(
        (folder / "baclofen.toml").read_text().replace("user baclofen", "option baclofen")
    )
    mine = write_case({**lee_raw, "drug": "mydrug"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(MODELS_ENV, str(folder))
        assert main(["check", str(mine)]) == 0
        assert main(["drugs", "--json"]) == 0
        capsys.readouterr()
        assert main(["drugs", "--json", "--models-dir", str(other)]) == 0
        rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["baclofen"]["description"] == "option baclofen"  # the option wins
    assert "mydrug" not in rows
    assert main(["check", str(mine)]) == 1  # the variable no longer set


def test_drugs_command_lists_and_marks_user_files(tmp_path, capsys):
    folder = _models_folder(tmp_path / "models")
    assert main(["drugs", "--models-dir", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "drug", "model", "description", "molar", "mass", "EXTRIP", "prior", "t½", "95", "%",
        "sources",
    ]  # fmt: skip
    row = {line.split()[0]: line for line in lines[2:] if line[:1] != " "}
    assert set(row) >= {"baclofen", "lithium", "metformin", "mydrug"}
    assert "user (overrides shipped)" in row["baclofen"] and "shipped" in row["lithium"]
    assert "moderately dialyzable (D)" in row["mydrug"]
    assert main(["drugs", "--json", "--models-dir", str(folder)]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["mydrug"]["extrip"] == EXTRIP and rows["mydrug"]["overrides"] is None
    assert rows["baclofen"]["user"] and rows["baclofen"]["overrides"].endswith("baclofen.toml")
    assert "Wuis 1989" in rows["mydrug"]["citations"]
    lo, hi = rows["lithium"]["prior_half_life_95_h"]
    assert 0 < lo < hi


def test_malformed_user_drug_file_names_file_and_fields(tmp_path, lee_raw, write_case, capsys):
    folder = tmp_path / "models"
    folder.mkdir()
    bad = folder / "bad.toml"
    bad.write_text(
        'name = "bad"\n[priors.cl_total]\ndist = "lognormal"\nmedian = 0\nsigma = 1\n'
        'source = "x"\n[errors.level]\ndist = "beta"\nalpha = 1\nbeta = 1\nsource = "y"\n'
    )
    case = write_case({**lee_raw, "drug": "bad"})
    for args in (["check", str(case)], ["drugs"]):
        assert main([*args, "--models-dir", str(folder)]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and str(bad.resolve()) in err
        assert "field 'priors.cl_total.lognormal.median'" in err
        assert "field 'errors.level.dist'" in err
    assert main(["check", str(case), "--models-dir", str(tmp_path / "absent")]) == 1
    assert "no such folder of drug models" in capsys.readouterr().err


def test_pooled_report_sets_the_extrip_criteria_beside_the_published_grade(pooled_free_dir):
    from dialyzability.outputs.report import build_pooled_report, median, prob
    from dialyzability.results.extrip import GRADES

    summary = json.loads((pooled_free_dir / "summary.json").read_text())
    ex = summary["extrip"]
    cases = summary["cases"].values()
    assert set(ex["typical"]) == {c["kidney_function"] for c in cases}
    for per_class in ex["typical"].values():
        assert 0 <= per_class["p_thalf_off_above_4h"] <= 1
        assert set(per_class["modalities"]) == {m for c in cases for m in c["modalities"]}
        for per in per_class["modalities"].values():
            for c in per.values():
                assert sum(c[g] for g in GRADES) == pytest.approx(1)
    report = (pooled_free_dir / "report.md").read_text()
    assert "## EXTRIP: this pool beside the published grade" in report
    if ex["published"] is None:
        assert "The drug model gives no published EXTRIP grade for baclofen" in report
    q = summary["population"]["ratio_HD_normal"]
    assert f"population ratio {median(q)} (95 % interval" in report
    # the same summary with a published grade: the report shows it and P(that grade)
    summary["extrip"]["published"] = EXTRIP
    text = build_pooled_report(summary, []).markdown()
    assert "grading of baclofen: moderately dialyzable (M), level of evidence D, " in text
    p_m = [prob(c["M"]) for c in ex["typical"]["normal"]["modalities"]["HD"].values()]
    assert "P(published grade M) per criterion: " + ", ".join(p_m) in text
    only = {"dialyzability": None, "evidence": None, "recommendation": "none", "source": "S"}
    summary["extrip"]["published"] = only  # a recommendation without a dialyzability grade
    text = build_pooled_report(summary, []).markdown()
    assert "grading of baclofen: recommendation: none. Source: S." in text
    assert "P(published grade" not in text
    summary["extrip"] = {"published": None, "not_found": "searched X: none", "typical": {}}
    text = build_pooled_report(summary, []).markdown()
    assert "gives no published EXTRIP grade for baclofen (searched X: none)." in text


def test_api_fit_with_models_dir_records_the_user_model(tmp_path, monkeypatch):
    from dialyzability.api import fit, load_fit
    from dialyzability.io.case import load_case

    folder = _models_folder(tmp_path / "models")
    monkeypatch.setattr("dialyzability.api.run", _fake_run)
    result = fit(load_case(LEE), seed=4, models_dir=folder)
    assert result.drug.description == "user baclofen" and result.drug.user
    assert result.config["models_dir"] == str(folder.resolve())
    assert result.config["drug_file"] == str(folder.resolve() / "baclofen.toml")
    result.save(tmp_path / "fit")
    loaded = load_fit(tmp_path / "fit")
    assert loaded.drug.overrides == result.drug.overrides and loaded.drug.description == (
        "user baclofen"
    )


def test_fit_with_both_structures_writes_each_and_their_comparison(
    tmp_path, lee_raw, write_case, monkeypatch, capsys
):
    from dialyzability.results.fit import Fit

    monkeypatch.setattr("dialyzability.api.run", _fake_run)
    lee = write_case(lee_raw, "lee.toml")
    out = tmp_path / "both"
    code = main(
        ["fit", str(lee), "--out", str(out), "--seed", "2", "--quiet", "--structure", "both"]
    )
    assert code in (0, EXIT_NOT_CONVERGED)
    printed = capsys.readouterr().out
    assert "PSIS-LOO comparison" in printed
    comparison = json.loads((out / "comparison.json").read_text())
    assert {f["name"] for f in comparison["fits"]} == {"one-compartment", "two-compartment"}
    for name in ("one-compartment", "two-compartment"):
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["structure"]["name"] == name
        assert summary["comparison"]["sentence"] == comparison["sentence"]
        assert "Structural models compared (PSIS-LOO)" in (out / name / "report.md").read_text()
        # the comparison is kept with the fit: `report` shows it again
        assert Fit.load(out / name).comparison == comparison
    two = json.loads((out / "two-compartment" / "summary.json").read_text())
    assert "cl_intercompartmental" in two["quantities"]
    assert "peripheral_at_end_mg" in two["sessions"][0]
