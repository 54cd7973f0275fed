"""The formats of the field: every command reads TOML and tidy CSV through one loader; every
problem of a file is reported with its place; the extraction template; figure formats; a
posterior.nc that is not a readable fit."""

import csv
import importlib.util
import json
import re
import shutil

import pytest

from dialyzability import cli
from dialyzability.cli import build_parser, main
from dialyzability.io.case import CaseError, load_case, load_cases
from dialyzability.io.tidy import COLUMNS, KINDS, NAMES, load_tidy_csv

from .conftest import LEE, ROOT

TIDY = ROOT / "data" / "example-tidy.csv"
LINE = re.compile(r"^(?P<file>.+?): (?P<where>[a-z_]+(\[\d+\])?(\.[\w\[\]]+)*): (?P<msg>.+)$")


# --- one loader ------------------------------------------------------------------------------


def test_check_reads_the_tidy_csv(capsys):
    assert main(["check", str(TIDY)]) == 0
    out = capsys.readouterr().out
    assert "Case lee2020-baclofen-csv: baclofen" in out
    assert "14 h: 0.882 mg/L serum" in out


def test_one_loader_reads_each_file_by_its_extension():
    assert not hasattr(cli, "_load_inputs")  # the commands share io.case.load_cases
    cases = load_cases([LEE, TIDY])
    assert [c.id for c in cases] == ["lee2020-baclofen", "lee2020-baclofen-csv"]
    assert load_case(TIDY).to_json() == cases[1].to_json()


def _two_case_csv(tmp_path):
    text = TIDY.read_text()
    rows = text.splitlines()[1:]
    other = [r.replace("lee2020-baclofen-csv", "second-case") for r in rows]
    path = tmp_path / "two.csv"
    path.write_text(text + "\n".join(other) + "\n")
    return path


