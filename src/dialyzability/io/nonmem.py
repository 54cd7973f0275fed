"""NONMEM-style datasets: cases written as the data file pharmacometricians use, and read back.

:func:`write_nonmem` writes one row per event (doses, levels, urine collections, effluent
recoveries and samples, the start and end of each session) in three files:

* ``FILE.csv``: the data, plain CSV with a header row and numbers only (readable by NONMEM with
  ``$INPUT`` and ``IGNORE=@``, by pandas and by pharmpy as it is);
* ``FILE.dictionary.csv``: the data dictionary, one row per column (``COLUMN, MEANING, UNIT,
  CODES``);
* ``FILE.txt``: comments, every line starting with ``#``: each case's identity (a JSON object:
  id, drug, reference, doi, clock, notes, time_zero) and the time ranges (``# TIME ranges:``).

The columns (:data:`COLUMNS`): ``ID`` (1, 2, ... in the order of the cases), ``TIME`` (h on the
case's clock), ``AMT`` (mg), ``RATE`` (0: every dose is a bolus), ``DV``, ``EVID`` (1 dose, 0
observation, 2 the start or end of a session), ``MDV``, ``CMT`` (1 depot: oral doses; 2 central: iv
doses and levels; 3 urine; 4 effluent), ``DVID`` (1 level mg/L, 2 urine amount mg, 3 effluent
amount mg, 4 effluent concentration mg/L, 5 post-filter level mg/L: drawn after the filter, so not
the systemic level a central compartment predicts), ``BLQ`` and ``LLOQ`` (a level below the LLOQ
has BLQ = 1 and DV = its LLOQ), ``TSTART`` (start of a urine collection or of the session of an
effluent recovery; the row's own TIME otherwise), ``VOL`` (urine or effluent volume, L),
``SESSION`` (number of the session of a session row, or of a level drawn at the filter),
``MODALITY``, ``QB``, ``QE`` (blood and effluent flows, L/h), ``MATRIX``, ``SITE`` (a level drawn
from the extracorporeal circuit: 1 pre-filter, 2 post-filter, with its ``SESSION``), and the
patient's ``WT``, ``AGE``, ``SEX``, ``RENAL``, ``HCT`` (haematocrit) on every row. A quantity the
case does not give is :data:`MISSING` (-99); a code it does not give, 0.

A time the case gives as a range is written at its midpoint and listed in ``FILE.txt``; an
anchored time is written in hours. So ranges and anchors do not survive an export:
:func:`read_nonmem` gives every time as a number. Read back, an exported case gives the same
case again (import, export, import is the identity).

Every problem of a file read is a :class:`NonmemError` (a
:class:`~dialyzability.io.case.CaseError`) naming the file, the row and the column.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from dialyzability.io.case import MODALITIES, Case, CaseError, Time, parse_case
from dialyzability.io.files import write_text_whole

#: the data file's columns, in order
COLUMNS = (
    "ID",
    "TIME",
    "AMT",
    "RATE",
    "DV",
    "EVID",
    "MDV",
    "CMT",
    "DVID",
    "BLQ",
    "LLOQ",
    "TSTART",
    "VOL",
    "SESSION",
    "MODALITY",
    "QB",
    "QE",
    "MATRIX",
    "SITE",
    "WT",
    "AGE",
    "SEX",
    "RENAL",
    "HCT",
)
#: the columns a file must have to be read
REQUIRED = ("ID", "TIME", "AMT", "DV", "EVID", "CMT")
#: a quantity that is not given
MISSING = -99.0

DEPOT, CENTRAL, URINE, EFFLUENT = 1, 2, 3, 4
LEVEL, URINE_AMOUNT, EFFLUENT_AMOUNT, EFFLUENT_CONCENTRATION, POST_FILTER_LEVEL = 1, 2, 3, 4, 5
MODALITY_CODES = {m: i for i, m in enumerate(MODALITIES, 1)}
MATRIX_CODES = {"plasma": 1, "serum": 2, "blood": 3}
SITE_CODES = {"pre-filter": 1, "post-filter": 2}
SEX_CODES = {"male": 1, "female": 2}
RENAL_CODES = {"normal": 1, "impaired": 2, "anuric": 3}


def _codes(codes: dict[str, int]) -> str:
    return "; ".join(f"{v} {k}" for k, v in codes.items()) + "; 0 not given"


#: the data dictionary: column -> (meaning, unit, codes)
DICTIONARY: dict[str, tuple[str, str, str]] = {
    "ID": ("case number (the case ids are in FILE.txt)", "", ""),
    "TIME": ("time of the row on the case's clock (a range at its midpoint)", "h", ""),
    "AMT": ("dose amount (dose rows)", "mg", ""),
    "RATE": ("infusion rate; 0, every dose is a bolus", "mg/h", ""),
    "DV": (
        "observed value: level (mg/L; a level below the LLOQ: its LLOQ), urine or effluent "
        "amount (mg), effluent concentration (mg/L); 0 on other rows",
        "see DVID",
        "",
    ),
    "EVID": ("event", "", "0 observation; 1 dose; 2 start or end of a session"),
    "MDV": ("missing dependent variable", "", "0 observation; 1 other rows"),
    "CMT": (
        "compartment",
        "",
        "1 depot (oral doses); 2 central (iv doses, levels); 3 urine; 4 effluent; 0 sessions",
    ),
    "DVID": (
        "kind of observation",
        "",
        "1 level (mg/L); 2 urine amount (mg); 3 effluent amount (mg); "
        "4 effluent concentration (mg/L); 5 post-filter level (mg/L, not the systemic level); "
        "0 not an observation",
    ),
    "BLQ": ("level below the lower limit of quantification", "", "1 below; 0 otherwise"),
    "LLOQ": ("lower limit of quantification of a level (-99 not given)", "mg/L", ""),
    "TSTART": (
        "start of the collection (urine) or of the session (effluent amount); TIME otherwise",
        "h",
        "",
    ),
    "VOL": ("urine or effluent volume (-99 not given)", "L", ""),
    "SESSION": (
        "number of the session of a session row (EVID 2, CMT 4) or of a level with a SITE; "
        "0 otherwise",
        "",
        "",
    ),
    "MODALITY": ("modality of a session row", "", _codes(MODALITY_CODES)),
    "QB": ("blood flow of a session row (-99 not given)", "L/h", ""),
    "QE": (
        "effluent (dialysate or ultrafiltrate) flow of a session row (-99 not given)",
        "L/h",
        "",
    ),
    "MATRIX": ("matrix of a level", "", _codes(MATRIX_CODES)),
    "SITE": (
        "where on the extracorporeal circuit a level was drawn, during its SESSION (a "
        "post-filter level is not the systemic level); 0 a systemic level",
        "",
        _codes(SITE_CODES).removesuffix("; 0 not given"),
    ),
    "WT": ("body weight (-99 not given)", "kg", ""),
    "AGE": ("age (-99 not given)", "years", ""),
    "SEX": ("sex", "", _codes(SEX_CODES)),
    "RENAL": ("kidney function", "", _codes(RENAL_CODES)),
    "HCT": ("haematocrit, a fraction (-99 not given)", "", ""),
}


class NonmemError(CaseError):
    """A NONMEM-style file that cannot be read, naming the file, the row and the column."""


def sidecars(path: str | Path) -> tuple[Path, Path]:
    """The data dictionary and the comments file beside a data file ``FILE.csv``."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lower() == ".csv" else path
    return stem.with_name(stem.name + ".dictionary.csv"), stem.with_name(stem.name + ".txt")


