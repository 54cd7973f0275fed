"""Cases from a tidy long sheet (one row per observation), for reviewers who extract in a sheet.

A CSV file (or, with openpyxl installed, a workbook whose sheet ``case`` holds the same table);
a header row names the columns, in any order, unknown ones rejected; only ``case``, ``drug`` and
``kind`` are required. :data:`COLUMNS` says what each column means, in which unit and with which
values; ``dialyzability template --out sheet.csv`` writes an empty sheet with an example row of
each kind and that table beside it (:mod:`dialyzability.io.template`).

Example (``data/example-tidy.csv``)::

    case,drug,kind,start,start_hi,end,duration,value,unit,field,matrix,modality
    lee2020,baclofen,patient,,,,,51,kg,weight,,
    lee2020,baclofen,dose,0,,,,1200,mg,,,
    lee2020,baclofen,level,14,,,,882,ng/mL,,serum,
    lee2020,baclofen,urine,2,14,,24,42,mg,,,
    lee2020,baclofen,session,14,30,,3,3.05,mg,,,HD

A level drawn from the extracorporeal circuit is a level row with its ``site`` (pre-filter or
post-filter) and its ``session`` (the number of the session row of the case, 1 for the first).

Every problem is reported, each naming the file, the row (as a spreadsheet numbers them: the
header is row 1) and the column. The file is only read.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialyzability.io.case import MODALITIES, Case, CaseError, Problem, parse_case


@dataclass(frozen=True)
class Column:
    """A column of the tidy sheet: its name, what it holds, its unit and allowed values."""

    name: str
    meaning: str
    unit: str = ""
    allowed: str = ""


KINDS = ("patient", "dose", "level", "urine", "session", "effluent")
PATIENT_FIELDS = ("weight", "age_years", "sex", "kidney_function", "haematocrit")
_TRUE, _FALSE = ("true", "1", "yes", "y"), ("false", "0", "no", "n", "")

COLUMNS: tuple[Column, ...] = (
    Column("case", "case id: rows with the same id form one case", "", "letters, digits, . _ -"),
    Column("drug", "drug model of the case (the same on every row of a case)", "", "a model name"),
    Column(
        "kind",
        "what the row is: a patient fact, a dose, a level, a urine collection, an ECTR session, "
        "or an effluent sample of a session",
        "",
        ", ".join(KINDS),
    ),
    Column(
        "start",
        "time of a dose, level or effluent sample; start of a urine collection or session",
        "h",
        "number of hours on the case's clock",
    ),
    Column("start_hi", "upper end when start is only known as a range [start, start_hi]", "h"),
    Column("end", "end of a urine collection or session (or give duration)", "h"),
    Column("end_hi", "upper end when end is a range", "h"),
    Column("duration", "duration of a urine collection or session (or give end)", "h", "> 0"),
    Column("duration_hi", "upper end when duration is a range", "h"),
    Column(
        "value",
        "the dose, the level, the urine amount, the session's recovered amount, the effluent "
        "sample's concentration (what field says for urine and session rows), or the patient "
        "fact",
        "",
        "a number (patient sex and kidney_function: a word)",
    ),
    Column(
        "unit",
        "unit of value and of lloq",
        "",
        "mg, g, ug, ng/mL, mg/L, mmol/L (with a molar mass), kg, lb, ...",
    ),
    Column(
        "field",
        "patient rows: which fact; urine rows: amount (default) or concentration; session "
        "rows: recovered (default) or effluent_concentration",
        "",
        "weight, age_years, sex, kidney_function, haematocrit; amount, concentration; recovered, "
        "effluent_concentration",
    ),
    Column("matrix", "what a level was measured in (default plasma)", "", "plasma, serum, blood"),
    Column("lloq", "limit of quantification of a level, in the unit column's unit", ""),
    Column(
        "below_lloq", "the level was below the lloq (then value may be empty)", "", "true, false"
    ),
    Column(
        "site",
        "level rows drawn from the extracorporeal circuit: at the filter's inlet (arterial "
        "line) or outlet (venous line), during the session given in the session column; empty "
        "for a systemic level",
        "",
        "pre-filter, post-filter",
    ),
    Column("route", "route of a dose (default oral)", "", "oral, iv"),
    Column("modality", "the session's extracorporeal treatment", "", ", ".join(MODALITIES)),
    Column(
        "volume",
        "urine rows: the collection's volume; session rows: the effluent volume; with its unit",
        "",
        "e.g. 2810 mL",
    ),
    Column("blood_flow", "a session's blood flow, with its unit", "", "e.g. 250 mL/min"),
    Column(
        "effluent_flow", "a session's effluent (dialysate) flow, with its unit", "", "e.g. 2 L/h"
    ),
    Column(
        "session",
        "effluent rows: which session of the case the sample belongs to; level rows with a "
        "site: the session during which the level was drawn",
        "",
        "1, 2, ... in the order of the case's session rows",
    ),
    Column("reference", "citation of the case report (first non-empty value of a case)"),
    Column("doi", "DOI of the case report (first non-empty value of a case)"),
    Column(
        "clock",
        "what time zero is (first non-empty value of a case)",
        "",
        "e.g. hours since ingestion",
    ),
    Column("notes", "free text about the case (first non-empty value of a case)"),
)
NAMES = tuple(c.name for c in COLUMNS)
_META = ("reference", "doi", "clock", "notes")


def load_tidy(path: str | Path) -> list[Case]:
    """Every case of a tidy CSV or workbook (``.xlsx``, sheet ``case``); the file is only read.

    Raises
    ------
    CaseError
        With every problem found, each naming the file, the row and the column.
    """
    path = Path(path)
    if path.suffix.lower() == ".xlsx":
        return parse_rows(_xlsx_rows(path), path)
    return load_tidy_csv(path)


def load_tidy_csv(path: str | Path) -> list[Case]:
    """Every case of a tidy CSV (see the module docstring); the file is only read.

    Raises
    ------
    CaseError
        With every problem found, each naming the file, the row and the column.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise CaseError(path, f"cannot read the file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise CaseError(path, "not a UTF-8 text file") from None
    if "\0" in text:
        raise CaseError(path, "not a text file (it holds NUL characters)")
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise CaseError(path, f"invalid CSV: {exc}") from None
    return parse_rows(rows, path)


def _xlsx_rows(path: Path) -> list[list[str]]:
    try:
        import openpyxl
    except ImportError:
        raise CaseError(
            path, "reading .xlsx needs openpyxl: pip install 'dialyzability[xlsx]'"
        ) from None
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds of errors on a bad workbook
        raise CaseError(path, f"cannot read the workbook ({exc})") from None
    try:
        if "case" not in book.sheetnames:
            sheets = ", ".join(book.sheetnames)
            raise CaseError(path, f"no sheet named 'case' (sheets: {sheets})")
        return [
            ["" if v is None else str(v) for v in row]
            for row in book["case"].iter_rows(values_only=True)
        ]
    finally:
        book.close()


class _Sheet:
    """The rows of one sheet being read: the problems found, and where each field of each
    case came from (to name the row and column of a problem the case validation finds)."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.problems: list[Problem] = []
        self.raws: dict[str, dict] = {}
        #: case id -> (block, 1-based index or None, field) -> (row, column)
        self.places: dict[str, dict[tuple, tuple[int, str]]] = {}

    def fail(self, row: int | None, column: str, message: str) -> None:
        if row is None:
            self.problems.append(Problem(self.path, message, "header", None, column))
        elif not any(
            p.block == "row" and (p.index, p.field) == (row, column) for p in self.problems
        ):
            self.problems.append(Problem(self.path, message, "row", row, column))

    def place(self, cid: str, key: tuple, row: int, column: str) -> None:
        self.places[cid].setdefault(key, (row, column))


#: case fields read from a row's columns, by kind: {case field: column}
_FIELDS = {
    "dose": {"time_h": "start", "amount": "value", "route": "route"},
    "level": {
        "time_h": "start",
        "value": "value",
        "matrix": "matrix",
        "lloq": "lloq",
        "below_lloq": "below_lloq",
        "site": "site",
        "session": "session",
    },
    "urine": {
        "start_h": "start",
        "end_h": "end",
        "duration_h": "duration",
        "amount": "value",
        "concentration": "value",
        "volume": "volume",
    },
    "session": {
        "modality": "modality",
        "start_h": "start",
        "end_h": "end",
        "duration_h": "duration",
        "recovered": "value",
        "effluent_concentration": "value",
        "effluent_volume": "volume",
        "blood_flow": "blood_flow",
        "effluent_flow": "effluent_flow",
    },
    "effluent": {"time_h": "start", "concentration": "value"},
}
_BLOCK = {"dose": "doses", "level": "concentrations", "urine": "urine", "session": "sessions"}


def _time(sheet: _Sheet, row: dict, n: int, name: str) -> float | list[float] | None:
    lo, hi = row.get(name, ""), row.get(f"{name}_hi", "")
    if not lo:
        if hi:
            sheet.fail(n, name, f"{name}_hi is given without {name}")
        return None
    values = []
    for column, text in ((name, lo), (f"{name}_hi", hi)):
        if not text:
            continue
        try:
            values.append(float(text))
        except ValueError:
            sheet.fail(n, column, f"not a number of hours: {text!r}")
            return None
    return values if len(values) == 2 else values[0]


def parse_rows(rows: list[list[Any]], path: str | Path) -> list[Case]:
    """The cases of a tidy sheet given as rows of cells (the first row the header).

    Raises
    ------
    CaseError
        With every problem found, each naming ``path``, the row and the column.
    """
    sheet = _Sheet(Path(path))
    rows = [["" if c is None else str(c).strip() for c in r] for r in rows]  # cells of any type
    while rows and not any(rows[0]):
        rows.pop(0)  # blank lines above the header
    if not rows:
        raise CaseError(path, "empty: no header row")
    header = rows[0]
    for i, name in enumerate(header):
        if name in header[:i] or not name:
            continue  # said once; a column without a name must stay empty (below)
        if name not in NAMES:
            sheet.fail(None, name, f"unknown column; allowed: {', '.join(NAMES)}")
        elif header.count(name) > 1:
            sheet.fail(None, name, "column given twice")
    for required in ("case", "drug", "kind"):
        if required not in header:
            sheet.fail(None, required, "missing required column")
    if sheet.problems:
        raise CaseError.of(sheet.problems)
    sessions_seen: dict[str, int] = {}
    samples = []
    for n, cells in enumerate(rows[1:], start=2):
        if not any(cells):
            continue  # a blank line
        if len(cells) > len(header):
            if any(cells[len(header) :]):
                sheet.fail(n, "", f"{len(cells)} cells but {len(header)} columns in the header")
                continue
        row = dict(zip(header, cells, strict=False))
        if row.pop("", ""):
            sheet.fail(n, "", "a value in a column without a name in the header")
            continue
        cid, kind = row.get("case", ""), row.get("kind", "")
        if not cid:
            sheet.fail(n, "case", "missing case id")
            continue
        if kind not in KINDS:
            sheet.fail(n, "kind", f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
            continue
        if cid not in sheet.raws:
            sheet.raws[cid] = {"id": cid, "drug": row.get("drug", "")}
            sheet.places[cid] = {("", None, "id"): (n, "case"), ("", None, "drug"): (n, "drug")}
        raw = sheet.raws[cid]
        if row.get("drug", "") != raw["drug"]:
            first = sheet.places[cid][("", None, "drug")][0]
            sheet.fail(n, "drug", f"case {cid} is of drug {raw['drug']!r} in row {first}")
        for meta in _META:
            if row.get(meta) and meta not in raw:
                raw[meta] = row[meta]
                sheet.place(cid, ("", None, meta), n, meta)
        entry = _entry(sheet, row, n, kind)
        if entry is None:
            continue
        if kind == "patient":
            name, value = entry
            patient = raw.setdefault("patient", {})
            if name in patient:
                first = sheet.places[cid][("patient", None, name)][0]
                sheet.fail(n, "field", f"patient {name} is given twice (also row {first})")
                continue
            patient[name] = value
            sheet.place(cid, ("patient", None, name), n, "value")
            continue
        if kind == "effluent":
            samples.append((cid, n, row, entry))
            continue
        block = _BLOCK[kind]
        entries = raw.setdefault(block, [])
        entries.append(entry)
        for field in entry:
            sheet.place(cid, (block, len(entries), field), n, _FIELDS[kind][field])
        sheet.place(cid, (block, len(entries), ""), n, "kind")
        if kind == "session":
            sessions_seen[cid] = len(entries)
    for cid, n, row, entry in samples:
        text, count = row.get("session", ""), sessions_seen.get(cid, 0)
        number = int(text) if text.isascii() and text.isdigit() else 0
        if not 1 <= number <= count:
            which = f"1 to {count}, in the order of its session rows" if count else "none"
            sheet.fail(n, "session", f"the session of case {cid} ({which}), got {text!r}")
            continue
        session = sheet.raws[cid]["sessions"][number - 1]
        session.setdefault("effluent_samples", []).append(entry)
        k = len(session["effluent_samples"])
        for field in entry:
            key = ("sessions", number, f"effluent_samples[{k}].{field}")
            sheet.place(cid, key, n, _FIELDS["effluent"][field])
        sheet.place(cid, ("sessions", number, f"effluent_samples[{k}]"), n, "kind")
    if not sheet.raws and not sheet.problems:
        raise CaseError(path, "no rows below the header")
    cases = []
    for cid, raw in sheet.raws.items():
        try:
            cases.append(parse_case(raw, f"{sheet.path} (case {cid})"))
        except CaseError as exc:
            for p in exc.problems:
                _relocate(sheet, cid, p)
    if sheet.problems:
        order = {"header": 0, "row": 1}
        sheet.problems.sort(key=lambda p: (order.get(p.block, 2), p.index or 0))
        raise CaseError.of(sheet.problems)
    return cases


def _quantity(row: dict, column: str = "value") -> str | None:
    value = row.get(column, "")
    return f"{value} {row.get('unit', '')}".strip() if value else None


def _entry(sheet: _Sheet, row: dict, n: int, kind: str):
    """The case entry (a dict of case fields) of one row, or for a patient row (field,
    value); ``None`` when the row is unusable (its problems noted)."""
    if kind == "patient":
        name, value = row.get("field", ""), row.get("value", "")
        if name not in PATIENT_FIELDS:
            sheet.fail(n, "field", f"a patient row's field is one of {', '.join(PATIENT_FIELDS)}")
            return None
        if name == "weight":
            return name, _quantity(row)
        if name == "age_years":
            try:
                return name, float(value)
            except ValueError:
                sheet.fail(n, "value", f"age must be a number of years, got {value!r}")
                return None
        if name == "haematocrit":
            try:
                return name, float(value)
            except ValueError:
                sheet.fail(n, "value", f"haematocrit must be a fraction (e.g. 0.35), got {value!r}")
                return None
        return name, value
    entry: dict[str, Any] = {}
    field = row.get("field", "")
    if kind == "dose":
        entry = {"time_h": _time(sheet, row, n, "start"), "amount": _quantity(row)}
        entry["route"] = row.get("route") or "oral"
    elif kind == "level":
        entry = {"time_h": _time(sheet, row, n, "start"), "matrix": row.get("matrix") or "plasma"}
        if row.get("lloq"):
            entry["lloq"] = _quantity(row, "lloq")
        flag = row.get("below_lloq", "").lower()
        if flag in _TRUE:
            entry["below_lloq"] = True
        elif flag not in _FALSE:
            sheet.fail(n, "below_lloq", f"true or false, got {row['below_lloq']!r}")
        if "below_lloq" not in entry:
            entry["value"] = _quantity(row)
        entry["site"] = row.get("site") or None
        text = row.get("session", "")
        if text:  # a number the case checks against its sessions (and against the site)
            if text.isascii() and text.isdigit() and int(text) >= 1:
                entry["session"] = int(text)
            else:
                sheet.fail(n, "session", f"a session number (1, 2, ...), got {text!r}")
    elif kind == "effluent":
        entry = {"time_h": _time(sheet, row, n, "start"), "concentration": _quantity(row)}
    else:
        entry = {"start_h": _time(sheet, row, n, "start")}
        entry["end_h"] = _time(sheet, row, n, "end")
        entry["duration_h"] = _time(sheet, row, n, "duration")
        if kind == "urine":
            if field not in ("", "amount", "concentration"):
                sheet.fail(
                    n, "field", f"a urine row's field is amount or concentration, got {field!r}"
                )
            entry[field or "amount"] = _quantity(row)
            entry["volume"] = row.get("volume") or None
        else:
            if field not in ("", "recovered", "effluent_concentration"):
                sheet.fail(
                    n,
                    "field",
                    f"a session row's field is recovered or effluent_concentration, got {field!r}",
                )
            entry["modality"] = row.get("modality", "")
            entry[field or "recovered"] = _quantity(row)
            entry["effluent_volume"] = row.get("volume") or None
            entry["blood_flow"] = row.get("blood_flow") or None
            entry["effluent_flow"] = row.get("effluent_flow") or None
    return {k: v for k, v in entry.items() if v is not None and k in _FIELDS[kind]}


_SAMPLE = re.compile(r"(effluent_samples\[\d+\])\.(\w+)")
_UNIT_PROBLEM = re.compile(
    r"^(unknown unit|.* has no unit|.* has the wrong dimension|.* is a molar)"
)


def _relocate(sheet: _Sheet, cid: str, p: Problem) -> None:
    """A problem the case validation found, moved to the row and column it came from."""
    places = sheet.places[cid]
    index = None if p.block == "patient" else p.index
    key = (p.block if p.block in ("patient", *_BLOCK.values()) else "", index, p.field)
    if key in places:
        row, column = places[key]
        if column in ("value", "lloq") and _UNIT_PROBLEM.search(p.message):
            column = "unit"  # the number is in value (or lloq), its unit in unit
        sheet.fail(row, column, p.message)
        return
    if p.block in _BLOCK.values():  # a field the row left empty: the row, and its column
        sample = _SAMPLE.fullmatch(p.field)
        kind = "effluent" if sample else next(k for k, b in _BLOCK.items() if b == p.block)
        field = sample[2] if sample else p.field
        row_key = (p.block, p.index, sample[1] if sample else "")
        if row_key in places:
            sheet.fail(places[row_key][0], _FIELDS[kind].get(field, field), p.message)
            return
    where = f"{p.where}: " if p.where else ""  # a problem of the whole case
    sheet.problems.append(Problem(sheet.path, f"case {cid}: {where}{p.message}"))