def test_fit_of_a_csv_of_several_cases_names_them(tmp_path, capsys):
    path = _two_case_csv(tmp_path)
    assert main(["fit", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "lee2020-baclofen-csv" in err and "second-case" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    assert main(["fit", str(path), "--case", "third", "--out", str(tmp_path / "out")]) == 1
    assert "no case 'third'" in capsys.readouterr().err
    with pytest.raises(CaseError, match="holds 2 cases"):
        load_case(path)


# --- every problem, with its place -----------------------------------------------------------


def _bad_toml(lee_raw, write_case):
    lee_raw["patient"]["weight"] = 51  # no unit
    lee_raw["concentrations"][0]["value"] = "882 blorbs"
    lee_raw["sessions"][0]["modality"] = "dialysis"
    lee_raw["sessions"][0]["recoverd"] = "3 mg"
    del lee_raw["sessions"][2]["duration_h"]  # a check across fields, on a case that fails
    return write_case(lee_raw, "bad.toml")


TOML_PLACES = [
    ("patient", None, "weight", "no unit"),
    ("concentrations", 1, "value", "unknown unit"),
    ("sessions", 1, "modality", "'HD'"),
    ("sessions", 1, "recoverd", "unknown field"),
    ("sessions", 3, "end_h", "end_h or duration_h"),
]


def _assert_places(errors, places):
    assert len(errors) == len(places)
    for e, (block, index, field, match) in zip(errors, places, strict=True):
        assert (e["block"], e["index"], e["field"]) == (block, index, field)
        assert match in e["message"]


def test_check_reports_every_problem_of_a_case_file(lee_raw, write_case, capsys):
    path = _bad_toml(lee_raw, write_case)
    assert main(["check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == len(TOML_PLACES)
    for line, (block, index, field, match) in zip(lines, TOML_PLACES, strict=True):
        m = LINE.match(line)
        assert m, line
        where = block + (f"[{index}]" if index else "") + f".{field}"
        assert m["file"] == str(path) and m["where"] == where and match in m["msg"]

    assert main(["check", "--json", str(path)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["file"] == str(path)
    assert all(set(e) == {"block", "index", "field", "message"} for e in data["errors"])
    _assert_places(data["errors"], TOML_PLACES)


def _bad_csv(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "case,drug,kind,start,duration,value,unit,field,modality\n"
        "x,baclofen,patient,,,51,kg,weight,\n"
        "x,baclofen,dose,soon,,1200,mg,,\n"
        "x,baclofen,level,14,,882,blorb,,\n"
        "x,baclofen,session,20,3,3,mg,,dialysis\n"
        "x,baclofen,flood,20,,3,mg,,\n"
        "x,baclofen,urine,2,,42,mg,,\n"
        "x,baclofen,patient,,,52,kg,weight,\n"
    )
    return path


CSV_PLACES = [
    ("row", 3, "start", "not a number of hours"),
    ("row", 4, "unit", "unknown unit"),
    ("row", 5, "modality", "'HD'"),
    ("row", 6, "kind", "kind must be one of"),
    ("row", 7, "end", "end_h or duration_h"),
    ("row", 8, "field", "given twice (also row 2)"),
]


def test_check_reports_every_problem_of_a_tidy_csv(tmp_path, capsys):
    path = _bad_csv(tmp_path)
    before = path.read_bytes()
    with pytest.raises(CaseError) as info:
        load_tidy_csv(path)
    _assert_places([p.to_json() for p in info.value.problems], CSV_PLACES)
    assert info.value.block == "row 3" and info.value.field == "start"

    assert main(["check", str(path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"{path}: row[{i}].{column}: {p.message}"
        for (_, i, column, _), p in zip(CSV_PLACES, info.value.problems, strict=True)
    ]
    assert main(["check", "--json", str(path)]) == 1
    _assert_places(json.loads(capsys.readouterr().out)["errors"], CSV_PLACES)
    assert path.read_bytes() == before


def test_problems_of_nested_entries_name_their_row(tmp_path):
    """An effluent sample's problems name its own row, not its session's."""
    from dialyzability.io.template import template_rows

    rows = template_rows()
    header, effluent = rows[0], rows[-1]
    effluent[header.index("start")] = "nine"
    effluent[header.index("unit")] = "mg/kg"
    path = tmp_path / "samples.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(CaseError) as info:
        load_tidy_csv(path)
    n = len(rows)
    assert [p.where for p in info.value.problems] == [f"row[{n}].start", f"row[{n}].unit"]


def test_header_problems_are_all_reported(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("case,kind,strat,value,value\nx,level,1,2\n")
    with pytest.raises(CaseError) as info:
        load_tidy_csv(path)
    where = [p.where for p in info.value.problems]
    assert where == ["header.strat", "header.value", "header.drug"]


def test_several_bad_files_give_a_json_list(lee_raw, write_case, tmp_path, capsys):
    toml, tidy = _bad_toml(lee_raw, write_case), _bad_csv(tmp_path)
    assert main(["check", "--json", str(toml), str(LEE), str(tidy)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [d["file"] for d in data] == [str(toml), str(tidy)]
    _assert_places(data[0]["errors"], TOML_PLACES)
    _assert_places(data[1]["errors"], CSV_PLACES)


@pytest.mark.parametrize("command", ["fit", "pool"])
def test_fit_and_pool_print_the_same_messages(command, lee_raw, write_case, tmp_path, capsys):
    path = _bad_toml(lee_raw, write_case)
    main(["check", str(path)])
    expected = capsys.readouterr().err
    assert main([command, str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err == expected and "Traceback" not in err


def test_cells_of_a_workbook_read_as_the_csv_text():
    """A workbook's cells are numbers and empty cells (None), not text."""
    from dialyzability.io.tidy import parse_rows

    rows = list(csv.reader(TIDY.open(newline="")))
    typed = [rows[0]] + [
        [None if c == "" else float(c) if c.replace(".", "").isdigit() else c for c in r]
        for r in rows[1:]
    ]
    assert isinstance(typed[5][7], float) and typed[5][4] is None
    [case] = parse_rows(typed, "sheet.xlsx")
    assert case.to_json() == load_case(TIDY).to_json()


def test_duplicate_ids_across_formats_are_a_problem(tmp_path):
    copy = tmp_path / "lee.csv"
    copy.write_text(TIDY.read_text().replace("lee2020-baclofen-csv", "lee2020-baclofen"))
    with pytest.raises(CaseError, match="also used by") as info:
        load_cases([LEE, copy])
    assert info.value.problems[0].field == "id"


# --- the extraction template -----------------------------------------------------------------


#: the founding case (data/cases/lee2020-baclofen.toml) entered in the template's columns
LEE_ROWS = [
    {"kind": "patient", "field": "age_years", "value": "14"},
    {"kind": "patient", "field": "sex", "value": "female"},
    {"kind": "patient", "field": "weight", "value": "51", "unit": "kg"},
    {"kind": "patient", "field": "kidney_function", "value": "normal"},
    {"kind": "dose", "start": "0", "value": "1200", "unit": "mg", "route": "oral"},
    {"kind": "level", "start": "14", "value": "882", "unit": "ng/mL", "matrix": "serum"},
    {
        "kind": "urine",
        "start": "2",
        "start_hi": "14",
        "duration": "24",
        "volume": "2810 mL",
        "value": "42",
        "unit": "mg",
    },
    {
        "kind": "session",
        "modality": "HD",
        "start": "14",
        "start_hi": "30",
        "duration": "3",
        "value": "3.05",
        "unit": "mg",
    },
    {"kind": "session", "modality": "HD", "start": "34", "start_hi": "56", "duration": "3"},
    {"kind": "session", "modality": "HD", "start": "58", "start_hi": "84", "duration": "3"},
]
LEE_META = {
    "reference": "Lee VR et al. Clin Toxicol 2020;59(3):231-234",
    "doi": "10.1080/15563650.2020.1795188",
    "clock": "hours since ingestion",
}


def test_template_writes_the_sheet_and_its_columns(tmp_path, capsys):
    out = tmp_path / "sheet.csv"
    assert main(["template", "--out", str(out)]) == 0
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(NAMES)
    assert {r["kind"] for r in rows} == set(KINDS)  # an example row of every kind
    with (tmp_path / "sheet.columns.csv").open(newline="") as fh:
        columns = list(csv.reader(fh))
    assert columns[0] == ["name", "meaning", "unit", "allowed values"]
    assert [c[0] for c in columns[1:]] == list(NAMES)
    assert all(c[1] for c in columns[1:])  # every column says what it holds
    assert dict((c.name, c.unit) for c in COLUMNS)["start"] == "h"
    # the example rows are a valid case, and the sheet is not written over
    example = load_case(out)
    assert example.id == "example" and example.sessions[0].effluent_samples
    assert main(["template", "--out", str(out)]) == 1
    assert "exists already" in capsys.readouterr().err


def test_template_filled_with_the_founding_case_is_the_toml_case(tmp_path):
    out = tmp_path / "lee.csv"
    assert main(["template", "--out", str(out)]) == 0
    with out.open(newline="") as fh:
        header = next(csv.reader(fh))
    with out.open("w", newline="") as fh:  # the example rows replaced by the case's
        writer = csv.DictWriter(fh, fieldnames=header, restval="")
        writer.writeheader()
        for i, row in enumerate(LEE_ROWS):
            writer.writerow(
                {
                    "case": "lee2020-baclofen",
                    "drug": "baclofen",
                    **row,
                    **(LEE_META if i == 0 else {}),
                }
            )
    assert load_case(out).to_json() == load_case(LEE).to_json()


def test_template_xlsx(tmp_path, capsys):
    out = tmp_path / "sheet.xlsx"
    if importlib.util.find_spec("openpyxl") is None:
        assert main(["template", "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert "openpyxl" in err and "dialyzability[xlsx]" in err and "Traceback" not in err
        assert not out.exists()
        return
    import openpyxl

    assert main(["template", "--out", str(out)]) == 0
    book = openpyxl.load_workbook(out)
    assert book.sheetnames == ["case", "columns"]
    assert [c.value for c in book["case"][1]] == list(NAMES)
    assert load_case(out).id == "example"


# --- figure formats --------------------------------------------------------------------------


def test_figure_format_option_is_repeatable_and_a_list():
    parser = build_parser()
    for command in (["fit", "x.toml", "--out", "o"], ["report", "d"], ["pool", "x", "--out", "o"]):
        args = parser.parse_args([*command, "--figure-format", "svg,pdf", "--figure-format", "png"])
        assert cli._formats(args) == ["svg", "pdf", "png"]
        assert cli._formats(parser.parse_args(command)) == ["png"]
    with pytest.raises(SystemExit):
        parser.parse_args(["report", "d", "--figure-format", "gif"])


def test_report_writes_svg_figures_and_shows_them(lee_free_dir, tmp_path):
    from dialyzability.outputs.plots import FIGURES

    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(lee_free_dir / "posterior.nc", copy / "posterior.nc")
    assert main(["report", str(copy), "--figure-format", "svg"]) == 0
    stems = [name.removesuffix(".png") for name in FIGURES]
    for stem in stems:
        assert (copy / f"{stem}.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
        assert not (copy / f"{stem}.png").exists()
    md = (copy / "report.md").read_text()
    assert all(f"]({stem}.svg)" in md for stem in stems) and ".png" not in md
    html = (copy / "report.html").read_text()
    assert html.count('src="data:image/svg+xml;base64,') == len(stems)
    assert "data:image/png" not in html


# --- a posterior.nc that is not a fit --------------------------------------------------------


def _netcdf_not_a_fit(path):
    import numpy as np
    import xarray as xr

    xr.Dataset({"a": ("x", np.arange(3.0))}).to_netcdf(path)


@pytest.mark.parametrize("kind", ["truncated", "empty", "not a fit", "inference data"])
def test_report_of_a_bad_posterior_is_one_clear_message(kind, lee_free_dir, tmp_path, capsys):
    target = tmp_path / "posterior.nc"
    if kind == "truncated":
        data = (lee_free_dir / "posterior.nc").read_bytes()
        target.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "not a fit":
        _netcdf_not_a_fit(target)
    else:
        import arviz as az
        import numpy as np

        az.from_dict(posterior={"ratio": np.ones((2, 10))}).to_netcdf(str(target))
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith(f"error: {target}: cannot be read as a fit")
    assert {p.name for p in tmp_path.iterdir()} == {"posterior.nc"}  # nothing else written