# ------------------------------------------------------------------------------------ writing


def _num(x: float) -> str:
    """A number written so that reading it gives the same float (shortest form)."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def _given(x: float | None) -> float:
    return MISSING if x is None else x


def _rows(case: Case, number: int) -> tuple[list[dict[str, float]], list[str]]:
    """The rows of one case and the lines listing its time ranges."""
    p = case.patient
    patient = {
        "WT": _given(p.weight),
        "AGE": _given(p.age_years),
        "SEX": SEX_CODES.get(p.sex or "", 0),
        "RENAL": RENAL_CODES.get(p.kidney_function or "", 0),
        "HCT": _given(p.haematocrit),
    }
    ranges: list[str] = []

    def when(t: Time, name: str) -> float:
        if t.is_range:
            what = f" = {t.offset_text}" if t.anchor else ""
            ranges.append(f"#   ID {number} {name}{what}: [{t.lo:g}, {t.hi:g}] h -> {t.mid:g} h")
        return t.mid

    rows: list[tuple[float, int, int, dict[str, float]]] = []

    def row(time: float, order: int, **values: float) -> None:
        base = dict.fromkeys(COLUMNS, 0.0)
        base.update(ID=number, TIME=time, TSTART=time, MDV=1, LLOQ=MISSING, VOL=MISSING)
        base.update(QB=MISSING, QE=MISSING, **patient)
        base.update(values)
        rows.append((time, order, len(rows), base))

    for i, d in enumerate(case.doses, 1):
        cmt = DEPOT if d.route == "oral" else CENTRAL
        row(when(d.time_h, f"dose{i}"), 3, AMT=d.amount, EVID=1, CMT=cmt)
    for i, c in enumerate(case.concentrations, 1):
        dv = c.lloq if c.below_lloq else c.value
        if dv is None:  # a validated case always has one; say so if not
            raise CaseError(
                case.source, "a level needs a value or its LLOQ", "concentrations", "value", i
            )
        row(
            when(c.time_h, f"level{i}"),
            0,
            DV=dv,
            MDV=0,
            CMT=CENTRAL,
            DVID=POST_FILTER_LEVEL if c.post_filter else LEVEL,
            BLQ=int(c.below_lloq),
            LLOQ=_given(c.lloq),
            MATRIX=MATRIX_CODES[c.matrix],
            SITE=SITE_CODES.get(c.site or "", 0),
            SESSION=c.session or 0,
        )
    for i, u in enumerate(case.urine, 1):
        start, end = when(u.start_h, f"urine{i}.start"), when(u.end, f"urine{i}.end")
        if u.recovered is None:
            raise CaseError(
                case.source, "a urine collection needs its amount", "urine", "amount", i
            )
        row(
            end,
            0,
            DV=u.recovered,
            MDV=0,
            CMT=URINE,
            DVID=URINE_AMOUNT,
            TSTART=start,
            VOL=_given(u.volume),
        )
    for i, s in enumerate(case.sessions, 1):
        session = {
            "SESSION": i,
            "MODALITY": MODALITY_CODES[s.modality],
            "QB": _given(s.blood_flow),
            "QE": _given(s.effluent_flow),
        }
        start, end = when(s.start_h, f"session{i}.start"), when(s.end, f"session{i}.end")
        row(start, 2, EVID=2, **session)
        row(end, 1, EVID=2, TSTART=start, **session)
        if s.amount is not None:
            row(
                end,
                0,
                DV=s.amount,
                MDV=0,
                CMT=EFFLUENT,
                DVID=EFFLUENT_AMOUNT,
                TSTART=start,
                VOL=_given(s.effluent_volume),
                **session,
            )
        for j, e in enumerate(s.effluent_samples, 1):
            t = when(e.time_h, f"session{i} effluent sample {j}")
            row(
                t,
                0,
                DV=e.concentration,
                MDV=0,
                CMT=EFFLUENT,
                DVID=EFFLUENT_CONCENTRATION,
                **session,
            )
    # NONMEM wants time order; at one time: observations, then session ends and starts, then
    # doses (a level at the time of a dose is taken before it)
    rows.sort(key=lambda r: r[:3])
    return [r[3] for r in rows], ranges


def _identity(case: Case) -> dict[str, Any]:
    out = {
        "id": case.id,
        "drug": case.drug,
        "reference": case.reference,
        "doi": case.doi,
        "clock": case.clock,
        "notes": case.notes,
    }
    if case.time_zero is not None:
        out["time_zero"] = case.time_zero.isoformat()
    return out


def nonmem_text(cases: list[Case]) -> tuple[str, str, str]:
    """The three files of :func:`write_nonmem` as text: data, dictionary, comments."""
    data = io.StringIO()
    writer = csv.writer(data, lineterminator="\n")
    writer.writerow(COLUMNS)
    comments = [
        "# dialyzability NONMEM-style dataset: one row per event; columns, meanings and units "
        "in the .dictionary.csv beside it.",
        "# Times are hours on each case's clock; amounts mg, concentrations mg/L, volumes L, "
        "flows L/h; -99: not given.",
    ]
    ranges: list[str] = []
    for number, case in enumerate(cases, 1):
        rows, case_ranges = _rows(case, number)
        for r in rows:
            writer.writerow([_num(r[c]) for c in COLUMNS])
        comments.append(f"# CASE {number}: {json.dumps(_identity(case), ensure_ascii=False)}")
        ranges += case_ranges
    comments.append(
        "# TIME ranges: the times below are ranges in the case files, written at their "
        "midpoint (the ranges, and anchors to other events, are not kept in this dataset)"
        + ("" if ranges else ": none")
    )
    comments += ranges
    dictionary = io.StringIO()
    out = csv.writer(dictionary, lineterminator="\n")
    out.writerow(["COLUMN", "MEANING", "UNIT", "CODES"])
    for column in COLUMNS:
        out.writerow([column, *DICTIONARY[column]])
    return data.getvalue(), dictionary.getvalue(), "\n".join(comments) + "\n"


def write_nonmem(cases: Case | list[Case], path: str | Path) -> list[Path]:
    """Write cases as a NONMEM-style dataset ``path`` (``FILE.csv``) with its data dictionary
    ``FILE.dictionary.csv`` and comments ``FILE.txt`` (see the module docstring). Each file is
    written whole or not at all. Returns the three paths."""
    cases = [cases] if isinstance(cases, Case) else list(cases)
    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise CaseError(path, "the NONMEM-style dataset must be a .csv file")
    data, dictionary, comments = nonmem_text(cases)
    dictionary_path, comments_path = sidecars(path)
    return [
        write_text_whole(path, data),
        write_text_whole(dictionary_path, dictionary),
        write_text_whole(comments_path, comments),
    ]


# ------------------------------------------------------------------------------------ reading


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NonmemError(path, f"cannot read the file ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NonmemError(path, "not a UTF-8 text file") from None


def _identities(path: Path) -> dict[int, dict[str, Any]]:
    """Each case's identity from the comments file beside ``path``, if there is one."""
    _, comments = sidecars(path)
    if not comments.is_file():
        return {}
    out: dict[int, dict[str, Any]] = {}
    for n, line in enumerate(_read_text(comments).splitlines(), 1):
        if not line.startswith("# CASE "):
            continue
        head, _, body = line[len("# CASE ") :].partition(":")
        try:
            number = int(head)
            identity = json.loads(body)
        except (ValueError, RecursionError):
            raise NonmemError(
                comments, f"cannot read the case identity ({line[:60]!r})", f"line {n}"
            ) from None
        if not isinstance(identity, dict):
            raise NonmemError(comments, "a case identity must be a JSON object", f"line {n}")
        out[number] = identity
    return out


