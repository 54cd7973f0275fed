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
    assert str(path) in err and "[[sessions]] #1" in err and "modality" in err


def test_console_script_help_runs():
    result = subprocess.run(
        [sys.executable, "-m", "dialyzability.cli", "check", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "classical" in result.stdout
