"""Case files: the data of one poisoning case report, with units, read from TOML.

A case file describes the patient, the doses, the measured levels, the timed urine collections and
the extracorporeal sessions (see the README for the format). Quantities are strings with units and
are normalised to canonical units (h, mg, L, mg/L, L/h, kg). A time that the report gives only
vaguely is a range ``[lo, hi]``, kept as a :class:`Time` so the model can treat it as unknown.

Every problem of a file is reported, all together, as a :class:`CaseError` holding one
:class:`Problem` each (file, block, index, field, message). :func:`load_cases` is the one loader
of every command: case files (TOML) and tidy CSV files (:mod:`dialyzability.io.tidy`), each read
by its extension, and folders of case files. Input files are only read, never written.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
)

from dialyzability.io.drugs import DrugModelError, load_drug
from dialyzability.io.units import Kind, UnitError, parse_quantity

Modality = Literal["HD", "HDF", "CVVH", "CVVHD", "CVVHDF", "HP", "PD"]
MODALITIES: tuple[str, ...] = Modality.__args__
KidneyFunction = Literal["normal", "impaired", "anuric"]
BLOCKS = ("patient", "doses", "concentrations", "urine", "sessions")
_LIST_BLOCKS = BLOCKS[1:]


@dataclass(frozen=True)
class Problem:
    """One problem of an input file, at a place.

    Attributes
    ----------
    file
        The file (or option) at fault.
    message
        What is wrong.
    block
        ``"patient"``, ``"doses"``, ``"concentrations"``, ``"urine"``, ``"sessions"`` in a case
        file; ``"row"`` or ``"header"`` in a tidy CSV; empty for the whole file.
    index
        1-based position in the block (the n-th session, the CSV's row number), if any.
    field
        The field (CSV: the column), e.g. ``"modality"`` or ``"effluent_samples[2].time_h"``.
    """

    file: str
    message: str
    block: str = ""
    index: int | None = None
    field: str = ""

    @property
    def where(self) -> str:
        """``sessions[1].modality``, ``patient.weight``, ``row[7].unit``, ``drug``, or ``""``."""
        head = self.block + (f"[{self.index}]" if self.index is not None else "")
        return ".".join(p for p in (head, self.field) if p)

    def line(self) -> str:
        """``file: block[index].field: message``."""
        return f"{self.file}: {self.where + ': ' if self.where else ''}{self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "block": self.block,
            "index": self.index,
            "field": self.field,
            "message": self.message,
        }

    def labels(self) -> tuple[str, str]:
        """(block, field) as a case file writes them: ``("[[sessions]] #2", "start_h")``,
        ``("[patient]", "weight")``, ``("row 7", "unit")``."""
        block, field = self.block, self.field
        sample = re.match(r"effluent_samples\[(\d+)\]\.?(.*)$", field)
        if block in _LIST_BLOCKS and self.index is not None:
            label = f"[[{block}]] #{self.index}"
            if sample:
                label += f" effluent_samples #{sample[1]}"
                field = sample[2]
        elif block == "patient":
            label = "[patient]"
        elif block and all(b in _LIST_BLOCKS for b in block.split(" and ")):
            label = " and ".join(f"[[{b}]]" for b in block.split(" and "))
        else:
            label = f"{block} {self.index}" if self.index is not None else block
        return label, field


class CaseError(ValueError):
    """Input that cannot be used: every :class:`Problem` found, each with its place.

    Raised with one problem (``CaseError(path, message, block, field, index)``) or with all of
    them (``CaseError.of(problems)``); the message has one line per problem.

    Attributes
    ----------
    problems
        Every problem, in the order found (possibly over several files).
    path, block, field, reason
        The first problem's file, block and field (as a case file writes them, e.g.
        ``"[[sessions]] #2"``) and message.
    """

    def __init__(
        self,
        path: str | Path,
        message: str = "",
        block: str = "",
        field: str = "",
        index: int | None = None,
        *,
        problems: Iterable[Problem] = (),
    ):
        self.problems = list(problems) or [Problem(str(path), message, block, index, field)]
        first = self.problems[0]
        self.path, self.reason = first.file, first.message
        self.block, self.field = first.labels()
        super().__init__("\n".join(p.line() for p in self.problems))

    @classmethod
    def of(cls, problems: Iterable[Problem]) -> CaseError:
        problems = list(problems)
        return cls(problems[0].file, problems=problems)

    def by_file(self) -> dict[str, list[Problem]]:
        """The problems grouped by file, files in the order found."""
        out: dict[str, list[Problem]] = {}
        for p in self.problems:
            out.setdefault(p.file, []).append(p)
        return out


class Time(BaseModel):
    """A time on the case's clock in hours: a known value (``lo == hi``) or a range.

    A range means the report does not give the time exactly; the model treats it as uniform
    on ``[lo, hi]``.
    """

    model_config = ConfigDict(frozen=True)
    lo: float
    hi: float

    @property
    def is_range(self) -> bool:
        return self.hi > self.lo

    @property
    def mid(self) -> float:
        return 0.5 * (self.lo + self.hi)

    def __add__(self, other: Time) -> Time:
        return Time(lo=self.lo + other.lo, hi=self.hi + other.hi)

    def __str__(self) -> str:
        return f"{self.lo:g}-{self.hi:g} h (range)" if self.is_range else f"{self.lo:g} h"

    def to_json(self) -> float | list[float]:
        return [self.lo, self.hi] if self.is_range else self.lo


# ---------------------------------------------------------------- field parsers (raise ValueError)


def _number(x: Any, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise ValueError(f"{what} must be a number of hours, got {x!r}")
    value = float(x)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number of hours, got {x!r}")
    return value


def _time(x: Any, positive: bool = False) -> Time:
    if isinstance(x, Time):
        return x
    what = "a duration" if positive else "a time"
    if isinstance(x, list):
        if len(x) != 2:
            raise ValueError(f"a range must be [lo, hi] with two numbers, got {x!r}")
        lo, hi = (_number(v, what) for v in x)
        if lo > hi:
            raise ValueError(f"range [{lo:g}, {hi:g}] has lo > hi")
    else:
        lo = hi = _number(x, what)
    if positive and lo <= 0:
        raise ValueError(f"a duration must be positive, got {x!r}")
    return Time(lo=lo, hi=hi)


def _quantity(kind: Kind):
    def parse(x: Any, info: ValidationInfo) -> float:
        molar_mass = (info.context or {}).get("molar_mass")
        try:
            return parse_quantity(x, kind, molar_mass)
        except UnitError as exc:
            raise ValueError(str(exc)) from None

    return BeforeValidator(parse)


TimeH = Annotated[Time, BeforeValidator(_time)]
DurationH = Annotated[Time, BeforeValidator(lambda x: _time(x, positive=True))]
Mass = Annotated[float, _quantity("mass")]
Volume = Annotated[float, _quantity("volume")]
Concentration = Annotated[float, _quantity("concentration")]
Flow = Annotated[float, _quantity("flow")]
Weight = Annotated[float, _quantity("weight")]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Patient(_Block):
    """The patient; every field optional. Weight in kg."""

    weight: Weight | None = None
    age_years: Annotated[float, Field(ge=0, le=130, allow_inf_nan=False, strict=True)] | None = None
    sex: Literal["female", "male"] | None = None
    kidney_function: KidneyFunction | None = None


class Dose(_Block):
    """One dose: amount in mg at ``time_h``; oral doses go through the gut, iv into plasma."""

    time_h: TimeH
    amount: Mass
    route: Literal["oral", "iv"] = "oral"


class Level(_Block):
    """A measured drug level (mg/L); ``below_lloq`` means it was below ``lloq`` (mg/L)."""

    time_h: TimeH
    value: Concentration | None = None
    matrix: Literal["plasma", "serum", "blood"] = "plasma"
    lloq: Concentration | None = None
    below_lloq: Annotated[bool, Field(strict=True)] = False


class Window(_Block):
    """Shared start/end handling of urine collections and sessions."""

    start_h: TimeH
    end_h: TimeH | None = None
    duration_h: DurationH | None = None

    @property
    def end(self) -> Time:
        if self.end_h is not None:
            return self.end_h
        assert self.duration_h is not None
        return self.start_h + self.duration_h


class Urine(Window):
    """A timed urine collection: the amount of drug (mg) over ``[start_h, end_h]``.

    Give ``amount``, or ``concentration`` and ``volume`` (then amount = concentration x volume).
    """

    amount: Mass | None = None
    concentration: Concentration | None = None
    volume: Volume | None = None

    @property
    def recovered(self) -> float | None:
        if self.amount is not None:
            return self.amount
        if self.concentration is not None and self.volume is not None:
            return self.concentration * self.volume
        return None


class EffluentSample(_Block):
    """Drug concentration in the effluent (spent dialysate or ultrafiltrate) at a time."""

    time_h: TimeH
    concentration: Concentration


class Session(Window):
    """One extracorporeal treatment session.

    ``recovered`` is the drug amount found in the whole effluent (mg); or give
    ``effluent_concentration`` and ``effluent_volume``. Sessions without a recovery still act on
    the kinetics.
    """

    modality: Modality
    recovered: Mass | None = None
    effluent_concentration: Concentration | None = None
    effluent_volume: Volume | None = None
    blood_flow: Flow | None = None
    effluent_flow: Flow | None = None
    effluent_samples: list[EffluentSample] = Field(default_factory=list)

    @property
    def amount(self) -> float | None:
        if self.recovered is not None:
            return self.recovered
        if self.effluent_concentration is not None and self.effluent_volume is not None:
            return self.effluent_concentration * self.effluent_volume
        return None


_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _case_id(x: Any) -> str:
    if not isinstance(x, str) or not _ID.match(x):
        raise ValueError(
            f"id must be letters, digits, '.', '_' or '-' (it names output files), got {x!r}"
        )
    return x


class Case(_Block):
    """One case report, normalised to canonical units (h, mg, L, mg/L, L/h, kg)."""

    id: Annotated[str, BeforeValidator(_case_id)]
    drug: Annotated[str, Field(min_length=1, strict=True)]
    reference: Annotated[str, Field(strict=True)] = ""
    doi: Annotated[str, Field(strict=True)] = ""
    clock: Annotated[str, Field(strict=True)] = "hours since ingestion"
    notes: Annotated[str, Field(strict=True)] = ""
    patient: Patient = Field(default_factory=Patient)
    doses: list[Dose] = Field(default_factory=list)
    concentrations: list[Level] = Field(default_factory=list)
    urine: list[Urine] = Field(default_factory=list)
    sessions: list[Session] = Field(default_factory=list)
    source: str = Field(default="", exclude=True)
    _raw: dict = PrivateAttr(default_factory=dict)

    @property
    def raw(self) -> dict[str, Any]:
        """The case as read from its file, before normalisation (for provenance)."""
        return self._raw

    @property
    def total_dose(self) -> float | None:
        """Sum of the doses in mg, or None when the case gives no dose."""
        return sum(d.amount for d in self.doses) if self.doses else None

    @property
    def modalities(self) -> list[str]:
        """Modalities used, in order of first appearance."""
        return list(dict.fromkeys(s.modality for s in self.sessions))

    @property
    def kidney_function(self) -> str:
        """The kidney-function class; ``normal`` when the case does not say."""
        return self.patient.kidney_function or "normal"

    def to_json(self) -> dict[str, Any]:
        """Normalised case as plain JSON types (canonical units, ranges as [lo, hi])."""

        def conv(obj: Any) -> Any:
            if isinstance(obj, Time):
                return obj.to_json()
            if isinstance(obj, BaseModel):
                return {
                    k: conv(getattr(obj, k))
                    for k in type(obj).model_fields
                    if getattr(obj, k) is not None and k != "source"
                }
            if isinstance(obj, list):
                return [conv(v) for v in obj]
            return obj

        out = conv(self)
        out["units"] = {
            "time": "h",
            "amount": "mg",
            "concentration": "mg/L",
            "volume": "L",
            "flow": "L/h",
            "weight": "kg",
        }
        return out


# ------------------------------------------------------------------------------------ loading


def _where(loc: tuple[Any, ...]) -> tuple[str, int | None, str]:
    """Turn a pydantic error location into (block, 1-based index, field) for a message."""
    parts = list(loc)
    block, index = "", None
    if parts and parts[0] in _LIST_BLOCKS:
        block = parts.pop(0)
        if not (parts and isinstance(parts[0], int)):
            return block, None, ""
        index = parts.pop(0) + 1
    elif parts and parts[0] == "patient":
        block = parts.pop(0)
    field = ""
    for p in parts:
        field += f"[{p + 1}]" if isinstance(p, int) else ("." if field else "") + str(p)
    return block, index, field


def _message(err: dict[str, Any], model: type[BaseModel] | None) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = ", ".join(sorted(model.model_fields)) if model else ""
        return f"unknown field (a typo?); allowed fields: {allowed}"
    if kind == "missing":
        return "missing required field"
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if kind in ("model_type", "model_attributes_type", "list_type", "dict_type"):
        return f"{msg} (got {err.get('input')!r:.60})"
    if kind in ("literal_error",):
        return f"{msg}, got {err.get('input')!r:.40}"
    return msg


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The block model whose field list is relevant for an error at ``loc``."""
    model: type[BaseModel] | None = Case
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        model = next(
            (a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None
        )
    return model


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CaseError(path, f"cannot read the file ({exc.strerror or exc})") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise CaseError(path, "not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as exc:
        raise CaseError(path, f"invalid TOML: {exc}") from None
    except RecursionError:
        raise CaseError(path, "invalid TOML: nested too deeply") from None


def parse_case(raw: dict[str, Any], path: str | Path = "<case>") -> Case:
    """Validate a case given as a dict (as read from TOML) and normalise its units.

    Raises
    ------
    CaseError
        With every problem found, each naming ``path``, the block, its index and the field.
    """
    if not isinstance(raw, dict):
        raise CaseError(path, "a case file must be a TOML table")
    path = str(path)
    problems: list[Problem] = []
    molar_mass = None
    drug_name = raw.get("drug")
    if not isinstance(drug_name, str) or not drug_name.strip():
        problems.append(
            Problem(path, 'missing required field (the drug, e.g. drug = "baclofen")', field="drug")
        )
    else:
        try:
            molar_mass = load_drug(drug_name).molar_mass
        except DrugModelError as exc:
            problems.append(Problem(path, str(exc), field="drug"))
    drug_known = not problems
    raw = dict(raw)
    raw.setdefault("id", Path(path).stem)
    try:
        case = Case.model_validate(raw, context={"molar_mass": molar_mass}, strict=False)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            message = _message(err, _model_at(loc))
            if not drug_known and (loc == ("drug",) or "molar quantity" in message):
                continue  # said once already; molar units wait for a known drug
            problems.append(Problem(path, message, *_where(loc)))
        problems += _check_consistency(_partial(raw, {"molar_mass": molar_mass}), path)
        raise CaseError.of(problems) from None
    case = case.model_copy(update={"source": path})
    problems += _check_consistency(case, path)
    if problems:
        raise CaseError.of(problems)
    case._raw = raw
    return case


def _entries(case, name: str) -> list[tuple[int, Any]]:
    """(1-based index, entry) of a block's entries that passed validation."""
    return [(i, e) for i, e in enumerate(getattr(case, name), start=1) if e is not None]


def _partial(raw: dict[str, Any], context: dict) -> SimpleNamespace:
    """The blocks of a case that failed validation, validated entry by entry (``None`` for an
    entry that fails), so that the checks across fields still run on the rest."""
    blocks = {}
    for name in _LIST_BLOCKS:
        model = Case.model_fields[name].annotation.__args__[0]
        entries = raw.get(name)
        blocks[name] = []
        for entry in entries if isinstance(entries, list) else []:
            try:
                blocks[name].append(model.model_validate(entry, context=context))
            except ValidationError:
                blocks[name].append(None)
    return SimpleNamespace(**blocks)


def _check_consistency(case: Case | SimpleNamespace, path: str) -> list[Problem]:
    """Checks across fields and blocks, after units are normalised: every problem found. On a
    case that failed validation (:func:`_partial`) they check the entries that passed."""
    problems: list[Problem] = []

    def fail(message: str, block: str = "", index: int | None = None, field: str = "") -> None:
        problems.append(Problem(path, message, block, index, field))

    for name in ("urine", "sessions"):
        for i, w in _entries(case, name):
            if w.end_h is None and w.duration_h is None:
                fail("missing required field: give end_h or duration_h", name, i, "end_h")
            if w.end_h is not None and w.duration_h is not None:
                fail("give end_h or duration_h, not both", name, i, "duration_h")
            if w.end_h is not None and w.end_h.lo <= w.start_h.hi:
                fail(
                    f"ends before it starts (end {w.end_h}, start {w.start_h}); when the start "
                    "is a range, give duration_h instead of end_h",
                    name,
                    i,
                    "end_h",
                )
    for i, u in _entries(case, "urine"):
        if u.recovered is None:
            fail("missing: give amount, or concentration and volume", "urine", i, "amount")
    for i, s in _entries(case, "sessions"):
        if (s.effluent_concentration is None) != (
            s.effluent_volume is None
        ) and s.recovered is None:
            field = "effluent_volume" if s.effluent_volume is None else "effluent_concentration"
            fail(
                "effluent_concentration needs effluent_volume (or give recovered)",
                "sessions",
                i,
                field,
            )
    for i, c in _entries(case, "concentrations"):
        if c.below_lloq and c.lloq is None:
            fail("below_lloq = true needs the lloq", "concentrations", i, "lloq")
        if not c.below_lloq and c.value is None:
            fail(
                "missing required field (or set below_lloq = true with lloq)",
                "concentrations",
                i,
                "value",
            )
        if not c.below_lloq and c.value == 0:
            fail(
                "a level of zero: write it as below_lloq = true with its lloq",
                "concentrations",
                i,
                "value",
            )
    timed = [
        (i, s)
        for i, s in _entries(case, "sessions")
        if s.end_h is not None or s.duration_h is not None
    ]
    for n, (i, a) in enumerate(timed):
        for j, b in timed[n + 1 :]:
            # certainly overlapping, whatever the values inside the ranges
            if a.start_h.hi < b.end.lo and b.start_h.hi < a.end.lo:
                fail(
                    f"overlaps session #{i} ({a.start_h} to {a.end}) with ({b.start_h} to {b.end})",
                    "sessions",
                    j,
                    "start_h",
                )
    doses = case.doses
    known = doses and None not in doses  # the total dose, unless a dose failed validation
    total = sum(d.amount for d in doses) if known else None
    if total is not None:
        recovered = 0.0
        for name, field in (("urine", "amount"), ("sessions", "recovered")):
            for i, w in _entries(case, name):
                amount = w.recovered if name == "urine" else w.amount
                if amount is None:
                    continue
                recovered += amount
                if amount > total:
                    fail(
                        f"recovered {amount:g} mg is more than the total dose {total:g} mg",
                        name,
                        i,
                        field,
                    )
        if recovered > total and not any(p.message.startswith("recovered") for p in problems):
            fail(
                f"urine and effluent recoveries add up to {recovered:g} mg, more than the total "
                f"dose {total:g} mg",
                "urine and sessions",
            )
    return problems


#: the case formats, by file extension: TOML (one case a file) and the tidy sheet
#: (:mod:`dialyzability.io.tidy`, any number of cases)
FORMATS = {".toml": "case file", ".csv": "tidy CSV", ".xlsx": "tidy workbook"}


def load_file(path: str | Path) -> list[Case]:
    """Every case of one input file, read by its extension (:data:`FORMATS`; anything else is
    read as TOML). The file is only read.

    Raises
    ------
    CaseError
        With every problem of the file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".xlsx"):
        from dialyzability.io.tidy import load_tidy

        return load_tidy(path)
    return [parse_case(_read_toml(path), path)]


def load_case(path: str | Path) -> Case:
    """Read, validate and normalise the one case of a file.

    Parameters
    ----------
    path
        A TOML case file, or a tidy CSV (or workbook) holding one case. It is only read.

    Raises
    ------
    CaseError
        With every problem of the file, each naming the file, block, index and field; or when
        a tidy file holds several cases (naming them).
    """
    cases = load_file(path)
    if len(cases) != 1:
        ids = ", ".join(c.id for c in cases)
        raise CaseError(
            path, f"holds {len(cases)} cases ({ids}); give a file of one case, or pool them"
        )
    return cases[0]


def load_cases(paths: str | Path | Iterable[str | Path]) -> list[Case]:
    """Every case of several inputs: case files (TOML), tidy CSV files, folders (every
    ``*.toml`` inside, sorted), or a mix; each file read by its extension (:func:`load_file`).

    This is the one loader of every command that reads cases.

    Raises
    ------
    CaseError
        With every problem of every file, and when two cases share an ``id``.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    problems: list[Problem] = []
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.toml"))
            if not found:
                problems.append(Problem(str(p), "no case files (*.toml) in this folder"))
            files.extend(found)
        else:
            files.append(p)
    cases: list[Case] = []
    seen: dict[str, Path] = {}
    for f in files:
        try:
            loaded = load_file(f)
        except CaseError as exc:
            problems += exc.problems
            continue
        for case in loaded:
            if case.id in seen:
                message = f"id {case.id!r} is also used by {seen[case.id]}"
                problems.append(Problem(str(f), message, field="id"))
            seen[case.id] = f
            cases.append(case)
    if problems:
        raise CaseError.of(problems)
    return cases
