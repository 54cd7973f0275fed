"""Case files: the data of one poisoning case report, with units, read from TOML.

A case file describes the patient, the doses, the measured levels, the timed urine collections and
the extracorporeal sessions (see the README for the format). Quantities are strings with units and
are normalised to canonical units (h, mg, L, mg/L, L/h, kg). A time that the report gives only
vaguely is a range ``[lo, hi]``, kept as a :class:`Time` so the model can treat it as unknown.

Every problem is reported as a :class:`CaseError` naming the file, the block (with its index) and
the field. Input files are only read, never written.

Times may be written as people write them (see :class:`_Clock`): TOML dates and times (hours
since the case's ``time_zero``) and anchors to other events of the case (``"session2.end + 0.5"``,
``"dose1"``, ``["level3", "level3 + 2"]``). An anchored time keeps its anchor when the anchor's own
time is a range, so that the model moves it with the anchor.
"""

from __future__ import annotations

import datetime as dt
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

    An anchored time (``anchor`` set, e.g. ``"session2.end"``) is the anchor event's time plus
    ``offset`` (hours; a range ``(lo, hi)`` when the offset is itself vague). It is kept only
    when the anchor's time is a range: the model then moves this time with the anchor; ``lo`` and
    ``hi`` are the bounds it can take. An anchor whose time is known is resolved to hours.
    """

    model_config = ConfigDict(frozen=True)
    lo: float
    hi: float
    anchor: str | None = None
    offset: tuple[float, float] | None = None

    @property
    def is_range(self) -> bool:
        return self.hi > self.lo

    @property
    def mid(self) -> float:
        return 0.5 * (self.lo + self.hi)

    def __add__(self, other: Time) -> Time:
        return Time(lo=self.lo + other.lo, hi=self.hi + other.hi)

    @property
    def offset_text(self) -> str:
        """The anchored form, e.g. ``"session2.end + 0.5"`` (empty when not anchored)."""
        if self.anchor is None or self.offset is None:
            return ""
        lo, hi = self.offset
        if lo == hi:
            return self.anchor if lo == 0 else f"{self.anchor} {'+-'[lo < 0]} {abs(lo):g}"
        return f"{self.anchor} + [{lo:g}, {hi:g}]"

    def __str__(self) -> str:
        text = f"{self.lo:g}-{self.hi:g} h" if self.is_range else f"{self.lo:g} h"
        if self.anchor is not None:
            return f"{text} ({self.offset_text})"
        return f"{text} (range)" if self.is_range else text

    def to_json(self) -> float | list[float] | dict[str, Any]:
        """Hours (a number, or ``[lo, hi]`` for a range); an anchored time as
        ``{"anchor", "offset", "range"}``."""
        if self.anchor is not None and self.offset is not None:
            lo, hi = self.offset
            return {
                "anchor": self.anchor,
                "offset": [lo, hi] if hi > lo else lo,
                "range": [self.lo, self.hi],
            }
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


# ---------------------------------------------------------------- times as people write them

#: the blocks whose entries can be anchors, by the anchor's name: (block, time fields)
ANCHOR_BLOCKS: dict[str, str] = {
    "dose": "doses",
    "level": "concentrations",
    "urine": "urine",
    "session": "sessions",
}
_WINDOWS = ("urine", "session")
_ANCHOR_HELP = (
    "anchors are doseN, levelN, urineN.start, urineN.end, sessionN.start, sessionN.end "
    "(N from 1, in the file's order) and admission, with an optional offset in hours: "
    '"session2.end + 0.5", "session1.start - 1", "dose1 + 30 min"'
)
_EXPRESSION = re.compile(
    r"^\s*(?P<event>[A-Za-z_]+[0-9]*(?:\.[A-Za-z_]+)?)\s*"
    r"(?:(?P<sign>[+-])\s*(?P<offset>\S.*?))?\s*$"
)
_EVENT = re.compile(r"^(?P<kind>[a-z_]+?)(?P<number>[0-9]+)?(?:\.(?P<part>[a-z_]+))?$")
_DATE = re.compile(r"^\s*[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MAX_EXPRESSION = 200
#: the longest chain of anchors (a time anchored to a time anchored to ...)
_MAX_DEPTH = 50


class _Cycle(ValueError):
    """Anchors that refer to each other in a loop (reported as is, never wrapped)."""


def _date_time(x: Any, what: str) -> dt.datetime:
    """A TOML date-time, or the same written as an ISO 8601 string (as JSON keeps it)."""
    if isinstance(x, str) and _DATE.match(x):
        try:
            x = dt.datetime.fromisoformat(x.strip())
        except ValueError:
            raise ValueError(f"{what}: cannot read {x!r:.60} as a date and time") from None
    if isinstance(x, dt.datetime):
        return x
    if isinstance(x, dt.date | dt.time):
        raise ValueError(
            f"{what} must be a date with a time of day (e.g. 2019-03-02T08:30), got {x}"
        )
    raise ValueError(f"{what} must be a date and time (e.g. 2019-03-02T08:30), got {x!r:.60}")


def _time_zero(x: Any) -> dt.datetime:
    return _date_time(x, "time_zero")


class _Clock:
    """The time fields of one raw case: hours, ranges, dates and times, anchors.

    A time point is a number of hours, a TOML date-time (hours since ``time_zero``) or an
    expression ``EVENT [+|- OFFSET]`` naming another event of the case (see ``_ANCHOR_HELP``);
    a time is a point or a range ``[point, point]``. :meth:`parse` turns one into a
    :class:`Time`: an anchor whose own time is known is resolved to hours; one whose time is a
    range is kept (``Time.anchor``), with the offset, so that the model moves the two together.
    The two ends of a range must then share the anchor.
    """

    def __init__(self, raw: dict[str, Any]):
        self.raw = raw
        self._memo: dict[str, Time] = {}
        self._stack: list[str] = []

    # -- points

    def _zero(self) -> dt.datetime:
        if "time_zero" not in self.raw:
            raise ValueError(
                "a date and time needs time_zero (the date and time of the clock's zero, e.g. "
                'time_zero = 2019-03-02T08:30 with clock = "ingestion") at the top of the file'
            )
        try:
            return _time_zero(self.raw["time_zero"])
        except ValueError as exc:
            raise ValueError(f"a date and time needs a valid time_zero ({exc})") from None

    def _hours(self, when: dt.datetime) -> float:
        zero = self._zero()
        if (when.tzinfo is None) != (zero.tzinfo is None):
            raise ValueError(
                f"{when.isoformat()} and time_zero {zero.isoformat()}: give both with a UTC "
                "offset (e.g. +01:00) or neither"
            )
        hours = (when - zero).total_seconds() / 3600
        if hours < 0:
            raise ValueError(
                f"{when.isoformat()} is before time_zero ({zero.isoformat()}); times are hours "
                "since time_zero, so give an earlier time_zero"
            )
        return hours

    def _point(self, x: Any) -> tuple[str | None, float]:
        """(anchor or None, hours after it) of one time point."""
        if isinstance(x, bool):
            raise ValueError(f"a time must be a number of hours, got {x!r}")
        if isinstance(x, int | float):
            return None, _number(x, "a time")
        if isinstance(x, dt.date | dt.time) or (isinstance(x, str) and _DATE.match(x)):
            return None, self._hours(_date_time(x, "a time"))
        if isinstance(x, str):
            return self._expression(x)
        raise ValueError(
            f"a time must be a number of hours, a date and time, or an anchor such as "
            f'"session2.end + 0.5", got {x!r:.60}'
        )

    def _expression(self, text: str) -> tuple[str | None, float]:
        m = _EXPRESSION.match(text) if len(text) <= _MAX_EXPRESSION else None
        if m is None:
            raise ValueError(
                f"cannot read the time {text!r:.60}: a time is a number of hours, a date and "
                f"time, or an anchor; {_ANCHOR_HELP}"
            )
        event = self._event_name(m["event"])
        offset = 0.0
        if m["offset"] is not None:
            try:
                offset = _number(float(m["offset"]), "an offset")
            except ValueError:
                try:
                    offset = parse_quantity(m["offset"], "time")
                except UnitError:
                    raise ValueError(
                        f"cannot read the offset {m['offset']!r:.40} in {text!r:.60}: give hours "
                        '("session2.end + 0.5") or a time with a unit ("+ 30 min")'
                    ) from None
            offset = -offset if m["sign"] == "-" else offset
        anchor = self.event(event)
        if not anchor.is_range:
            return None, anchor.lo + offset
        return event, offset

    def _event_name(self, text: str) -> str:
        """The canonical name of an anchor (``session2.end``), checked against the case."""
        m = _EVENT.match(text.lower())
        kind = m["kind"] if m else ""
        if m and kind == "admission" and m["number"] is None and m["part"] is None:
            if not isinstance(self.raw, dict) or "admission_h" not in self.raw:
                raise ValueError(
                    "unknown anchor 'admission': the case gives no admission_h (the admission "
                    "time on the case's clock)"
                )
            return "admission"
        if m is None or kind not in ANCHOR_BLOCKS or m["number"] is None:
            raise ValueError(
                f"unknown anchor {text!r:.40}: a time is a number of hours, a date and time, or "
                f"an anchor; {_ANCHOR_HELP}"
            )
        number, part = int(m["number"]), m["part"]
        block = ANCHOR_BLOCKS[kind]
        entries = self.raw.get(block)
        count = len(entries) if isinstance(entries, list) else 0
        if not 1 <= number <= count:
            raise ValueError(
                f"unknown anchor {text!r:.40}: the case has {count} [[{block}]] "
                f"(numbered from 1 in the file's order)"
            )
        if kind in _WINDOWS and part not in ("start", "end"):
            raise ValueError(
                f"anchor {text!r:.40} names a window: write {kind}{number}.start or "
                f"{kind}{number}.end"
            )
        if kind not in _WINDOWS and part is not None:
            raise ValueError(f"anchor {text!r:.40}: a {kind} has one time, write {kind}{number}")
        return f"{kind}{number}" + (f".{part}" if part else "")

    # -- events

    def event(self, name: str) -> Time:
        """The time of the event ``name`` (a canonical anchor name)."""
        if name in self._memo:
            return self._memo[name]
        if name in self._stack:
            loop = " -> ".join([*self._stack[self._stack.index(name) :], name])
            raise _Cycle(f"anchors form a cycle: {loop}")
        if len(self._stack) >= _MAX_DEPTH:
            raise _Cycle(f"anchors are nested too deeply (more than {_MAX_DEPTH} in a chain)")
        self._stack.append(name)
        try:
            time = self._event_time(name)
        except _Cycle:
            raise
        except RecursionError:
            raise _Cycle("anchors are nested too deeply") from None
        except ValueError as exc:
            raise ValueError(f"anchor {name!r}: its own time is not valid ({exc})") from None
        finally:
            self._stack.pop()
        self._memo[name] = time
        return time

    def _event_time(self, name: str) -> Time:
        if name == "admission":
            return self.parse(self.raw["admission_h"])
        m = _EVENT.match(name)
        assert m is not None
        kind, index, part = m["kind"], int(m["number"]) - 1, m["part"]
        entry = self.raw[ANCHOR_BLOCKS[kind]][index]
        if not isinstance(entry, dict):
            raise ValueError("its block is not a table")
        if kind not in _WINDOWS:
            if "time_h" not in entry:
                raise ValueError("it has no time_h")
            return self.parse(entry["time_h"])
        if part == "start" or "end_h" in entry:
            field = "start_h" if part == "start" else "end_h"
            if field not in entry:
                raise ValueError(f"it has no {field}")
            return self.parse(entry[field])
        if "duration_h" not in entry:
            raise ValueError("it has no end_h or duration_h")
        return self.event(f"{kind}{index + 1}.start") + _time(entry["duration_h"], positive=True)

    # -- times

    def parse(self, x: Any) -> Time:
        """A :class:`Time` from what the file gives (raises ValueError)."""
        if isinstance(x, Time):
            return x
        if not isinstance(x, list):
            anchor, offset = self._point(x)
            return self._make(anchor, offset, offset)
        if len(x) != 2:
            raise ValueError(f"a range must be [lo, hi] with two numbers (or times), got {x!r:.60}")
        (a, lo), (b, hi) = (self._point(v) for v in x)
        if a != b:
            named = a or b
            raise ValueError(
                f"the ends of the range {x!r:.60} must be anchored to the same event: the time "
                f"of {named} is itself a range, and the model moves what is anchored to it "
                f"with it (write both ends relative to {named}, or both in hours)"
            )
        if lo > hi:
            raise ValueError(f"range {x!r:.60} has lo > hi")
        return self._make(a, lo, hi)

    def _make(self, anchor: str | None, lo: float, hi: float) -> Time:
        if anchor is None:
            return Time(lo=lo, hi=hi)
        base = self.event(anchor)
        return Time(lo=base.lo + lo, hi=base.hi + hi, anchor=anchor, offset=(lo, hi))


def _time_field(x: Any, info: ValidationInfo) -> Time:
    clock = (info.context or {}).get("clock")
    return clock.parse(x) if clock is not None else _time(x)


def _quantity(kind: Kind):
    def parse(x: Any, info: ValidationInfo) -> float:
        molar_mass = (info.context or {}).get("molar_mass")
        try:
            return parse_quantity(x, kind, molar_mass)
        except UnitError as exc:
            raise ValueError(str(exc)) from None

    return BeforeValidator(parse)


TimeH = Annotated[Time, BeforeValidator(_time_field)]
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
    #: the date and time of the clock's zero; dates and times in the file are hours since it
    time_zero: Annotated[dt.datetime, BeforeValidator(_time_zero)] | None = None
    #: admission to hospital on the case's clock (an anchor: ``"admission + 2"``)
    admission_h: TimeH | None = None
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
            if isinstance(obj, dt.datetime):
                return obj.isoformat()
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
            raw, context={"molar_mass": drug.molar_mass, "clock": _Clock(raw)}, strict=False
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
            own_start = f"{name.removesuffix('s')}{i}.start"
            end = w.end_h
            if (
                end is not None
                and end.anchor is not None
                and end.offset is not None
                and (end.anchor == own_start or end.anchor == w.start_h.anchor)
            ):
                # tied to the start, or to the same event as the start: compare the offsets
                start_offset = w.start_h.offset or (0.0, 0.0)
                after = 0.0 if end.anchor == own_start else start_offset[1]
                if end.offset[0] <= after:
                    raise CaseError(
                        path,
                        f"ends before it starts (end {w.end_h}, start {w.start_h})",
                        block,
                        "end_h",
                    )
            elif w.end_h is not None and w.end_h.lo <= w.start_h.hi:
                raise CaseError(
                    path,
                    f"ends before it starts (end {w.end_h}, start {w.start_h}); when the start "
                    "is a range, give duration_h instead of end_h (or anchor the end to the "
                    f'start: "{own_start} + 3")',
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
