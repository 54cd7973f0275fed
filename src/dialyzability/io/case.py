"""Case files: the data of one poisoning case report, with units, read from TOML.

A case file describes the patient, the doses, the measured levels, the timed urine collections and
the extracorporeal sessions (see the README for the format). Quantities are strings with units and
are normalised to canonical units (h, mg, L, mg/L, L/h, kg). A time that the report gives only
vaguely is a range ``[lo, hi]``, kept as a :class:`Time` so the model can treat it as unknown.

Every problem is reported as a :class:`CaseError` naming the file, the block (with its index) and
the field. Input files are only read, never written.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
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


class CaseError(ValueError):
    """A case file that cannot be used, with the place of the problem.

    Attributes
    ----------
    path, block, field
        File, block (e.g. ``"[[sessions]] #2"``) and field of the problem; block and field may be
        empty for problems with the whole file.
    """

    def __init__(self, path: str | Path, message: str, block: str = "", field: str = ""):
        self.path, self.block, self.field, self.reason = str(path), block, field, message
        where = ", ".join(p for p in (block, f"field '{field}'" if field else "") if p)
        super().__init__(f"{path}: {where + ': ' if where else ''}{message}")


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


def _where(loc: tuple[Any, ...]) -> tuple[str, str]:
    """Turn a pydantic error location into (block, field) for a message."""
    parts = list(loc)
    block = ""
    if parts and parts[0] in ("doses", "concentrations", "urine", "sessions"):
        name = parts.pop(0)
        if parts and isinstance(parts[0], int):
            block = f"[[{name}]] #{parts.pop(0) + 1}"
            if parts and parts[0] == "effluent_samples":
                parts.pop(0)
                if parts and isinstance(parts[0], int):
                    block += f" effluent_samples #{parts.pop(0) + 1}"
                else:
                    parts.insert(0, "effluent_samples")
        else:
            return f"[[{name}]]", ""
    elif parts and parts[0] == "patient":
        parts.pop(0)
        block = "[patient]"
    return block, ".".join(str(p) for p in parts)


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
        On the first problem, naming ``path``, the block and the field.
    """
    if not isinstance(raw, dict):
        raise CaseError(path, "a case file must be a TOML table")
    drug_name = raw.get("drug")
    if not isinstance(drug_name, str) or not drug_name.strip():
        raise CaseError(
            path, 'missing required field (the drug, e.g. drug = "baclofen")', field="drug"
        )
    try:
        drug = load_drug(drug_name)
    except DrugModelError as exc:
        raise CaseError(path, str(exc), field="drug") from None
    raw = dict(raw)
    raw.setdefault("id", Path(str(path)).stem)
    try:
        case = Case.model_validate(
            raw, context={"molar_mass": drug.molar_mass}, strict=False
        ).model_copy(update={"source": str(path)})
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        block, field = _where(tuple(err["loc"]))
        raise CaseError(path, _message(err, _model_at(tuple(err["loc"]))), block, field) from None
    _check_consistency(case, path)
    case._raw = raw
    return case


def _check_consistency(case: Case, path: str | Path) -> None:
    """Checks across fields and blocks, after units are normalised."""
    for name in ("urine", "sessions"):
        for i, w in enumerate(getattr(case, name), start=1):
            block = f"[[{name}]] #{i}"
            if w.end_h is None and w.duration_h is None:
                raise CaseError(
                    path, "missing required field: give end_h or duration_h", block, "end_h"
                )
            if w.end_h is not None and w.duration_h is not None:
                raise CaseError(path, "give end_h or duration_h, not both", block, "duration_h")
            if w.end_h is not None and w.end_h.lo <= w.start_h.hi:
                raise CaseError(
                    path,
                    f"ends before it starts (end {w.end_h}, start {w.start_h}); when the start "
                    "is a range, give duration_h instead of end_h",
                    block,
                    "end_h",
                )
    for i, u in enumerate(case.urine, start=1):
        if u.recovered is None:
            raise CaseError(
                path,
                "missing: give amount, or concentration and volume",
                f"[[urine]] #{i}",
                "amount",
            )
    for i, s in enumerate(case.sessions, start=1):
        block = f"[[sessions]] #{i}"
        if (s.effluent_concentration is None) != (
            s.effluent_volume is None
        ) and s.recovered is None:
            field = "effluent_volume" if s.effluent_volume is None else "effluent_concentration"
            raise CaseError(
                path,
                "effluent_concentration needs effluent_volume (or give recovered)",
                block,
                field,
            )
    for i, c in enumerate(case.concentrations, start=1):
        block = f"[[concentrations]] #{i}"
        if c.below_lloq and c.lloq is None:
            raise CaseError(path, "below_lloq = true needs the lloq", block, "lloq")
        if not c.below_lloq and c.value is None:
            raise CaseError(
                path, "missing required field (or set below_lloq = true with lloq)", block, "value"
            )
        if not c.below_lloq and c.value == 0:
            raise CaseError(
                path, "a level of zero: write it as below_lloq = true with its lloq", block, "value"
            )
    for i, a in enumerate(case.sessions, start=1):
        for j, b in enumerate(case.sessions[i:], start=i + 1):
            # certainly overlapping, whatever the values inside the ranges
            if a.start_h.hi < b.end.lo and b.start_h.hi < a.end.lo:
                raise CaseError(
                    path,
                    f"overlaps session #{i} ({a.start_h} to {a.end}) with ({b.start_h} to {b.end})",
                    f"[[sessions]] #{j}",
                    "start_h",
                )
    total = case.total_dose
    if total is not None:
        recovered = 0.0
        for name, field in (("urine", "amount"), ("sessions", "recovered")):
            for i, w in enumerate(getattr(case, name), start=1):
                amount = w.recovered if name == "urine" else w.amount
                if amount is None:
                    continue
                recovered += amount
                if amount > total:
                    raise CaseError(
                        path,
                        f"recovered {amount:g} mg is more than the total dose {total:g} mg",
                        f"[[{name}]] #{i}",
                        field,
                    )
        if recovered > total:
            raise CaseError(
                path,
                f"urine and effluent recoveries add up to {recovered:g} mg, more than the total "
                f"dose {total:g} mg",
                "[[urine]] and [[sessions]]",
            )


def load_case(path: str | Path) -> Case:
    """Read, validate and normalise one case file.

    Parameters
    ----------
    path
        A TOML case file. It is only read.

    Raises
    ------
    CaseError
        Naming the file, block and field of the first problem.
    """
    path = Path(path)
    return parse_case(_read_toml(path), path)


def load_cases(paths: str | Path | Iterable[str | Path]) -> list[Case]:
    """Load several cases: files, folders (every ``*.toml`` inside, sorted), or a mix.

    Raises
    ------
    CaseError
        For the first bad file, or when two files share an ``id``.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.toml"))
            if not found:
                raise CaseError(p, "no case files (*.toml) in this folder")
            files.extend(found)
        else:
            files.append(p)
    cases: list[Case] = []
    seen: dict[str, Path] = {}
    for f in files:
        case = load_case(f)
        if case.id in seen:
            raise CaseError(f, f"id {case.id!r} is also used by {seen[case.id]}", field="id")
        seen[case.id] = f
        cases.append(case)
    return cases
