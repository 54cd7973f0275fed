"""Case files: the data of one poisoning case report, with units, read from TOML.

A case file describes the patient, the doses, the measured levels, the timed urine collections and
the extracorporeal sessions (see the README for the format). Quantities are strings with units and
are normalised to canonical units (h, mg, L, mg/L, L/h, kg). A time that the report gives only
vaguely is a range ``[lo, hi]``, kept as a :class:`Time` so the model can treat it as unknown.

Every problem of a file is reported, all together, as a :class:`CaseError` holding one
:class:`Problem` each (file, block, index, field, message). :func:`load_cases` is the one loader
of every command: case files (TOML) and tidy CSV files (:mod:`dialyzability.io.tidy`), each read
by its extension, and folders of case files. Input files are only read, never written.

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
    """The patient; every field optional. Weight in kg; haematocrit a fraction (0.1-0.7)."""

    weight: Weight | None = None
    age_years: Annotated[float, Field(ge=0, le=130, allow_inf_nan=False, strict=True)] | None = None
    sex: Literal["female", "male"] | None = None
    kidney_function: KidneyFunction | None = None
    #: haematocrit (fraction of blood volume that is red cells): with a session's blood flow it
    #: gives the plasma flow that bounds CL_ECTR
    haematocrit: Annotated[float, Field(ge=0.1, le=0.7, allow_inf_nan=False)] | None = None


class Dose(_Block):
    """One dose: amount in mg at ``time_h``; oral doses go through the gut, iv into plasma."""

    time_h: TimeH
    amount: Mass
    route: Literal["oral", "iv"] = "oral"


#: where on the extracorporeal circuit a level was drawn: at the filter's inlet (arterial line,
#: the systemic plasma level) or at its outlet (venous line, after the filter has cleared it)
SITES = ("pre-filter", "post-filter")


class Level(_Block):
    """A measured drug level (mg/L); ``below_lloq`` means it was below ``lloq`` (mg/L).

    ``site`` (``"pre-filter"`` or ``"post-filter"``) with ``session`` (the 1-based number of the
    session in ``[[sessions]]``): a level drawn from the extracorporeal circuit during that
    session, at the filter's inlet or outlet (an A-V pair when both are drawn at one time)."""

    time_h: TimeH
    value: Concentration | None = None
    matrix: Literal["plasma", "serum", "blood"] = "plasma"
    lloq: Concentration | None = None
    below_lloq: Annotated[bool, Field(strict=True)] = False
    site: Literal["pre-filter", "post-filter"] | None = None
    session: Annotated[int, Field(ge=1, strict=True)] | None = None

    @property
    def post_filter(self) -> bool:
        """Drawn after the filter: not the systemic level (the model predicts it as
        C_p (1 − CL_ECTR/Q), Q the session's plasma flow)."""
        return self.site == "post-filter"


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
        context = {"molar_mass": molar_mass, "clock": _Clock(raw)}
        case = Case.model_validate(raw, context=context, strict=False)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            message = _message(err, _model_at(loc))
            if not drug_known and (loc == ("drug",) or "molar quantity" in message):
                continue  # said once already; molar units wait for a known drug
            problems.append(Problem(path, message, *_where(loc)))
        problems += _check_consistency(_partial(raw, context), path)
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
                    fail(
                        f"ends before it starts (end {w.end_h}, start {w.start_h})",
                        name,
                        i,
                        "end_h",
                    )
            elif w.end_h is not None and w.end_h.lo <= w.start_h.hi:
                fail(
                    f"ends before it starts (end {w.end_h}, start {w.start_h}); when the start "
                    "is a range, give duration_h instead of end_h (or anchor the end to the "
                    f'start: "{own_start} + 3")',
                    name,
                    i,
                    "end_h",
                )
    for i, u in _entries(case, "urine"):
        if u.recovered is None:
            fail("missing: give amount, or concentration and volume", "urine", i, "amount")
        elif u.recovered <= 0:
            fail(
                "an amount of 0 cannot be a measurement on the log scale: leave the amount out "
                "if none was measured",
                "urine",
                i,
                "amount",
            )
    for i, s in _entries(case, "sessions"):
        if s.amount is not None and s.amount <= 0:
            fail(
                "an amount of 0 cannot be a measurement on the log scale: leave recovered out "
                "if none was measured",
                "sessions",
                i,
                "recovered",
            )
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
    for i, s in _entries(case, "sessions"):
        # an effluent sample is predicted as CL_ECTR · C_p(t) / Q_E: it needs its session's Q_E
        if s.effluent_samples and s.effluent_flow is None:
            fail(
                "effluent_flow is needed to use effluent samples (the effluent concentration is "
                "CL_ECTR x plasma level / effluent flow): give the session's dialysate + "
                'ultrafiltrate flow, e.g. effluent_flow = "2 L/h"',
                "sessions",
                i,
                "effluent_flow",
            )
        timed = s.end_h is not None or s.duration_h is not None
        for k, e in enumerate(s.effluent_samples if timed else [], 1):
            if e.time_h.hi < s.start_h.lo or e.time_h.lo > s.end.hi:
                fail(
                    f"effluent sample at {e.time_h} h is outside its session "
                    f"({s.start_h} to {s.end}): no effluent flows then",
                    "sessions",
                    i,
                    f"effluent_samples[{k}].time_h",
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
    # one level per known time and matrix: two at the same time would be silently re-sorted by
    # any curve through them (which is first?); ranged times are unknowns, not compared. A
    # post-filter level is no point of the systemic curve: it may share a time with the
    # pre-filter (or any systemic) level, not with another post-filter level
    first_at: dict[tuple[str, bool, float], int] = {}
    for i, c in _entries(case, "concentrations"):
        if c.time_h.is_range:
            continue
        earlier = first_at.setdefault((c.matrix, c.post_filter, c.time_h.lo), i)
        if earlier != i:
            what = f"{c.matrix} {'post-filter ' if c.post_filter else ''}levels"
            fail(
                f"two {what} at the same time ({c.time_h.lo:g} h): concentrations "
                f"#{earlier} and #{i}; give one level per time and matrix (e.g. the mean of "
                "repeat assays), or correct the time",
                "concentrations",
                i,
                "time_h",
            )
    problems += _check_sites(case, path)
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


def _check_sites(case: Case | SimpleNamespace, path: str) -> list[Problem]:
    """A level's ``site`` and ``session``: every problem of every level (see :class:`Level`).

    A site needs its session, and a session its site; the session must exist; a post-filter
    level needs its session's ``blood_flow`` (it is predicted through the plasma flow); a level
    at the filter is drawn while its session runs (its time not certainly outside the session's
    possible range); and it is a plasma or serum level (the extraction of whole blood is not
    the plasma extraction the model predicts)."""
    problems: list[Problem] = []

    def fail(message: str, i: int, field: str) -> None:
        problems.append(Problem(path, message, "concentrations", i, field))

    sessions = list(case.sessions)  # None where an entry failed validation
    for i, c in _entries(case, "concentrations"):
        if c.site is None:
            if c.session is not None:
                fail(
                    "session is given without a site: say where on the circuit the level was "
                    'drawn (site = "pre-filter" or "post-filter"), or leave session out',
                    i,
                    "site",
                )
            continue
        if c.matrix == "blood":
            fail(
                f'a {c.site} level must be a plasma or serum level (matrix = "plasma" or '
                '"serum"): the extraction of whole blood across the filter is not the plasma '
                "extraction the model predicts",
                i,
                "matrix",
            )
        if c.session is None:
            fail(
                f"a {c.site} level needs its session: give session = N, the number of the "
                "session in [[sessions]] (1 for the first) during which it was drawn",
                i,
                "session",
            )
            continue
        if c.session > len(sessions):
            have = f"the case has {len(sessions)}" if sessions else "the case has none"
            fail(f"session {c.session} does not exist ({have} in [[sessions]])", i, "session")
            continue
        s = sessions[c.session - 1]
        if s is None:
            continue  # its own problems are said at the session
        if c.post_filter and s.blood_flow is None:
            fail(
                f"a post-filter level needs the blood flow of its session: the level after the "
                "filter is C_p (1 - CL_ECTR / Q) with Q the plasma flow through it; give "
                f'blood_flow in [[sessions]] #{c.session} (e.g. blood_flow = "250 mL/min")',
                i,
                "site",
            )
        timed = s.end_h is not None or s.duration_h is not None
        if timed and (c.time_h.hi < s.start_h.lo or c.time_h.lo > s.end.hi):
            fail(
                f"a {c.site} level at {c.time_h} is outside its session #{c.session} "
                f"({s.start_h} to {s.end}): no blood flows through the filter then",
                i,
                "time_h",
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
