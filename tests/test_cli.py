import json
import re
import subprocess
import sys

import pytest

from dialyzability.cli import main

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
    assert "50% HDI" in out and f"Wrote to {copy}" in out
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
    assert main(["report", str(copy)]) == 0
    assert {p.name for p in copy.iterdir()} >= {"summary.json", "forest.png", "report.md"}
    stored = json.loads((pooled_free_dir / "summary.json").read_text())
    for row in stored["cases"].values():  # the single-case fits are not saved with the pool
        row.pop("unpooled_ratio", None)
    assert json.loads((copy / "summary.json").read_text()) == stored
