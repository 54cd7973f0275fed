"""Kinetics evaluated per posterior draw: concentration curves and time below a threshold.

A fit's posterior holds, per draw, the pharmacokinetic parameters and the latent timings; the
closed-form kinetics (numpy backend) turn each draw into a concentration curve. Used for the
fitted-levels figure and for the "hours of toxicity saved" by the ECTR that was given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .kinetics import concentration_at, solve
from .model import case_events


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

    def __len__(self) -> int:
        return len(self.volume)


def flat_draws(fit, max_draws: int | None = None) -> Draws:
    """The draws of a fit, thinned evenly to at most ``max_draws``."""
    post = fit.idata.posterior
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
    latent = {name: flat(name) for name in events.latent()}
    times = np.stack(np.broadcast_arrays(*events.resolve(latent), np.zeros(len(index))), axis=1)
    return Draws(
        volume=flat("volume"),
        cl=flat("cl_renal") + flat("cl_nonrenal"),
        cl_ectr=flat("cl_ectr") if "cl_ectr" in post else np.zeros((len(index), 1)),
        ka=flat("ka"),
        bioavailability=flat("bioavailability", 1.0),
        a0=flat("a0", 0.0),
        times=times[:, :-1],
        index=index,
    )


def solutions(fit, ectr: bool = True, max_draws: int | None = None):
    """Yield (draws, i, solution) for each (thinned) draw: the numpy :func:`solve` of that draw,
    with its extracorporeal clearances, or with none when ``ectr`` is False."""
    _, design, _ = case_events(fit.case)
    d = flat_draws(fit, max_draws)
    for i in range(len(d)):
        cl_ectr = d.cl_ectr[i] if ectr else np.zeros_like(d.cl_ectr[i])
        args = (d.volume[i], d.cl[i], cl_ectr, d.ka[i], d.bioavailability[i], d.a0[i])
        yield d, i, solve(d.times[i], design, *args)


def curves(fit, query, ectr: bool = True, max_draws: int | None = 1000) -> np.ndarray:
    """Concentration (mg/L) at the times ``query`` (h) for each (thinned) draw: (draws, times).

    With ``ectr=False`` the same draws without any extracorporeal clearance.
    """
    rows = [
        concentration_at(sol, d.volume[i], d.cl[i], d.ka[i], query)
        for d, i, sol in solutions(fit, ectr, max_draws)
    ]
    return np.array(rows).reshape(-1, len(query))


def time_below(fit, threshold: float, ectr: bool = True, points: int = 800) -> np.ndarray:
    """For each draw, the time (h, case clock) after which the level stays below ``threshold``.

    The curve is evaluated from the first event to the last event plus twelve endogenous
    half-lives, on ``points`` times; the last crossing is refined by log-linear interpolation.
    A draw whose level never exceeds the threshold gets the first event's time.
    """
    out = []
    for d, i, sol in solutions(fit, ectr):
        thalf = math.log(2) * d.volume[i] / d.cl[i]
        t = np.linspace(d.times[i].min(), d.times[i].max() + 12 * thalf, points)
        out.append(
            _last_crossing(t, concentration_at(sol, d.volume[i], d.cl[i], d.ka[i], t), threshold)
        )
    return np.array(out)


def _last_crossing(t: np.ndarray, c: np.ndarray, threshold: float) -> float:
    """Time after which ``c`` stays below ``threshold`` (log-linear between grid points)."""
    above = np.nonzero(c > threshold)[0]
    if len(above) == 0:
        return float(t[0])
    j = above[-1]
    if j == len(t) - 1:
        return float(t[-1])
    c1, c2 = c[j], max(c[j + 1], 1e-300)
    frac = math.log(c1 / threshold) / math.log(c1 / c2) if c1 > c2 else 0.0
    return float(t[j] + frac * (t[j + 1] - t[j]))


def toxicity_draws(fit, threshold: float) -> dict[str, np.ndarray]:
    """Times below ``threshold`` with the ECTR given and without any ECTR, and their difference.

    Returns arrays with the posterior's (chain, draw) shape: ``time_below_ectr`` and
    ``time_below_no_ectr`` (h on the case clock) and ``hours_saved`` (their difference, >= 0
    since extracorporeal clearance only adds to elimination).
    """
    post = fit.idata.posterior
    shape = (post.sizes["chain"], post.sizes["draw"])
    with_ectr = time_below(fit, threshold, ectr=True)
    without = time_below(fit, threshold, ectr=False)
    saved = without - with_ectr
    return {
        "time_below_ectr": with_ectr.reshape(shape),
        "time_below_no_ectr": without.reshape(shape),
        "hours_saved": saved.reshape(shape),
    }
