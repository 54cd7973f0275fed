"""An empty extraction sheet: the tidy CSV's header, one example row of each kind, and the
table of its columns (name, meaning, unit, allowed values).

``write_template("sheet.csv")`` writes ``sheet.csv`` and ``sheet.columns.csv``;
``write_template("sheet.xlsx")`` one workbook with the sheets ``case`` and ``columns`` (needs
openpyxl, the ``xlsx`` extra). The example rows form a valid case (``example``), so a filled
sheet is read by :func:`dialyzability.io.tidy.load_tidy` like any other.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from dialyzability.io.case import CaseError
from dialyzability.io.files import write_text_whole, write_whole
from dialyzability.io.tidy import COLUMNS, NAMES

#: one example row of each kind (the cells not named are empty)
EXAMPLE_ROWS: tuple[dict[str, str], ...] = (
    {
        "kind": "patient",
        "field": "weight",
        "value": "70",
        "unit": "kg",
        "reference": "Author A et al. Journal 2024;1:1-2",
        "doi": "10.0000/example",
        "clock": "hours since ingestion",
    },
    {"kind": "patient", "field": "kidney_function", "value": "normal"},
    {"kind": "dose", "start": "0", "value": "1000", "unit": "mg", "route": "oral"},
    {"kind": "level", "start": "6", "value": "2.5", "unit": "mg/L", "matrix": "plasma"},
    {"kind": "level", "start": "30", "below_lloq": "true", "lloq": "0.05", "unit": "mg/L"},
    {
        "kind": "urine",
        "start": "2",
        "start_hi": "4",
        "duration": "24",
        "value": "40",
        "unit": "mg",
        "volume": "2.5 L",
    },
    {
        "kind": "session",
        "start": "8",
        "start_hi": "10",
        "duration": "4",
        "value": "30",
        "unit": "mg",
        "modality": "HD",
        "blood_flow": "250 mL/min",
        "effluent_flow": "30 L/h",
    },
    {"kind": "effluent", "start": "9", "value": "0.8", "unit": "mg/L", "session": "1"},
    {
        "kind": "level",
        "start": "11",
        "value": "1.9",
        "unit": "mg/L",
        "site": "pre-filter",
        "session": "1",
    },
    {
        "kind": "level",
        "start": "11",
        "value": "1.2",
        "unit": "mg/L",
        "site": "post-filter",
        "session": "1",
    },
)


def template_rows() -> list[list[str]]:
    """The sheet ``case``: the header and the example rows (case ``example``)."""
    rows = [list(NAMES)]
    for example in EXAMPLE_ROWS:
        cells = {"case": "example", "drug": "default", **example}
        rows.append([cells.get(name, "") for name in NAMES])
    return rows


def column_rows() -> list[list[str]]:
    """The sheet ``columns``: name, meaning, unit and allowed values of every column."""
    return [["name", "meaning", "unit", "allowed values"]] + [
        [c.name, c.meaning, c.unit, c.allowed] for c in COLUMNS
    ]


def _csv(rows: list[list[str]]) -> str:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def columns_path(path: str | Path) -> Path:
    """Where the columns table of the CSV template ``path`` goes: ``sheet.columns.csv``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.columns.csv")


def write_template(path: str | Path) -> list[Path]:
    """Write the empty extraction sheet to ``path`` (``.csv``: it and its ``.columns.csv``;
    ``.xlsx``: a workbook with the sheets ``case`` and ``columns``); returns the files written.

    Raises
    ------
    CaseError
        For another extension, or ``.xlsx`` without openpyxl installed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return [
            write_text_whole(path, _csv(template_rows())),
            write_text_whole(columns_path(path), _csv(column_rows())),
        ]
    if suffix != ".xlsx":
        raise CaseError(path, "a template is a .csv or an .xlsx file")
    try:
        from openpyxl import Workbook
    except ImportError:
        raise CaseError(
            path,
            "writing .xlsx needs openpyxl: pip install 'dialyzability[xlsx]' (or write a .csv)",
        ) from None
    book = Workbook()
    sheet = book.active
    sheet.title = "case"
    for row in template_rows():
        sheet.append(row)
    columns = book.create_sheet("columns")
    for row in column_rows():
        columns.append(row)
    return [write_whole(path, book.save)]
