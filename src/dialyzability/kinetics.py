"""Closed-form one-compartment kinetics with first-order absorption and piecewise-constant
elimination.

The system (DESIGN §4):

    dG/dt = -ka G                          G: amount in the gut (mg)
    dA/dt =  ka G - k(t) A,  C = A / V     A: amount in the body (mg), V in L
    k(t)  = (CL + sum of CL_ECTR of the sessions running at t) / V

Oral doses add F·dose to G, intravenous doses add the dose to A. Between two consecutive events
(doses, session starts and ends, window limits, sampling times) k is constant and, on an interval
of length t from state (G0, A0) (Gibaldi M, Perrier D. Pharmacokinetics, 2nd ed., 1982, ch. 1):

    G(t) = G0 e^(-ka t)
    A(t) = A0 e^(-k t) + ka G0 D(k, ka, t),    D(a, b, t) = (e^(-a t) - e^(-b t)) / (b - a)

and, by mass balance (d(G + A)/dt = -k A), the integral of A over the interval is

    ∫A = (G0 - G(t) + A0 - A(t)) / k.

D is evaluated in a form that is exact at a == b and has finite gradients there (see
:func:`divided_exp`). Event times may be latent (uniform over a reported range), so the order of
events is not fixed: :func:`solve` ranks the event times at every evaluation (by pairwise
comparison, so no sort operation sits in the gradient's path) and follows that order, so any order
is handled exactly. The whole computation is vectorised (no loop over intervals)
and is written once against an array namespace ``xp``: ``numpy`` for simulation and checks,
``pytensor.tensor`` inside the PyMC model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: below this |h| = |b - a| t / 2, D is evaluated by its even Taylor series
_SERIES_BELOW = 1e-3


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


def divided_exp(a, b, t, xp=np):
    """D(a, b, t) = (e^(-a t) - e^(-b t)) / (b - a), exact and smooth at a == b.

    With m = (a + b)/2 and h = (b - a) t / 2, D = t e^(-m t) sinh(h)/h, an even function of h.
    For |h| < 1e-3 the series sinh(h)/h = 1 + h²/6 + h⁴/120 (next term h⁶/5040 < 2e-22) is used;
    otherwise the equivalent overflow-free form t e^(-min(a, b) t) (1 - e^(-2|h|)) / (2|h|), with
    |h| replaced by 1 in the unused branch so that neither branch is NaN and gradients stay
    finite (DESIGN §4).

    Parameters
    ----------
    a, b
        Rate constants (1/h), non-negative.
    t
        Interval length (h), non-negative.
    xp
        ``numpy`` or ``pytensor.tensor``.

    Examples
    --------
    >>> float(divided_exp(0.1, 0.1, 2.0))  # limit t e^(-a t) = 2 e^(-0.2)
    1.637461506155964
    >>> round(float(divided_exp(0.1, 1.0, 2.0)), 12)  # (e^-0.2 - e^-2) / 0.9
    0.759328299824
    """
    h = 0.5 * (b - a) * t
    small = xp.abs(h) < _SERIES_BELOW
    h2 = h * h
    series = t * xp.exp(-0.5 * (a + b) * t) * (1.0 + h2 / 6.0 + h2 * h2 / 120.0)
    safe = xp.where(small, 1.0, xp.abs(h))
    general = t * xp.exp(-xp.minimum(a, b) * t) * (-xp.expm1(-2.0 * safe)) / (2.0 * safe)
    return xp.where(small, series, general)


def _lower_exp(rate_times, n, xp):
    """Matrix M[p, q] = exp(-(x_p - x_q)) for q <= p, 0 above the diagonal (x non-decreasing)."""
    below = np.tril(np.ones((n, n), dtype=bool))
    diff = rate_times[:, None] - rate_times[None, :]
    return xp.where(below, xp.exp(-xp.where(below, diff, 0.0)), 0.0)


def solve(times, design: Design, volume, cl, cl_ectr, ka, bioavailability=1.0, a0=0.0, xp=np):
    """Concentrations at the sample events and AUCs over the windows.

    Parameters
    ----------
    times
        Event times (h), a vector of length ``design.n_events``, in any order.
    design
        The case's structure (:class:`Design`).
    volume
        Volume of distribution V (L).
    cl
        Endogenous clearance, renal + non-renal (L/h); must be > 0.
    cl_ectr
        Extracorporeal clearance per modality (L/h), a vector.
    ka
        Absorption rate constant (1/h).
    bioavailability
        Oral bioavailability F.
    a0
        Amount (mg) entering the body at ``design.initial_event`` (cases without a dose).
    xp
        ``numpy`` or ``pytensor.tensor``.

    Returns
    -------
    dict
        ``conc`` (mg/L) at the samples, ``auc`` (mg·h/L) over the windows, and, on the sorted
        grid, ``grid`` (h), ``amount`` (mg in the body after the inputs at each grid time),
        ``gut`` (mg) and ``k`` (1/h, per interval).
    """
    n = design.n_events
    idx = np.arange(n)
    # stable rank of each event by comparisons (no sort op: ranks carry no gradient, times do)
    earlier = (times[None, :] < times[:, None]) | (
        xp.equal(times[None, :], times[:, None]) & (idx[None, :] < idx[:, None])
    )
    pos = earlier.sum(axis=1)  # position of each event on the sorted grid
    grid = xp.where(xp.equal(idx[:, None], pos[None, :]), 1.0, 0.0) @ times
    dt = grid[1:] - grid[:-1]
    mid = 0.5 * (grid[1:] + grid[:-1])

    # elimination rate constant on each interval
    k_endo = cl / volume
    if design.session_start:
        starts = times[np.array(design.session_start)]
        ends = times[np.array(design.session_end)]
        running = (starts[:, None] <= mid[None, :]) & (mid[None, :] < ends[:, None])
        cl_sessions = cl_ectr[np.array(design.session_modality)]
        k = k_endo + (xp.where(running, 1.0, 0.0) * cl_sessions[:, None]).sum(axis=0) / volume
    else:
        k = k_endo + 0.0 * dt

    # inputs on the grid: oral doses into the gut, iv doses and a0 into the body
    def inputs(events, amounts):
        at = xp.equal(pos[np.array(events)][:, None], idx[None, :])
        return (xp.where(at, 1.0, 0.0) * amounts[:, None]).sum(axis=0)

    zeros = np.zeros(n)
    amounts = np.array(design.dose_amount, dtype=float)
    oral = np.array(design.dose_oral, dtype=bool)
    g_in = zeros
    a_in = zeros
    if oral.any():
        g_in = inputs(np.array(design.dose_event)[oral], bioavailability * amounts[oral])
    if (~oral).any():
        a_in = a_in + inputs(np.array(design.dose_event)[~oral], amounts[~oral])
    if design.initial_event >= 0:
        a_in = a_in + inputs(np.array([design.initial_event]), a0 * np.ones(1))

    # gut: G_p = sum_{q<=p} g_in_q exp(-ka (t_p - t_q))
    gut = _lower_exp(ka * grid, n, xp) @ g_in
    d = divided_exp(k, ka, dt, xp)
    # body: A_p = sum_{q<=p} s_q exp(-(L_p - L_q)), L = cumulative sum of k dt,
    # with s_p = a_in_p + ka G_{p-1} D_{p-1} (absorption during the interval ending at p)
    cum = xp.concatenate([np.zeros(1), xp.cumsum(k * dt)])
    source = a_in + xp.concatenate([np.zeros(1), ka * gut[:-1] * d])
    amount = _lower_exp(cum, n, xp) @ source

    # integral of A over each interval by mass balance
    gut_end = gut[:-1] * xp.exp(-ka * dt)
    amount_end = amount[:-1] * xp.exp(-k * dt) + ka * gut[:-1] * d
    integral = (gut[:-1] - gut_end + amount[:-1] - amount_end) / k

    out = {"grid": grid, "amount": amount, "gut": gut, "k": k}
    if design.samples:
        out["conc"] = amount[pos[np.array(design.samples)]] / volume
    if design.windows:
        w = np.array(design.windows)
        lo, hi = pos[w[:, 0]], pos[w[:, 1]]
        inside = (lo[:, None] <= idx[None, :-1]) & (idx[None, :-1] < hi[:, None])
        out["auc"] = (xp.where(inside, 1.0, 0.0) * integral[None, :]).sum(axis=1) / volume
    return out


def concentration_at(solution: dict, volume, cl, ka, query):
    """Concentration (mg/L) at any times ``query`` (h), from a numpy :func:`solve` result.

    From the state just after the last event at or before each query time, the interval formula
    of the module docstring is applied with that interval's k (after the last event: endogenous
    clearance only, since every session has ended). Before the first event the body is empty.

    Parameters
    ----------
    solution
        The dict returned by :func:`solve` (numpy).
    volume, cl, ka
        V (L), endogenous clearance (L/h) and absorption rate (1/h) used for ``solution``.
    query
        Times (h), any order.
    """
    grid, amount, gut, k = solution["grid"], solution["amount"], solution["gut"], solution["k"]
    query = np.asarray(query, dtype=float)
    n = len(grid)
    p = np.searchsorted(grid, query, side="right") - 1
    before = p < 0
    p = np.clip(p, 0, n - 1)
    rate = np.where(p < n - 1, np.asarray(k)[np.minimum(p, n - 2)] if n > 1 else 0.0, cl / volume)
    dt = np.maximum(query - grid[p], 0.0)
    conc = (amount[p] * np.exp(-rate * dt) + ka * gut[p] * divided_exp(rate, ka, dt)) / volume
    return np.where(before, 0.0, conc)