def _table(path: Path) -> tuple[list[str], list[tuple[int, dict[str, float | None]]]]:
    """Header and numeric rows (with their line numbers) of a data file."""
    text = _read_text(path)
    lines = [
        (n, line)
        for n, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise NonmemError(path, "no header row and no data")
    parsed = []
    for n, line in lines:
        try:
            parsed.append(next(csv.reader([line]), []))
        except csv.Error as exc:
            raise NonmemError(path, f"not a CSV row ({exc})", f"row {n}") from None
    header = [h.strip().upper() for h in parsed[0]]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise NonmemError(
            path,
            f"missing column(s) {', '.join(missing)}; the header is {','.join(header)[:120]!r}",
            f"row {lines[0][0]}",
        )
    if len(set(header)) != len(header):
        raise NonmemError(path, "a column name is repeated in the header", f"row {lines[0][0]}")
    rows = []
    for (n, _), fields in zip(lines[1:], parsed[1:], strict=True):
        if len(fields) != len(header):
            raise NonmemError(
                path, f"{len(fields)} fields, the header has {len(header)}", f"row {n}"
            )
        values: dict[str, float | None] = {}
        for column, field in zip(header, fields, strict=True):
            field = field.strip()
            if field in ("", "."):
                values[column] = None
                continue
            try:
                value = float(field)
            except ValueError:
                raise NonmemError(
                    path, f"not a number: {field[:40]!r}", f"row {n}", column
                ) from None
            if not math.isfinite(value):
                raise NonmemError(path, f"not a finite number: {field[:40]!r}", f"row {n}", column)
            values[column] = value
        rows.append((n, values))
    if not rows:
        raise NonmemError(path, "no data rows")
    return header, rows


def _shown(x: float | None) -> str:
    return "nothing" if x is None else f"{x:g}"


def _get(row: dict[str, float | None], column: str, default: float | None = None) -> float | None:
    value = row.get(column)
    return default if value is None else value


def _code(path, n, row, column, codes: dict[str, int]) -> str | None:
    value = _get(row, column, 0)
    if value == 0:
        return None
    names = {v: k for k, v in codes.items()}
    if value not in names:
        raise NonmemError(
            path, f"unknown code {value:g} (codes: {_codes(codes)})", f"row {n}", column
        )
    return names[int(value)]


def _integer(path, n, row, column) -> int:
    value = _get(row, column)
    if value is None or value != int(value) or value < 1 or value > 1e9:
        raise NonmemError(
            path, f"must be a whole number from 1, got {_shown(value)}", f"row {n}", column
        )
    return int(value)


def _quantity(value: float | None, unit: str) -> str | None:
    if value is None or value == MISSING:
        return None
    return f"{_num(value)} {unit}"


def _case_raw(path: Path, number: int, rows, identity: dict[str, Any], drug: str | None) -> dict:
    """The raw case (as a case file gives it) of the rows of one ID."""
    raw: dict[str, Any] = {}
    for key in ("id", "reference", "doi", "clock", "notes", "time_zero"):
        if key in identity:
            raw[key] = identity[key]
    raw.setdefault("id", f"{path.stem}-{number}")
    raw["drug"] = drug if drug is not None else identity.get("drug")
    if raw["drug"] is None:
        raise NonmemError(
            path,
            f"ID {number}: the drug is not in the files; give it (read_nonmem(path, drug=...))",
        )
    n, first = rows[0]
    patient = {
        "weight": _quantity(_get(first, "WT"), "kg"),
        "age_years": None if _get(first, "AGE", MISSING) == MISSING else first["AGE"],
        "sex": _code(path, n, first, "SEX", SEX_CODES),
        "kidney_function": _code(path, n, first, "RENAL", RENAL_CODES),
        "haematocrit": None if _get(first, "HCT", MISSING) == MISSING else first["HCT"],
    }
    raw["patient"] = {k: v for k, v in patient.items() if v is not None}
    doses, levels, urine = [], [], []
    sessions: dict[int, dict[str, Any]] = {}
    where: dict[int, int] = {}

    def session(n, row) -> dict[str, Any]:
        k = _integer(path, n, row, "SESSION")
        where.setdefault(k, n)
        return sessions.setdefault(k, {"times": [], "samples": []})

    for n, row in rows:
        time, evid, cmt = row["TIME"], row["EVID"], row["CMT"]
        if time is None:
            raise NonmemError(path, "missing time", f"row {n}", "TIME")
        if evid == 1:
            if cmt not in (DEPOT, CENTRAL):
                raise NonmemError(
                    path,
                    f"a dose goes to CMT 1 (oral) or 2 (iv), got {_shown(cmt)}",
                    f"row {n}",
                    "CMT",
                )
            if _get(row, "RATE", 0) != 0:
                raise NonmemError(path, "infusions are not supported (RATE 0)", f"row {n}", "RATE")
            amount = _quantity(_get(row, "AMT"), "mg")
            if amount is None:
                raise NonmemError(path, "a dose needs its amount", f"row {n}", "AMT")
            doses.append(
                {"time_h": time, "amount": amount, "route": "oral" if cmt == DEPOT else "iv"}
            )
        elif evid == 2:
            s = session(n, row)
            modality = _code(path, n, row, "MODALITY", MODALITY_CODES)
            if modality is None:
                raise NonmemError(path, "a session row needs its modality", f"row {n}", "MODALITY")
            if s.setdefault("modality", modality) != modality:
                raise NonmemError(
                    path,
                    "the modality differs from the session's other rows",
                    f"row {n}",
                    "MODALITY",
                )
            s["times"].append((n, time))
            for column, field in (("QB", "blood_flow"), ("QE", "effluent_flow")):
                flow = _quantity(_get(row, column), "L/h")
                if flow is not None:
                    s[field] = flow
        elif evid == 0:
            if _get(row, "MDV", 0) == 1:
                continue  # not an observation
            dv = _get(row, "DV")
            if dv is None:
                raise NonmemError(path, "an observation needs its value", f"row {n}", "DV")
            dvid = _get(row, "DVID")
            if cmt == CENTRAL and dvid in (None, LEVEL, POST_FILTER_LEVEL):
                level: dict[str, Any] = {"time_h": time}
                matrix = _code(path, n, row, "MATRIX", MATRIX_CODES)
                if matrix is not None:
                    level["matrix"] = matrix
                site = _code(path, n, row, "SITE", SITE_CODES)
                if (dvid == POST_FILTER_LEVEL) != (site == "post-filter"):
                    got = f"SITE {_shown(_get(row, 'SITE'))} with DVID {_shown(dvid)}"
                    raise NonmemError(
                        path,
                        f"a post-filter level is DVID 5 with SITE 2, got {got}",
                        f"row {n}",
                        "SITE",
                    )
                if site is not None:
                    level.update(site=site, session=_integer(path, n, row, "SESSION"))
                lloq = _quantity(_get(row, "LLOQ"), "mg/L")
                blq = _get(row, "BLQ", 0)
                if blq not in (0, 1):
                    raise NonmemError(path, f"must be 0 or 1, got {blq:g}", f"row {n}", "BLQ")
                if blq == 1:
                    level.update(below_lloq=True, lloq=lloq or f"{_num(dv)} mg/L")
                else:
                    level["value"] = f"{_num(dv)} mg/L"
                    if lloq is not None:
                        level["lloq"] = lloq
                levels.append(level)
            elif cmt == URINE and dvid in (None, URINE_AMOUNT):
                u = {
                    "start_h": _get(row, "TSTART", time),
                    "end_h": time,
                    "amount": f"{_num(dv)} mg",
                }
                volume = _quantity(_get(row, "VOL"), "L")
                if volume is not None:
                    u["volume"] = volume
                urine.append(u)
            elif cmt == EFFLUENT and dvid in (None, EFFLUENT_AMOUNT):
                s = session(n, row)
                if "recovered" in s:
                    raise NonmemError(path, "a second recovery of this session", f"row {n}", "DV")
                s["recovered"] = f"{_num(dv)} mg"
                volume = _quantity(_get(row, "VOL"), "L")
                if volume is not None:
                    s["effluent_volume"] = volume
            elif cmt == EFFLUENT and dvid == EFFLUENT_CONCENTRATION:
                s = session(n, row)
                s["samples"].append({"time_h": time, "concentration": f"{_num(dv)} mg/L"})
            else:
                raise NonmemError(
                    path,
                    f"an observation of CMT {_shown(cmt)} with DVID "
                    f"{_shown(dvid)} is not a level (CMT 2, DVID 1 or 5), "
                    "urine (CMT 3, DVID 2) or effluent (CMT 4, DVID 3 or 4)",
                    f"row {n}",
                    "CMT",
                )
        else:
            raise NonmemError(
                path,
                f"EVID must be 0, 1 or 2 (resets are not supported), got {_shown(evid)}",
                f"row {n}",
                "EVID",
            )
    out_sessions = []
    for k in sorted(sessions):
        s = sessions[k]
        times = sorted(t for _, t in s.pop("times"))
        if len(times) != 2:
            raise NonmemError(
                path,
                f"session {k} needs two EVID 2 rows (its start and its end), found {len(times)}",
                f"row {where[k]}",
                "SESSION",
            )
        samples = s.pop("samples")
        entry = {"modality": s.pop("modality"), "start_h": times[0], "end_h": times[1], **s}
        if samples:
            entry["effluent_samples"] = samples
        out_sessions.append(entry)
    for key, block in (
        ("doses", doses),
        ("concentrations", levels),
        ("urine", urine),
        ("sessions", out_sessions),
    ):
        if block:
            raw[key] = block
    return raw


def read_nonmem(path: str | Path, drug: str | None = None) -> list[Case]:
    """Read a NONMEM-style dataset (as :func:`write_nonmem` writes it) into cases, one per ID.

    Parameters
    ----------
    path
        The data file (``FILE.csv``). The case identities (id, drug, reference, clock, ...) are
        read from ``FILE.txt`` beside it when there is one; otherwise a case is named
        ``FILE-ID``. Only read, never written.
    drug
        The drug of every case (a model in ``models/``); default: each case's drug in
        ``FILE.txt``.

    Raises
    ------
    NonmemError
        Naming the file, the row and the column of the first problem (a problem with a case as
        a whole, such as a recovery larger than the dose, is a CaseError naming the ID).
    """
    path = Path(path)
    _, rows = _table(path)
    identities = _identities(path)
    by_id: dict[float, list] = {}
    for n, row in rows:
        if row.get("ID") is None:
            raise NonmemError(path, "missing ID", f"row {n}", "ID")
        by_id.setdefault(row["ID"], []).append((n, row))
    cases = []
    for key, id_rows in by_id.items():
        number = int(key) if key == int(key) else key
        identity = identities.get(number, {}) if isinstance(number, int) else {}
        raw = _case_raw(path, number, id_rows, identity, drug)
        cases.append(parse_case(raw, f"{path} (ID {number})"))
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise NonmemError(path, "two IDs have the same case id in the comments file")
    return cases
