"""Case(s) -> design: events, windows, observation index, the numbers as arrays (DESIGN §2).

Numpy only, no PyMC: what the model builder, the posterior curves, the simulator and the Stan
peer all read about a case's structure.
"""

from __future__ import annotations

import math
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


@dataclass
class Events:
    """Event times of a case: fixed values and latent ranges, with labels."""

    labels: list[str] = field(default_factory=list)
    times: list[Time] = field(default_factory=list)
    durations: dict[int, tuple[int, Time]] = field(default_factory=dict)

    def add(self, label: str, time: Time) -> int:
        self.labels.append(label)
        self.times.append(time)
        return len(self.labels) - 1

    def add_end(self, label: str, start: int, end: Time | None, duration: Time | None) -> int:
        """An end event: its own time (``end``), or ``start`` + ``duration``."""
        if end is not None:
            return self.add(label, end)
        assert duration is not None
        index = self.add(label, self.times[start] + duration)
        self.durations[index] = (start, duration)
        return index

    def _name(self, i: int) -> str | None:
        """Name of the latent variable behind event ``i`` (its time or its duration), if any."""
        if i in self.durations:
            duration = self.durations[i][1]
            return (
                f"t_{self.labels[i].removesuffix('_end')}_duration" if duration.is_range else None
            )
        return f"t_{self.labels[i]}" if self.times[i].is_range else None

    def latent(self) -> dict[str, tuple[float, float]]:
        """The timings that are unknown inside a range: variable name → (lo, hi) in hours."""
        out = {}
        for i in range(len(self.labels)):
            name = self._name(i)
            if name is not None:
                t = self.durations[i][1] if i in self.durations else self.times[i]
                out[name] = (t.lo, t.hi)
        return out

    def constants(self) -> np.ndarray:
        """Per event, the known number behind it (h): its time, or for an end given by a known
        duration that duration; 0 where the number is latent."""
        out = np.zeros(len(self.labels))
        for i, t in enumerate(self.times):
            if self._name(i) is None:
                out[i] = self.durations[i][1].lo if i in self.durations else t.lo
        return out

    def resolve(self, values: dict, xp=np, constants=None) -> list:
        """Event times (h) given values of the latent timings.

        ``values`` maps the names of :meth:`latent` to scalars, arrays of draws or tensors; the
        result is a list with one entry per event, broadcasting like the values. ``constants``
        (default :meth:`constants`) may be a tensor, so that a compiled model takes the known
        times as data.
        """
        constants = self.constants() if constants is None else constants
        times: list = []
        for i in range(len(self.times)):
            name = self._name(i)
            value = values[name] if name is not None else constants[i]
            if i in self.durations:
                value = times[self.durations[i][0]] + value
            times.append(value)
        return times


def case_events(case: Case) -> tuple[Events, Design, dict[str, object]]:
    """The events of a case and the :class:`Design` that indexes them.

    Events: ``first`` (earliest possible time of anything) and ``last`` (latest), doses, levels,
    urine windows, sessions. Windows: each urine collection, each session, and the whole
    course (first to last).
    """
    ev = Events()
    all_times = [d.time_h for d in case.doses] + [c.time_h for c in case.concentrations]
    for w in [*case.urine, *case.sessions]:
        all_times += [w.start_h, w.end]
    first = ev.add("first", Time(lo=min(t.lo for t in all_times), hi=min(t.lo for t in all_times)))
    last = ev.add("last", Time(lo=max(t.hi for t in all_times), hi=max(t.hi for t in all_times)))
    doses = [ev.add(f"dose{i}", d.time_h) for i, d in enumerate(case.doses, 1)]
    levels = [ev.add(f"level{i}", c.time_h) for i, c in enumerate(case.concentrations, 1)]
    urine = []
    for i, u in enumerate(case.urine, 1):
        s = ev.add(f"urine{i}_start", u.start_h)
        urine.append((s, ev.add_end(f"urine{i}_end", s, u.end_h, u.duration_h)))
    sessions = []
    for i, x in enumerate(case.sessions, 1):
        s = ev.add(f"session{i}_start", x.start_h)
        sessions.append((s, ev.add_end(f"session{i}_end", s, x.end_h, x.duration_h)))
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
        samples=tuple(levels),
        initial_event=first if not case.doses else -1,
        labels=tuple(ev.labels),
    )
    index = {
        "urine": list(range(len(urine))),
        "sessions": list(range(len(urine), len(urine) + len(sessions))),
        "course": len(urine) + len(sessions),
    }
    return ev, design, index


def _observations(case: Case) -> dict[str, list[int]]:
    """Which levels are quantified and which below the LLOQ, and which sessions have a
    measured recovery (indices into the case's lists)."""
    levels = case.concentrations
    return {
        "quantified": [i for i, c in enumerate(levels) if not c.below_lloq],
        "censored": [i for i, c in enumerate(levels) if c.below_lloq],
        "measured": [i for i, s in enumerate(case.sessions) if s.amount is not None],
    }


def model_data(case: Case, drug: DrugModel) -> dict[str, np.ndarray]:
    """Every number of the case that the model uses, by name (canonical units).

    The model takes these as data (``pm.Data``), so that one compiled model serves every case
    of the same :func:`structure` (see
    :mod:`dialyzability.inference.compiled`). Logs are taken here.

    Returns
    -------
    dict
        ``event_constants`` (h, :meth:`Events.constants`), ``latent_lo``/``latent_hi`` (h, the
        ranges of the latent timings), ``dose_amount`` (mg), ``log_weight`` (log kg, if known),
        ``cl_mean``/``cl_chol`` (:func:`clearance_prior` of the case's kidney function),
        ``log_a0_guess`` (log mg, cases without a dose), ``level_log_y`` and
        ``level_log_lloq`` (log mg/L), ``urine_log_y`` and ``effluent_log_y`` (log mg).
    """
    ev, _, _ = case_events(case)
    obs = _observations(case)
    latent = ev.latent()
    data = {
        "event_constants": ev.constants(),
        "latent_lo": np.array([lo for lo, _ in latent.values()], dtype=float),
        "latent_hi": np.array([hi for _, hi in latent.values()], dtype=float),
        "dose_amount": np.array([d.amount for d in case.doses], dtype=float),
    }
    mean, chol = clearance_prior(drug, case.kidney_function)
    data["cl_mean"], data["cl_chol"] = mean, chol
    if case.patient.weight is not None:
        data["log_weight"] = np.array(math.log(case.patient.weight))
    if not case.doses:
        measured = [c.value for c in case.concentrations if c.value and not c.below_lloq]
        c_ref = measured[0] if measured else (drug.therapeutic_high or 1.0)
        guess = c_ref * drug.priors.volume.median * (case.patient.weight or drug.weight.median)
        data["log_a0_guess"] = np.array(math.log(guess))
    levels = case.concentrations
    data["level_log_y"] = np.log([levels[i].value for i in obs["quantified"]])
    data["level_log_lloq"] = np.log([levels[i].lloq for i in obs["censored"]])
    data["urine_log_y"] = np.log([u.recovered for u in case.urine])
    data["effluent_log_y"] = np.log([case.sessions[i].amount for i in obs["measured"]])
    return {k: np.asarray(v, dtype=float) for k, v in data.items()}


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
    for key in ("id", "reference", "doi", "clock", "notes"):  # free text
        out.pop(key, None)
    return out
