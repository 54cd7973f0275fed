"""Kinetics evaluated per posterior draw: concentration curves and time below a threshold.

A fit's posterior holds, per draw, the pharmacokinetic parameters and the latent timings; the
fit's structural model (:class:`~dialyzability.pk.structure.Structure`, numpy backend) turns each
draw into a concentration curve. Used for the fitted-levels figure, the rebound after each
session and the "hours of toxicity saved" by the ECTR that was given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dialyzability.design import BatchDesign, case_events
from dialyzability.pk.structure import Structure


@dataclass(frozen=True)
class Draws:
    """Flat posterior draws (one row per draw) of what the kinetics need."""

    volume: np.ndarray
    cl: np.ndarray  # endogenous clearance, L/h
    cl_ectr: np.ndarray  # (draws, modalities), L/h
    ka: np.ndarray
    bioavailability: np.ndarray
    a0: np.ndarray
    times: np.ndarray  # (draws, events), h
    index: np.ndarray  # positions of these draws in the flattened (chain, draw) order
    structure: Structure = field(default_factory=Structure)
    added: dict | None = None  # the structure's added parameters, (draws,) each

    def __len__(self) -> int:
        return len(self.volume)

    def params(self, rows, ectr: bool = True) -> dict:
        """The kinetics' parameters of draws ``rows`` (:meth:`Structure.solve`); without any
        extracorporeal clearance when ``ectr`` is False."""
        cl_ectr = self.cl_ectr[rows] if ectr else np.zeros_like(self.cl_ectr[rows])
        out = dict(
            volume=self.volume[rows],
            cl=self.cl[rows],
            cl_ectr=cl_ectr,
            ka=self.ka[rows],
            bioavailability=self.bioavailability[rows],
            a0=self.a0[rows],
        )
        return out | {k: v[rows] for k, v in (self.added or {}).items()}

    def slowest_rate(self, rows) -> np.ndarray:
        """The slowest rate (1/h) of draws ``rows`` off ECTR: the terminal elimination rate,
        or an absorption slower than it (flip-flop; the slow route of a dual absorption), which
        then sets how long the level stays up."""
        from dialyzability.pk.structure import macro_rates

        p = self.params(rows)
        if self.structure.compartments == 1:
            rate = p["cl"] / p["volume"]
        else:
            v1, v2 = self.structure.volumes(p)
            q = p["cl_intercompartmental"]
            rate = macro_rates(p["cl"] / v1, q / v1, q / v2)[1]
        rate = np.minimum(rate, p["ka"])
        if "ka_slow" in p:
            rate = np.minimum(rate, p["ka_slow"])
        return rate


def flat_draws(fit, max_draws: int | None = None) -> Draws:
    """The draws of a (single-case view of a) fit, thinned evenly to at most ``max_draws``."""
    post = fit.draws
    n = post.sizes["chain"] * post.sizes["draw"]
    index = np.arange(n)
    if max_draws is not None and n > max_draws:
        index = np.linspace(0, n - 1, max_draws).round().astype(int)

    def flat(name, default=None):
        if name not in post:
            return np.full(len(index), default, dtype=float)
        values = post[name].values
        return values.reshape(n, *values.shape[2:])[index]

    events, _, _ = case_events(fit.case)
    timing = post["timing"].values.reshape(n, -1)[index] if "timing" in post else None
    labels = list(post["latent_time"].values) if timing is not None else []
    latent = {name: timing[:, labels.index(name)] for name in events.latent()}
    times = np.stack(np.broadcast_arrays(*events.resolve(latent), np.zeros(len(index))), axis=1)
    structure = Structure.from_record(fit.config.get("structure"))
    return Draws(
        structure=structure,
        added={name: flat(name) for name in structure.parameters},
        volume=flat("volume"),
        cl=flat("cl_renal") + flat("cl_nonrenal"),
        cl_ectr=flat("cl_ectr") if "cl_ectr" in post else np.zeros((len(index), 1)),
        ka=flat("ka"),
        bioavailability=flat("bioavailability", 1.0),
        a0=flat("a0", 0.0),
        times=times[:, :-1],
        index=index,
    )


#: draws solved at once (bounds the memory of the batched kinetics: ~ draws x points x events)
_CHUNK = 500


def solutions(fit, ectr: bool = True, max_draws: int | None = None) -> list[tuple]:
    """(draws, rows, solution) by chunks of (thinned) draws: the numpy
    :class:`~dialyzability.pk.structure.Solution` of those draws under the fit's structural
    model (``rows`` index ``draws``), with their extracorporeal clearances, or with none when
    ``ectr`` is False.

    Solved once per (single-case view of a) fit and setting, and kept with it: the hours below
    the threshold, the rebound after each session and the plan read the same solutions."""
    key = ("solutions", ectr, max_draws)
    if key not in fit.__dict__:
        _, design, _ = case_events(fit.case)
        d = flat_draws(fit, max_draws)
        chunks = []
        for start in range(0, len(d), _CHUNK):
            rows = np.arange(start, min(start + _CHUNK, len(d)))
            batch = BatchDesign.stack([design] * len(rows))
            chunks.append((d, rows, d.structure.solve(d.times[rows], batch, d.params(rows, ectr))))
        fit.__dict__[key] = chunks
    return fit.__dict__[key]


def curves(fit, query, ectr: bool = True, max_draws: int | None = 1000) -> np.ndarray:
    """Concentration (mg/L) at the times ``query`` (h) for each (thinned) draw: (draws, times).

    With ``ectr=False`` the same draws without any extracorporeal clearance.
    """
    query = np.asarray(query, dtype=float)
    parts = [sol.at(query) for _, _, sol in solutions(fit, ectr, max_draws)]
    return np.concatenate(parts).reshape(-1, len(query))


def time_below(fit, threshold: float, ectr: bool = True, points: int = 800) -> np.ndarray:
    """For each draw, the time (h, case clock) after which the level stays below ``threshold``.

    The curve is evaluated from the first event to the last event plus twelve half-lives of
    the slowest process off ECTR (:meth:`Draws.slowest_rate`), on ``points`` times; the last
    crossing is refined by log-linear interpolation.
    A draw whose level never exceeds the threshold gets the first event's time.
    """
    out = []
    for d, r, sol in solutions(fit, ectr):
        thalf = math.log(2) / d.slowest_rate(r)
        lo, hi = d.times[r].min(axis=1), d.times[r].max(axis=1) + 12 * thalf
        t = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, points)[None, :]
        out.append(_last_crossing(t, sol.at(t), threshold))
    return np.concatenate(out)


def _last_crossing(t: np.ndarray, c: np.ndarray, threshold: float) -> np.ndarray:
    """Per row, the time after which ``c`` stays below ``threshold`` (log-linear between grid
    points); ``t`` and ``c`` are (rows, points)."""
    above = c > threshold
    points = t.shape[1]
    j = points - 1 - np.argmax(above[:, ::-1], axis=1)  # last point above
    j_next = np.minimum(j + 1, points - 1)
    c1 = np.take_along_axis(c, j[:, None], 1)[:, 0]
    c2 = np.maximum(np.take_along_axis(c, j_next[:, None], 1)[:, 0], 1e-300)
    t1 = np.take_along_axis(t, j[:, None], 1)[:, 0]
    t2 = np.take_along_axis(t, j_next[:, None], 1)[:, 0]
    falling = c1 > c2
    ratio = np.where(falling, c1 / np.where(falling, c2, 1.0), 2.0)
    frac = np.where(falling, np.log(np.maximum(c1, 1e-300) / threshold) / np.log(ratio), 0.0)
    out = t1 + frac * (t2 - t1)
    out = np.where(j == points - 1, t[:, -1], out)
    return np.where(above.any(axis=1), out, t[:, 0])


def toxicity_draws(fit, threshold: float) -> dict[str, np.ndarray]:
    """Times below ``threshold`` with the ECTR given and without any ECTR, and their difference.

    Returns arrays with the posterior's (chain, draw) shape: ``time_below_ectr`` and
    ``time_below_no_ectr`` (h on the case clock) and ``hours_saved`` (their difference, >= 0
    since extracorporeal clearance only adds to elimination).
    """
    post = fit.draws
    shape = (post.sizes["chain"], post.sizes["draw"])
    with_ectr = time_below(fit, threshold, ectr=True)
    without = time_below(fit, threshold, ectr=False)
    saved = without - with_ectr
    return {
        "time_below_ectr": with_ectr.reshape(shape),
        "time_below_no_ectr": without.reshape(shape),
        "hours_saved": saved.reshape(shape),
    }
