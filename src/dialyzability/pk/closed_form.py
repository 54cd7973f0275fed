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
events is not fixed: :func:`solve_batch` ranks the event times at every evaluation (by pairwise
comparison, so no sort operation sits in the gradient's path) and follows that order, so any order
is handled exactly. The whole computation is vectorised (no loop over intervals)
and is written once against an array namespace ``xp``: ``numpy`` for simulation, checks and the
posterior's curves, ``pytensor.tensor`` inside the PyMC model when it is sampled through JAX. For
the other backends the model uses the same solution as one compiled operation with a
hand-written gradient (:mod:`dialyzability.pk.kernel`), checked against this one.
"""

from __future__ import annotations

import numpy as np

from dialyzability.design import BatchDesign

#: below this |h| = |b - a| t / 2, D is evaluated by its even Taylor series
_SERIES_BELOW = 1e-3


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


def _gather(values, index, n, xp):
    """values[c, index[c, k]] for a (C, n) tensor and a (C, K) integer index, by one-hot sums
    (the same code for numpy and pytensor, and for integer or float values)."""
    onehot = xp.equal(index[..., None], np.arange(n)[None, None, :])
    return xp.where(onehot, values[:, None, :], 0).sum(axis=-1)


def _lower_exp(rate_times, n, xp):
    """M[c, p, q] = exp(-(x_cp - x_cq)) for q <= p, 0 above the diagonal (x non-decreasing)."""
    below = np.tril(np.ones((n, n), dtype=bool))[None, :, :]
    diff = rate_times[:, :, None] - rate_times[:, None, :]
    return xp.where(below, xp.exp(-xp.where(below, diff, 0.0)), 0.0)


def solve_batch(times, design: BatchDesign, volume, cl, cl_ectr, ka, bioavailability, a0, xp=np):
    """Concentrations at the sample events and AUCs over the windows of a batch of cases,
    vectorised over cases (no loop).

    Parameters
    ----------
    times
        (C, n) event times (h).
    design
        A :class:`BatchDesign`.
    volume, cl, ka, bioavailability, a0
        (C,) per case.
    cl_ectr
        (C, M) extracorporeal clearance of each case per modality (L/h).

    Returns
    -------
    dict
        ``conc`` (C, L) mg/L, ``auc`` (C, W) mg·h/L, and on the sorted grid ``grid`` (C, n),
        ``amount`` (C, n), ``gut`` (C, n), ``k`` (C, n - 1).
    """
    n = design.n_events
    idx = np.arange(n)
    # stable rank of each event by comparisons (no sort op: ranks carry no gradient, times do)
    t_e, t_j = times[:, :, None], times[:, None, :]
    earlier = (t_j < t_e) | (xp.equal(t_j, t_e) & (idx[None, None, :] < idx[None, :, None]))
    pos = earlier.sum(axis=-1)  # (C, n): position of each event on the sorted grid
    grid = xp.where(xp.equal(idx[None, :, None], pos[:, None, :]), times[:, None, :], 0.0).sum(
        axis=-1
    )
    dt = grid[:, 1:] - grid[:, :-1]
    mid = 0.5 * (grid[:, 1:] + grid[:, :-1])
    volume_c = volume[:, None]

    # elimination rate constant on each interval
    k = (cl / volume)[:, None] + 0.0 * dt
    if design.session_mask.any():
        starts = _gather(times, design.session_start, n, xp)
        ends = _gather(times, design.session_end, n, xp)
        running = (
            (starts[:, :, None] <= mid[:, None, :])
            & (mid[:, None, :] < ends[:, :, None])
            & design.session_mask[:, :, None]
        )
        m = int(design.session_modality.max()) + 1
        cl_sessions = _gather(cl_ectr[:, :m], design.session_modality, m, xp)
        k = k + (xp.where(running, 1.0, 0.0) * cl_sessions[:, :, None]).sum(axis=1) / volume_c

    # inputs on the grid: oral doses into the gut, iv doses and a0 into the body
    dose_pos = _gather(pos, design.dose_event, n, xp)
    at = xp.where(xp.equal(dose_pos[..., None], idx[None, None, :]), 1.0, 0.0)  # (C, D, n)
    oral = design.dose_oral.astype(float)
    g_in = (at * (bioavailability[:, None] * design.dose_amount * oral)[..., None]).sum(axis=1)
    a_in = (at * (design.dose_amount * (1.0 - oral))[..., None]).sum(axis=1)
    has_a0 = design.initial_event >= 0
    if has_a0.any():
        init_pos = _gather(pos, np.maximum(design.initial_event, 0)[:, None], n, xp)
        at0 = xp.where(xp.equal(init_pos, idx[None, :]), 1.0, 0.0)  # (C, n)
        a_in = a_in + at0 * (a0 * has_a0)[:, None]

    # gut: G_p = sum_{q<=p} g_in_q exp(-ka (t_p - t_q))
    gut = (_lower_exp(ka[:, None] * grid, n, xp) * g_in[:, None, :]).sum(axis=-1)
    d = divided_exp(k, ka[:, None], dt, xp)
    # body: A_p = sum_{q<=p} s_q exp(-(L_p - L_q)), L = cumulative sum of k dt,
    # with s_p = a_in_p + ka G_{p-1} D_{p-1} (absorption during the interval ending at p)
    zero = np.zeros((design.n_cases, 1))
    cum = xp.concatenate([zero, xp.cumsum(k * dt, axis=-1)], axis=-1)
    source = a_in + xp.concatenate([zero, ka[:, None] * gut[:, :-1] * d], axis=-1)
    amount = (_lower_exp(cum, n, xp) * source[:, None, :]).sum(axis=-1)

    # integral of A over each interval by mass balance
    gut_end = gut[:, :-1] * xp.exp(-ka[:, None] * dt)
    amount_end = amount[:, :-1] * xp.exp(-k * dt) + ka[:, None] * gut[:, :-1] * d
    integral = (gut[:, :-1] - gut_end + amount[:, :-1] - amount_end) / k

    out = {"grid": grid, "amount": amount, "gut": gut, "k": k}
    sample_pos = _gather(pos, design.samples, n, xp)
    out["conc"] = _gather(amount, sample_pos, n, xp) / volume_c
    lo = _gather(pos, design.windows[..., 0], n, xp)
    hi = _gather(pos, design.windows[..., 1], n, xp)
    inside = (lo[:, :, None] <= idx[None, None, :-1]) & (idx[None, None, :-1] < hi[:, :, None])
    out["auc"] = (xp.where(inside, 1.0, 0.0) * integral[:, None, :]).sum(axis=-1) / volume_c
    return out


def concentration_at(solution: dict, volume, cl, ka, query):
    """Concentration (mg/L) at any times ``query`` (h), from a numpy :func:`solve_batch` result.

    From the state just after the last event at or before each query time, the interval formula
    of the module docstring is applied with that interval's k (after the last event: endogenous
    clearance only, since every session has ended). Before the first event the body is empty.

    Parameters
    ----------
    solution
        The dict returned by :func:`solve_batch` (numpy; then every array below has the batch
        as its first axis), or one case's row of it.
    volume, cl, ka
        V (L), endogenous clearance (L/h) and absorption rate (1/h) used for ``solution``:
        scalars, or (B,) for a batch.
    query
        Times (h), any order: (P,), or (B, P) for a batch (or (P,), the same for all).
    """
    grid = np.asarray(solution["grid"], dtype=float)
    single = grid.ndim == 1
    grid, amount, gut, k = (
        np.atleast_2d(np.asarray(solution[name], dtype=float))
        for name in ("grid", "amount", "gut", "k")
    )
    volume, cl, ka = (np.atleast_1d(np.asarray(x, dtype=float))[:, None] for x in (volume, cl, ka))
    query = np.broadcast_to(np.asarray(query, dtype=float), (len(grid), np.shape(query)[-1]))
    n = grid.shape[1]
    # index of the last grid time <= query (searchsorted side="right" minus one), per row
    p = (grid[:, None, :] <= query[:, :, None]).sum(axis=-1) - 1
    before = p < 0
    p = np.clip(p, 0, n - 1)
    # rate on the interval starting at grid point p; after the last one, endogenous only
    rate = np.take_along_axis(np.concatenate([k.reshape(len(grid), n - 1), cl / volume], 1), p, 1)
    dt = np.maximum(query - np.take_along_axis(grid, p, 1), 0.0)
    a, g = np.take_along_axis(amount, p, 1), np.take_along_axis(gut, p, 1)
    conc = (a * np.exp(-rate * dt) + ka * g * divided_exp(rate, ka, dt)) / volume
    conc = np.where(before, 0.0, conc)
    return conc[0] if single else conc
