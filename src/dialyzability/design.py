"""Case(s) -> design: events, windows, observation index, the numbers as arrays (DESIGN §2).

Numpy only, no PyMC: what the model builder, the posterior curves, the simulator and the Stan
peer all read about a case's structure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dialyzability.io.case import Case, Time
from dialyzability.io.drugs import DrugModel, clearance_prior


@dataclass(frozen=True)
class Design:
    """The static structure of a case for :func:`solve`: which event is what.

    Event times are passed to :func:`solve` as one vector; the fields here index into it.

    Attributes
    ----------
    n_events
        Length of the event-time vector.
    dose_event, dose_amount, dose_oral
        For each dose: its event, amount (mg) and whether it is oral (else intravenous).
    session_start, session_end, session_modality
        For each session: its start and end events, and the index of its modality in the
        ``cl_ectr`` vector.
    windows
        (start event, end event) pairs over which the AUC is wanted.
    samples
        Events at which the concentration is wanted.
    initial_event
        Event at which ``a0`` (a latent body burden, for cases without a dose) enters the body,
        or -1 for none.
    """

    n_events: int
    dose_event: tuple[int, ...] = ()
    dose_amount: tuple[float, ...] = ()
    dose_oral: tuple[bool, ...] = ()
    session_start: tuple[int, ...] = ()
    session_end: tuple[int, ...] = ()
    session_modality: tuple[int, ...] = ()
    windows: tuple[tuple[int, int], ...] = ()
    samples: tuple[int, ...] = ()
    initial_event: int = -1
    labels: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class BatchDesign:
    """Several cases' designs padded to common sizes, for :func:`solve_batch`.

    Arrays have the cases as their first axis. Padding: doses of amount 0, sessions and windows
    that start and end at event 0 (mask False), samples at event 0. Padded events are the
    caller's business (give them the time of the case's last event: zero-length intervals).
    """

    n_cases: int
    n_events: int
    dose_event: np.ndarray  # (C, D) int
    dose_amount: np.ndarray  # (C, D) mg, 0 for padding
    dose_oral: np.ndarray  # (C, D) bool
    session_start: np.ndarray  # (C, S) int
    session_end: np.ndarray  # (C, S) int
    session_modality: np.ndarray  # (C, S) int
    session_mask: np.ndarray  # (C, S) bool
    windows: np.ndarray  # (C, W, 2) int
    samples: np.ndarray  # (C, L) int
    initial_event: np.ndarray  # (C,) int, -1 for none

    @classmethod
    def stack(cls, designs: list[Design], n_events: int | None = None) -> BatchDesign:
        """Pad single-case designs to a batch (``n_events`` at least the largest case's)."""
        n = max([d.n_events for d in designs] + [n_events or 0])

        def pad(rows, width, fill, dtype):
            out = np.full((len(rows), max(width, 1)), fill, dtype=dtype)
            for i, r in enumerate(rows):
                out[i, : len(r)] = r
            return out

        c = len(designs)
        d_w = max(len(d.dose_event) for d in designs)
        s_w = max(len(d.session_start) for d in designs)
        w_w = max(len(d.windows) for d in designs)
        l_w = max(len(d.samples) for d in designs)
        windows = np.zeros((c, max(w_w, 1), 2), dtype=int)
        for i, d in enumerate(designs):
            if d.windows:
                windows[i, : len(d.windows)] = np.array(d.windows)
        return cls(
            n_cases=c,
            n_events=n,
            dose_event=pad([d.dose_event for d in designs], d_w, 0, int),
            dose_amount=pad([d.dose_amount for d in designs], d_w, 0.0, float),
            dose_oral=pad([d.dose_oral for d in designs], d_w, False, bool),
            session_start=pad([d.session_start for d in designs], s_w, 0, int),
            session_end=pad([d.session_end for d in designs], s_w, 0, int),
            session_modality=pad([d.session_modality for d in designs], s_w, 0, int),
            session_mask=pad([[True] * len(d.session_start) for d in designs], s_w, False, bool),
            windows=windows,
            samples=pad([d.samples for d in designs], l_w, 0, int),
            initial_event=np.array([d.initial_event for d in designs], dtype=int),
        )


def level_name(number: int) -> str:
    """Label of a case's level ``number`` (1-based, in the case file's order)."""
    return f"level{number}"


def urine_name(number: int) -> str:
    """Label of a case's urine collection ``number`` (1-based)."""
    return f"urine{number}"


def session_name(number: int) -> str:
    """Label of a case's session ``number`` (1-based)."""
    return f"session{number}"


@dataclass(frozen=True)
class Timing:
    """A latent timing of a case: ``name`` (its variable), the ``event`` label it times, its
    ``kind`` (``"time"``, ``"duration"``, ``"offset"``) and, for the last two, the ``base``
    event it is counted from."""

    name: str
    event: str
    kind: str
    base: str | None


def event_parts(label: str) -> tuple[str, int, str]:
    """An event label read back: ``session2_start`` → ("session", 2, "start"), ``level3`` →
    ("level", 3, ""), ``admission`` → ("admission", 0, "")."""
    stem, _, edge = label.partition("_")
    noun = stem.rstrip("0123456789")
    return noun, int(stem[len(noun) :] or 0), edge


def event_words(label: str, case: Case) -> str:
    """An event label as a clinician reads it: ``session2_start`` → "the start of HD session
    2", ``urine1_end`` → "the end of urine collection 1", ``level3`` → "level 3", ``dose1`` →
    "dose 1", ``admission`` → "admission"."""
    noun, number, edge = event_parts(label)
    if noun == "session" and number:
        what = f"{case.sessions[number - 1].modality} session {number}"
    elif noun == "urine" and number:
        what = f"urine collection {number}"
    elif noun in ("level", "dose") and number:
        what = f"{noun} {number}"
    else:
        what = label.replace("_", " ")
    return f"the {edge} of {what}" if edge in ("start", "end") else what


def effluent_sample_name(session: int, number: int) -> str:
    """Label of effluent sample ``number`` of session ``session`` (both 1-based)."""
    return f"{session_name(session)}_sample{number}"


@dataclass
class Events:
    """Event times of a case: fixed values and latent ranges, with labels.

    An event may be linked to another (``links``): its time is the other's plus an offset, known
    or latent. A window's end given by a duration is linked to its start; a time anchored to
    an event whose time is a range (``Time.anchor``) is linked to that event, so the two move
    together in the model.
    """

    labels: list[str] = field(default_factory=list)
    times: list[Time] = field(default_factory=list)
    #: event -> (base event, offset, name of the offset's latent variable when it is a range)
    links: dict[int, tuple[int, Time, str]] = field(default_factory=dict)

    def add(self, label: str, time: Time) -> int:
        self.labels.append(label)
        self.times.append(time)
        return len(self.labels) - 1

    def link(self, event: int, base: int, offset: Time, name: str) -> None:
        """Make ``event``'s time ``base``'s plus ``offset`` (latent ``name`` if a range)."""
        self.links[event] = (base, offset, name)

    def add_end(self, label: str, start: int, end: Time | None, duration: Time | None) -> int:
        """An end event: its own time (``end``), or ``start`` + ``duration``."""
        if end is not None:
            return self.add(label, end)
        assert duration is not None
        index = self.add(label, self.times[start] + duration)
        self.link(index, start, duration, f"t_{label.removesuffix('_end')}_duration")
        return index

    def _name(self, i: int) -> str | None:
        """Name of the latent variable behind event ``i`` (its time or its offset), if any."""
        if i in self.links:
            _, offset, name = self.links[i]
            return name if offset.is_range else None
        return f"t_{self.labels[i]}" if self.times[i].is_range else None

    def latent(self) -> dict[str, tuple[float, float]]:
        """The timings that are unknown inside a range: variable name → (lo, hi) in hours."""
        out = {}
        for i in range(len(self.labels)):
            name = self._name(i)
            if name is not None:
                t = self.links[i][1] if i in self.links else self.times[i]
                out[name] = (t.lo, t.hi)
        return out

    def timings(self) -> dict[str, Timing]:
        """What each latent timing of :meth:`latent` is: the event it times, and whether it is
        that event's own time (``"time"``), a window's length (``"duration"``) or an offset after
        another event (``"offset"``, with that event)."""
        out = {}
        for i in range(len(self.labels)):
            name = self._name(i)
            if name is None:
                continue
            if i in self.links:
                base = self.labels[self.links[i][0]]
                kind = "duration" if name.endswith("_duration") else "offset"
                out[name] = Timing(name, self.labels[i], kind, base)
            else:
                out[name] = Timing(name, self.labels[i], "time", None)
        return out

    def constants(self) -> np.ndarray:
        """Per event, the known number behind it (h): its time, or for a linked event its known
        offset; 0 where the number is latent."""
        out = np.zeros(len(self.labels))
        for i, t in enumerate(self.times):
            if self._name(i) is None:
                out[i] = self.links[i][1].lo if i in self.links else t.lo
        return out

    def resolve(self, values: dict, xp=np, constants=None) -> list:
        """Event times (h) given values of the latent timings.

        ``values`` maps the names of :meth:`latent` to scalars, arrays of draws or tensors; the
        result is a list with one entry per event, broadcasting like the values. ``constants``
        (default :meth:`constants`) may be a tensor, so that a compiled model takes the known
        times as data. A linked event is its base's time plus its offset.
        """
        constants = self.constants() if constants is None else constants
        times: dict[int, object] = {}

        def time(i: int, depth: int = 0):
            if i not in times:
                if depth > len(self.times):
                    raise ValueError(f"events linked in a cycle at {self.labels[i]}")
                name = self._name(i)
                value = values[name] if name is not None else constants[i]
                if i in self.links:
                    value = time(self.links[i][0], depth + 1) + value
                times[i] = value
            return times[i]

        return [time(i) for i in range(len(self.times))]


def anchor_label(anchor: str) -> str:
    """The event label of an anchor as a file writes it (``session2.end`` → ``session2_end``)."""
    return anchor.replace(".", "_")


def case_events(case: Case) -> tuple[Events, Design, dict[str, object]]:
    """The events of a case and the :class:`Design` that indexes them.

    Events: ``first`` (earliest possible time of anything) and ``last`` (latest), doses, levels,
    urine windows, sessions, effluent samples. Windows: each urine collection, each session,
    and the whole course (first to last). Samples (concentrations wanted): the levels, then the
    effluent samples session by session (``index["effluent_samples"]``: their positions).
    """
    ev = Events()
    all_times = [d.time_h for d in case.doses] + [c.time_h for c in case.concentrations]
    for w in [*case.urine, *case.sessions]:
        all_times += [w.start_h, w.end]
    all_times += [e.time_h for s in case.sessions for e in s.effluent_samples]
    first = ev.add("first", Time(lo=min(t.lo for t in all_times), hi=min(t.lo for t in all_times)))
    last = ev.add("last", Time(lo=max(t.hi for t in all_times), hi=max(t.hi for t in all_times)))
    doses = [ev.add(f"dose{i}", d.time_h) for i, d in enumerate(case.doses, 1)]
    levels = [ev.add(level_name(i), c.time_h) for i, c in enumerate(case.concentrations, 1)]
    urine = []
    for i, u in enumerate(case.urine, 1):
        s = ev.add(f"{urine_name(i)}_start", u.start_h)
        urine.append((s, ev.add_end(f"{urine_name(i)}_end", s, u.end_h, u.duration_h)))
    sessions = []
    for i, x in enumerate(case.sessions, 1):
        s = ev.add(f"{session_name(i)}_start", x.start_h)
        sessions.append((s, ev.add_end(f"{session_name(i)}_end", s, x.end_h, x.duration_h)))
    effluent_samples = [
        ev.add(effluent_sample_name(i, k), e.time_h)
        for i, x in enumerate(case.sessions, 1)
        for k, e in enumerate(x.effluent_samples, 1)
    ]
    anchored = [t for t in ev.times if t.anchor is not None]
    if case.admission_h is not None and any(t.anchor == "admission" for t in anchored):
        ev.add("admission", case.admission_h)  # a latent admission that other times move with
    where = {label: i for i, label in enumerate(ev.labels)}
    for i, t in enumerate(ev.times):
        if t.anchor is not None and t.offset is not None:
            offset = Time(lo=t.offset[0], hi=t.offset[1])
            ev.link(i, where[anchor_label(t.anchor)], offset, f"t_{ev.labels[i]}_offset")
    modalities = case.modalities
    design = Design(
        n_events=len(ev.labels),
        dose_event=tuple(doses),
        dose_amount=tuple(d.amount for d in case.doses),
        dose_oral=tuple(d.route == "oral" for d in case.doses),
        session_start=tuple(s for s, _ in sessions),
        session_end=tuple(e for _, e in sessions),
        session_modality=tuple(modalities.index(x.modality) for x in case.sessions),
        windows=(*urine, *sessions, (first, last)),
        samples=(*levels, *effluent_samples),
        initial_event=first if not case.doses else -1,
        labels=tuple(ev.labels),
    )
    index = {
        "urine": list(range(len(urine))),
        "sessions": list(range(len(urine), len(urine) + len(sessions))),
        "course": len(urine) + len(sessions),
        "effluent_samples": list(range(len(levels), len(levels) + len(effluent_samples))),
    }
    return ev, design, index


def unused_fields(case: Case) -> list[str]:
    """What the case gives that the model does not use, one phrase each, so that nothing a user
    wrote is dropped silently (``check`` prints them, the report lists them under
    Assumptions): an effluent flow without effluent samples (it enters only their
    prediction), the patient's age and sex. (A blood flow bounds CL_ECTR:
    :meth:`Batch.ectr_bound`; a level's ``site`` and ``session`` place it on the circuit:
    :attr:`Batch.level_post_filter`.)"""
    out = []
    for i, s in enumerate(case.sessions, 1):
        if s.effluent_flow is not None and not s.effluent_samples:
            out.append(
                f"sessions #{i} effluent_flow ({s.effluent_flow:g} L/h; used only with effluent "
                "samples)"
            )
    p = case.patient
    described = [name for name in ("age_years", "sex") if getattr(p, name) is not None]
    if described:
        out.append(f"patient {' and '.join(described)} (descriptive only)")
    return out


def structure(case: Case) -> dict:
    """What fixes the shape of a case's model: the normalised case with every number replaced
    by ``#`` (a known time stays one ``#``, a range becomes ``["#", "#"]``; presence, flags,
    routes, modalities, matrices and the kidney class stay). Two cases with the same structure
    differ only in :func:`model_data`."""

    def blank(obj):
        if isinstance(obj, bool) or obj is None or isinstance(obj, str):
            return obj
        if isinstance(obj, int | float):
            return "#"
        if isinstance(obj, list):
            return [blank(v) for v in obj]
        if isinstance(obj, dict):
            return {k: blank(v) for k, v in obj.items()}
        return repr(type(obj))

    out = blank(case.to_json())
    for key in ("id", "reference", "doi", "clock", "notes", "time_zero"):  # free text
        out.pop(key, None)
    # a level's session picks the CL_ECTR (its modality) of a post-filter prediction
    for level, c in zip(out.get("concentrations", []), case.concentrations, strict=True):
        if c.session is not None:
            level["session"] = c.session
    return out


def plasma_flow(case: Case, session: int) -> float | None:
    """The plasma flow through the filter of session ``session`` (1-based), L/h: Q_B (1 − Hct)
    with the session's ``blood_flow`` Q_B and the patient's haematocrit; without a haematocrit
    the blood flow itself (Hct = 0: the plasma flow never exceeds it); None without a blood
    flow. The one reading of the flows that :meth:`Batch.ectr_bound` and the post-filter levels
    share."""
    s = case.sessions[session - 1]
    if s.blood_flow is None:
        return None
    return s.blood_flow * (1.0 - (case.patient.haematocrit or 0.0))


#: kidney-function classes, in the order of the hierarchical model's ``kidney`` dimension
KIDNEY_CLASSES = ("normal", "impaired", "anuric")
#: parameters with a between-case SD in a hierarchical fit; its variable is :func:`tau_name`
POPULATION_SPREAD = ("volume", "cl_renal", "cl_nonrenal", "cl_ectr", "ka")


def population_ratio_name(modality: str, kidney: str, new: bool = False) -> str:
    """Name of a pooled fit's population ratio CL_ECTR/CL_R of a typical patient
    (``ratio_HD_normal``), or of a new patient (``ratio_new_HD_normal``)."""
    return f"ratio_{'new_' if new else ''}{modality}_{kidney}"


def mu_name(parameter: str) -> str:
    """Name of the population mean (log scale, 70-kg adult) of ``parameter``."""
    return f"mu_{parameter}"


def tau_name(parameter: str) -> str:
    """Name of the between-case SD (log scale) of ``parameter`` in a hierarchical fit."""
    return f"tau_{parameter}"


#: suffix of the sampler's own coordinates (standardised or whitened); never reported
RAW = "_raw"
#: what the ``log_likelihood`` group of a fit holds (its attribute ``pointwise``): per observation
#: log p(y_i | y_-i, θ) of the integrated Student-t error model (Bürkner PC, Gabry J, Vehtari A,
#: Comput Stat 2021;36:1243-1261; :mod:`dialyzability.model.observations`), what PSIS-LOO needs
LOG_LIKELIHOOD = "leave-one-out conditional, Student-t error (Burkner et al. 2021)"


def _pad(rows: list[list], fill, dtype) -> np.ndarray:
    width = max([len(r) for r in rows] + [1])
    out = np.full((len(rows), width), fill, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


@dataclass(frozen=True)
class Observations:
    """One kind of observation over a batch, in long form (one entry per observation).

    Attributes
    ----------
    labels
        Coordinate labels (see :meth:`Batch.label`).
    case
        Index of each observation's case.
    where
        Position of each observation in its case's prediction: the sample (levels, effluent
        samples), the window (urine, effluent).
    value
        Observed value (mg/L or mg); for a level below the LLOQ, the LLOQ.
    censored
        True for a level below the LLOQ.
    modality
        Effluent samples: the index of their session's modality in :attr:`Batch.modalities`
        (the ``cl_ectr`` column that clears into that effluent); levels: that of the session
        of a pre- or post-filter level (0 for a level not drawn at the filter); empty for other
        kinds.
    """

    labels: tuple[str, ...]
    case: np.ndarray
    where: np.ndarray
    value: np.ndarray
    censored: np.ndarray
    modality: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    def __len__(self) -> int:
        return len(self.labels)

    def per_case(self, n_cases: int, mask=None) -> np.ndarray:
        """How many observations (of ``mask``, default all) each case has."""
        mask = np.ones(len(self), bool) if mask is None else mask
        return np.bincount(self.case[mask], minlength=n_cases).astype(float)


@dataclass(frozen=True)
class Batch:
    """N >= 1 cases of one drug laid out for the model: structure, numbers and names.

    Everything the model builder, the posterior curves and the Stan peer need to know about the
    cases, computed once. Numbers (doses, observed values, known times, ranges of vague times,
    weights, clearance priors by kidney class) are in :attr:`data`; everything else is structure
    and fixes the shape of the compiled model (:meth:`structure`).

    Names: every posterior variable and coordinate label is made here. A label of one case's
    event is the event's own name (``level1``, ``t_session1_start``); in a batch of several cases
    it is prefixed by the case id (``lee2020:level1``).
    """

    cases: tuple[Case, ...]
    drug: DrugModel
    events: tuple[Events, ...]
    kinetics: BatchDesign
    windows: tuple[dict, ...]
    modalities: tuple[str, ...]
    kidney_classes: tuple[str, ...]
    timings: tuple[tuple[int, str], ...]  # (case, name) of each latent timing
    levels: Observations
    urine: Observations
    effluent: Observations
    effluent_samples: Observations
    sessions: tuple[tuple[int, int], ...]  # (case, window) of every session
    collections: tuple[tuple[int, int], ...]  # (case, window) of every urine collection

    @property
    def n_cases(self) -> int:
        return len(self.cases)

    @property
    def single(self) -> bool:
        return len(self.cases) == 1

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.cases]

    def label(self, case: int, name: str) -> str:
        """Coordinate label of a case's event or observation."""
        return name if self.single else f"{self.cases[case].id}:{name}"

    @property
    def timing_labels(self) -> list[str]:
        return [self.label(c, name) for c, name in self.timings]

    @property
    def oral(self) -> np.ndarray:
        """Cases with an oral dose (they have a bioavailability)."""
        return np.array([any(d.route == "oral" for d in c.doses) for c in self.cases])

    @property
    def level_blood(self) -> np.ndarray:
        """Per level: measured in whole blood (predicted as B:P · C_p). Serum and plasma are
        the same matrix to the model (C_p)."""
        return np.array(
            [x.matrix == "blood" for c in self.cases for x in c.concentrations], dtype=bool
        )

    @property
    def level_post_filter(self) -> np.ndarray:
        """Per level: drawn after the filter (its ``site``), predicted as C_p (1 − CL_ECTR/Q)
        with Q its session's plasma flow (:func:`plasma_flow`; ``filter_plasma_flow`` in
        :attr:`data`) and CL_ECTR of its session's modality (``levels.modality``). A
        pre-filter level is the systemic level: an ordinary level."""
        return np.array([x.post_filter for c in self.cases for x in c.concentrations], dtype=bool)

    @property
    def weight_missing(self) -> np.ndarray:
        return np.array([c.patient.weight is None for c in self.cases])

    @property
    def no_dose(self) -> np.ndarray:
        """Cases without a dose (their body burden at the first event is latent)."""
        return np.array([not c.doses for c in self.cases])

    @property
    def kidney(self) -> np.ndarray:
        """Index of each case's kidney-function class in :attr:`kidney_classes`."""
        return np.array([self.kidney_classes.index(c.kidney_function) for c in self.cases])

    def coords(self) -> dict[str, list[str]]:
        """Named dimensions with their labels (ArviZ coordinates)."""
        ids = self.ids
        coords = {
            "case": ids,
            "modality": list(self.modalities),
            "kidney": list(self.kidney_classes),
            "latent_time": self.timing_labels,
            "level": list(self.levels.labels),
            "urine": list(self.urine.labels),
            "effluent": list(self.effluent.labels),
            "effluent_sample": list(self.effluent_samples.labels),
            "session": [self.label(c, session_name(i + 1)) for c, i in _numbered(self.sessions)],
            "oral": [i for i, o in zip(ids, self.oral, strict=True) if o],
            "weight_missing": [i for i, m in zip(ids, self.weight_missing, strict=True) if m],
            "no_dose": [i for i, m in zip(ids, self.no_dose, strict=True) if m],
        }
        return {k: v for k, v in coords.items() if v}

    @property
    def data(self) -> dict[str, np.ndarray]:
        """Every number of the cases that the model uses, by name (canonical units, logs taken).

        ``event_time`` (C, n) h: each event's time with every latent timing at 0 (the known
        times; an end given by a duration is its start plus the known duration), a padded event
        at its case's latest time; the latent timings are added to it
        (:meth:`timing_scatter`);
        ``timing_lo``/``timing_hi`` (h): ranges of the latent timings; ``dose_amount`` (C, D)
        mg; ``log_weight`` (C,) log kg, 0 where unknown; ``cl_mean`` (C, 2) and ``cl_chol``
        (C, 2, 2): the prior of (log CL_R, log CL_NR) of a 70-kg adult of each case's kidney
        class (:func:`~dialyzability.io.drugs.clearance_prior`); ``log_a0_guess`` (C,) log mg;
        ``level_log_y``, ``urine_log_y``, ``effluent_log_y``, ``effluent_sample_log_y``:
        observed values (a level below the LLOQ: its LLOQ); ``effluent_sample_flow`` (L/h): the
        effluent flow Q_E of each effluent sample's session; ``filter_plasma_flow`` (L/h): the
        plasma flow Q of the session of each post-filter level (:attr:`level_post_filter`, in
        their order).
        """
        n = self.kinetics.n_events
        t = np.zeros((self.n_cases, n))
        for i, ev in enumerate(self.events):
            t[i, : len(ev.times)] = ev.resolve({name: 0.0 for name in ev.latent()})
            t[i, len(ev.times) :] = max(x.hi for x in ev.times)
        lo, hi = [], []
        for c, name in self.timings:
            lo.append(self.events[c].latent()[name][0])
            hi.append(self.events[c].latent()[name][1])
        priors = [clearance_prior(self.drug, c.kidney_function) for c in self.cases]
        guess = []
        for c in self.cases:
            measured = [
                x.value
                for x in c.concentrations
                if x.value and not x.below_lloq and not x.post_filter
            ]
            c_ref = measured[0] if measured else (self.drug.therapeutic_high or 1.0)
            weight = c.patient.weight or self.drug.weight.median
            guess.append(math.log(c_ref * self.drug.priors.volume.median * weight))
        data = {
            "event_time": t,
            "timing_lo": np.array(lo, float),
            "timing_hi": np.array(hi, float),
            "dose_amount": _pad([[d.amount for d in c.doses] for c in self.cases], 0.0, float),
            "log_weight": np.array([math.log(c.patient.weight or 1.0) for c in self.cases]),
            "cl_mean": np.array([m for m, _ in priors]),
            "cl_chol": np.array([chol for _, chol in priors]),
            "log_a0_guess": np.array(guess),
            "level_log_y": np.log(self.levels.value),
            "urine_log_y": np.log(self.urine.value),
            "effluent_log_y": np.log(self.effluent.value),
            "effluent_sample_log_y": np.log(self.effluent_samples.value),
            "ectr_bound": self.ectr_bound()[1],
            "filter_plasma_flow": np.array(
                [
                    plasma_flow(c, x.session)
                    for c in self.cases
                    for x in c.concentrations
                    if x.post_filter
                ],
                dtype=float,
            ),
            "effluent_sample_flow": np.array(
                [
                    s.effluent_flow
                    for c in self.cases
                    for s in c.sessions
                    for _ in s.effluent_samples
                ],
                dtype=float,
            ),
        }
        return {k: np.asarray(v, dtype=float) for k, v in data.items()}

    def ectr_bound(self) -> tuple[np.ndarray, np.ndarray]:
        """Where CL_ECTR is bounded by a reported flow, and the bound: (mask (C, M) bool,
        bound (C, M) L/h, 1 where unbounded).

        The plasma flow through the filter, Q_B (1 − Hct), bounds the clearance of the plasma
        concentration (a filter cannot clear more plasma than passes through it): per case and
        modality the smallest over its sessions with a ``blood_flow`` (one CL_ECTR serves them
        all). Without the patient's haematocrit the bound is the blood flow itself (Hct = 0: the
        plasma flow never exceeds it)."""
        m = max(len(self.modalities), 1)
        bound = np.full((self.n_cases, m), np.inf)
        for i, c in enumerate(self.cases):
            for k, s in enumerate(c.sessions, 1):
                q = plasma_flow(c, k)
                if q is not None:
                    j = self.modalities.index(s.modality)
                    bound[i, j] = min(bound[i, j], q)
        mask = np.isfinite(bound)
        return mask, np.where(mask, bound, 1.0)

    def structure(self) -> dict:
        """What fixes the shape of the batch's model: each case's :func:`structure` (numbers
        blanked), and the drug. Two batches with the same structure differ only in
        :attr:`data`, and share one compiled model."""
        return {"drug": self.drug.name, "cases": [structure(c) for c in self.cases]}

    def timing_scatter(self) -> tuple[np.ndarray, np.ndarray]:
        """Where the latent timings enter the event times: (flat event index, timing index)
        pairs, so that times = event_time + scatter-add of the timings. An end given by a
        duration adds its start's timing too."""
        n = self.kinetics.n_events
        rows, cols = [], []
        index = {key: k for k, key in enumerate(self.timings)}
        for c, ev in enumerate(self.events):
            names = list(ev.latent())
            basis = ev.resolve({name: 0.0 for name in names})
            for e in range(len(ev.times)):
                for name in names:
                    probe = ev.resolve({k: float(k == name) for k in names})[e] - basis[e]
                    if probe:
                        rows.append(c * n + e)
                        cols.append(index[(c, name)])
        return np.array(rows, dtype=int), np.array(cols, dtype=int)

    def case_of(self, dim: str) -> np.ndarray:
        """Index of the case of each label of a case-wise dimension."""
        return {
            "level": self.levels.case,
            "urine": self.urine.case,
            "effluent": self.effluent.case,
            "effluent_sample": self.effluent_samples.case,
            "session": np.array([c for c, _ in self.sessions], dtype=int),
            "latent_time": np.array([c for c, _ in self.timings], dtype=int),
        }[dim]


def _numbered(pairs):
    """(case, number within the case) for a list of (case, ...) pairs."""
    seen: dict[int, int] = {}
    for c, _ in pairs:
        seen[c] = seen.get(c, -1) + 1
        yield c, seen[c]


def make_batch(cases: list[Case], drug: DrugModel) -> Batch:
    """Lay out ``cases`` (all of ``drug``) for the model (see :class:`Batch`)."""
    modalities = tuple(dict.fromkeys(m for c in cases for m in c.modalities))
    classes = tuple(k for k in KIDNEY_CLASSES if any(c.kidney_function == k for c in cases))
    events, designs, windows = [], [], []
    for c in cases:
        ev, design, index = case_events(c)
        local = c.modalities
        design = Design(
            **{
                **design.__dict__,
                "session_modality": tuple(
                    modalities.index(local[m]) for m in design.session_modality
                ),
            }
        )
        events.append(ev)
        designs.append(design)
        windows.append(index)
    single = len(cases) == 1

    def label(i, name):
        return name if single else f"{cases[i].id}:{name}"

    def observations(rows):
        rows = list(rows)
        return Observations(
            labels=tuple(label(i, name) for i, name, *_ in rows),
            case=np.array([r[0] for r in rows], dtype=int),
            where=np.array([r[2] for r in rows], dtype=int),
            value=np.array([r[3] for r in rows], dtype=float),
            censored=np.array([r[4] for r in rows], dtype=bool),
        )

    levels = observations(
        (i, level_name(j + 1), j, x.lloq if x.below_lloq else x.value, x.below_lloq)
        for i, c in enumerate(cases)
        for j, x in enumerate(c.concentrations)
    )
    # a level at the filter is cleared by its session's modality (the post-filter prediction)
    levels = Observations(
        **{
            **levels.__dict__,
            "modality": np.array(
                [
                    modalities.index(c.sessions[x.session - 1].modality) if x.session else 0
                    for c in cases
                    for x in c.concentrations
                ],
                dtype=int,
            ),
        }
    )
    urine = observations(
        (i, urine_name(j + 1), windows[i]["urine"][j], u.recovered, False)
        for i, c in enumerate(cases)
        for j, u in enumerate(c.urine)
    )
    effluent = observations(
        (i, session_name(j + 1), windows[i]["sessions"][j], s.amount, False)
        for i, c in enumerate(cases)
        for j, s in enumerate(c.sessions)
        if s.amount is not None
    )
    # effluent samples: the concentration at their sample position (after the levels), cleared
    # by their session's modality (make_batch's modality order)
    rows = [
        (i, effluent_sample_name(j, k), s.modality, e.concentration)
        for i, c in enumerate(cases)
        for j, s in enumerate(c.sessions, 1)
        for k, e in enumerate(s.effluent_samples, 1)
    ]
    positions = [p for ix in windows for p in ix["effluent_samples"]]
    samples = observations(
        (i, name, where, value, False)
        for (i, name, _, value), where in zip(rows, positions, strict=True)
    )
    samples = Observations(
        **{
            **samples.__dict__,
            "modality": np.array([modalities.index(m) for _, _, m, _ in rows], dtype=int),
        }
    )
    return Batch(
        cases=tuple(cases),
        drug=drug,
        events=tuple(events),
        kinetics=BatchDesign.stack(designs),
        windows=tuple(windows),
        modalities=modalities,
        kidney_classes=classes,
        timings=tuple((i, name) for i, ev in enumerate(events) for name in ev.latent()),
        levels=levels,
        urine=urine,
        effluent=effluent,
        effluent_samples=samples,
        sessions=tuple((i, w) for i, ix in enumerate(windows) for w in ix["sessions"]),
        collections=tuple((i, w) for i, ix in enumerate(windows) for w in ix["urine"]),
    )


@dataclass(frozen=True)
class ObservationKind:
    """One kind of observation: what it is, where its numbers are, what it is compared with.

    The observation registry (:data:`OBSERVATIONS`) is read by the model builder (densities,
    :mod:`dialyzability.model.observations`), the saved posterior's groups, the plots, the
    plan and the report.

    Attributes
    ----------
    name
        The dimension of its observations (and the ``pred_<name>`` variable).
    variable
        Its variable in ``observed_data``, ``log_likelihood`` and ``posterior_predictive``.
    error
        Key of its error prior in the drug model's ``errors``.
    label, unit
        What a clinician reads, and the unit of the values.
    select
        The batch's observations of this kind.
    """

    name: str
    variable: str
    error: str
    label: str
    unit: str
    select: Callable[[Batch], Observations]

    @property
    def prediction(self) -> str:
        """Name of the posterior variable it is compared with."""
        return f"pred_{self.name}"


#: every kind of observation, in the order of the outputs
OBSERVATIONS: tuple[ObservationKind, ...] = (
    # every measured concentration of the drug in the patient's blood, whatever its matrix and
    # its site: the prediction (``pred_level``) is C_p(t) times a per-level factor, B:P for a
    # whole-blood level (:attr:`Batch.level_blood`) and 1 − CL_ECTR/Q for a post-filter level
    # (:attr:`Batch.level_post_filter`). A post-filter level is a level, not a kind of its own:
    # it is measured by the same assay in the same matrix as the pre-filter level beside it, so
    # it shares the level's error prior and error SD (a case's levels form one group), its
    # censoring below the LLOQ, its labels (``level3``), its latent time and its place in the
    # plan; only its prediction differs, in one place (:func:`~dialyzability.model.build.
    # build_model`).
    ObservationKind("level", "concentration", "level", "Plasma level", "mg/L", lambda b: b.levels),
    ObservationKind("urine", "urine_amount", "urine", "Urine amount", "mg", lambda b: b.urine),
    ObservationKind(
        "effluent", "effluent_amount", "effluent", "Effluent amount", "mg", lambda b: b.effluent
    ),
    # C_E(t) = CL_ECTR · C_p(t) / Q_E: the drug cleared from plasma appears in the effluent flow
    # (mass balance over the filter; CL_ECTR / Q_E is the saturation or sieving coefficient)
    ObservationKind(
        "effluent_sample",
        "effluent_concentration",
        "effluent_sample",
        "Effluent concentration",
        "mg/L",
        lambda b: b.effluent_samples,
    ),
)
