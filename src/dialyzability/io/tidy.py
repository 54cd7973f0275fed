"""Cases from a tidy long CSV (one row per observation), for reviewers who extract in a sheet.

Columns (header row required; unknown columns are rejected):

==============  =================================================================================
``case``        case id (rows with the same id form one case)
``drug``        drug model name
``kind``        ``patient``, ``dose``, ``level``, ``urine`` or ``session``
``start``       time (h) of a dose or level, start of a urine collection or session
``start_hi``    upper end when ``start`` is only known as a range [start, start_hi]
``end``         end (h) of a urine collection or session (or give ``duration``)
``duration``    duration (h); ``duration_hi`` for a range
``value``       the amount, level or recovery (a session's recovered amount), or the patient
                field's value
``unit``        unit of ``value`` (and of ``lloq``): mg, ng/mL, mmol/L, kg, ...
``field``       for ``patient`` rows: weight, age_years, sex or kidney_function
``matrix``      plasma, serum or blood (levels)
``lloq``        limit of quantification (levels); ``below_lloq`` = true when below it
``route``       oral or iv (doses)
``modality``    HD, HDF, CVVH, CVVHD, CVVHDF, HP or PD (sessions)
``reference``, ``doi``, ``clock``   case metadata (first non-empty value is used)
==============  =================================================================================

Example (``data/example-tidy.csv``)::

    case,drug,kind,start,start_hi,end,duration,value,unit,field,matrix,modality
    lee2020,baclofen,patient,,,,,51,kg,weight,,
    lee2020,baclofen,dose,0,,,,1200,mg,,,
    lee2020,baclofen,level,14,,,,882,ng/mL,,serum,
    lee2020,baclofen,urine,2,14,,24,42,mg,,,
    lee2020,baclofen,session,14,30,,3,3.05,mg,,,HD
"""

from __future__ import annotations

import csv
from pathlib import Path

from dialyzability.io.case import Case, CaseError, parse_case

COLUMNS = (
    "case",
    "drug",
    "kind",
    "start",
    "start_hi",
    "end",
    "end_hi",
    "duration",
    "duration_hi",
    "value",
    "unit",
    "field",
    "matrix",
    "lloq",
    "below_lloq",
    "route",
    "modality",
    "reference",
    "doi",
    "clock",
)
KINDS = ("patient", "dose", "level", "urine", "session")


def _time(row: dict, name: str, path: Path, block: str) -> float | list[float] | None:
    lo, hi = row.get(name, "").strip(), row.get(f"{name}_hi", "").strip()
    if not lo:
        return None
    try:
        values = [float(lo)] + ([float(hi)] if hi else [])
    except ValueError:
        raise CaseError(path, f"not a number of hours: {lo!r}", block, name) from None
    return values if len(values) == 2 else values[0]


def load_tidy_csv(path: str | Path) -> list[Case]:
    """Read every case of a tidy CSV (see the module docstring); the file is only read.

    Raises
    ------
    CaseError
        Naming the file, the row and the column, or the case and field for problems that the
        case validation finds.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseError(path, f"cannot read the file ({exc})") from None
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise CaseError(
            path,
            f"unknown column(s) {', '.join(unknown)}; allowed: {', '.join(COLUMNS)}",
            block="header",
        )
    for required in ("case", "drug", "kind"):
        if required not in header:
            raise CaseError(path, "missing required column", block="header", field=required)
    raws: dict[str, dict] = {}
    for n, row in enumerate(reader, start=2):
        row = {k: (v or "").strip() for k, v in row.items() if k is not None}
        case_id, kind = row.get("case", ""), row.get("kind", "")
        if not case_id:
            raise CaseError(path, "missing case id", block=f"row {n}", field="case")
        if kind not in KINDS:
            raise CaseError(
                path,
                f"kind must be one of {', '.join(KINDS)}, got {kind!r}",
                block=f"row {n}",
                field="kind",
            )
        raw = raws.setdefault(case_id, {"id": case_id, "drug": row.get("drug", "")})
        for meta in ("reference", "doi", "clock"):
            if row.get(meta) and meta not in raw:
                raw[meta] = row[meta]
        quantity = f"{row.get('value', '')} {row.get('unit', '')}".strip()
        start = _time(row, "start", path, f"row {n}")
        if kind == "patient":
            field = row.get("field", "")
            value = row.get("value", "")
            if field == "weight":
                value = quantity
            elif field == "age_years":
                try:
                    value = float(value)
                except ValueError:
                    raise CaseError(
                        path, "age must be a number", block=f"row {n}", field="value"
                    ) from None
            raw.setdefault("patient", {})[field] = value
        elif kind == "dose":
            raw.setdefault("doses", []).append(
                {"time_h": start, "amount": quantity, "route": row.get("route") or "oral"}
            )
        elif kind == "level":
            level = {"time_h": start, "matrix": row.get("matrix") or "plasma"}
            if row.get("lloq"):
                level["lloq"] = f"{row['lloq']} {row.get('unit', '')}"
            if row.get("below_lloq", "").lower() in ("true", "1", "yes"):
                level["below_lloq"] = True
            elif row.get("value"):
                level["value"] = quantity
            raw.setdefault("concentrations", []).append(level)
        else:
            window = {"start_h": start}
            end = _time(row, "end", path, f"row {n}")
            duration = _time(row, "duration", path, f"row {n}")
            if end is not None:
                window["end_h"] = end
            if duration is not None:
                window["duration_h"] = duration
            if kind == "urine":
                window["amount"] = quantity
                raw.setdefault("urine", []).append(window)
            else:
                window["modality"] = row.get("modality", "")
                if row.get("value"):
                    window["recovered"] = quantity
                raw.setdefault("sessions", []).append(window)
    if not raws:
        raise CaseError(path, "no rows")
    return [parse_case(_drop_none(raw), f"{path} (case {cid})") for cid, raw in raws.items()]


def _drop_none(obj):
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj]
    return obj
