"""Two-compartment disposition with first-order absorption and piecewise-constant central
elimination, as an array form (numpy) and as one compiled PyTensor operation with its gradient.

The system (Gibaldi M, Perrier D. Pharmacokinetics, 2nd ed., 1982, ch. 2):

    dG/dt  = -ka G                                  G: amount in the gut (mg)
    dA1/dt =  ka G - (k10(t) + k12) A1 + k21 A2     A1: central amount (mg), C = A1 / V1
    dA2/dt =  k12 A1 - k21 A2                       A2: peripheral amount (mg)
    k10(t) = (CL + sum of CL_ECTR of the sessions running at t) / V1,
    k12 = Q / V1,  k21 = Q / V2                     (V in L, CL and Q in L/h, t in h)

Oral doses add F·dose to G; intravenous doses add to A1; the latent body burden of a case without
a dose, a0 = (its central part, its peripheral part), to A1 and A2. The
events (doses, session starts and ends, window limits, samples) are those of the one-compartment
kinetics (:mod:`dialyzability.pk.closed_form`), with the same semantics: sorted stably (ties in
event order), the rate of an interval decided at its midpoint, a sample reading the state after
the inputs at its grid point, a window summing the intervals from its start event's grid point
to its end event's.

Between two consecutive grid points every rate is constant, and the state x = (G, A1, A2, I),
augmented with the running integral I of A1 (mg·h), evolves linearly, dx/dt = N x with

        | -ka        0            0    0 |
    N = |  ka  -(k10 + k12)      k21   0 |
        |   0       k12         -k21   0 |
        |   0        1            0    0 |

so that on an interval of length dt, x_end = expm(N dt) x_start, and the AUC of the interval is
I_end / V1 (from I_start = 0): no division by k10, and no closed form with denominators such as
(ka - alpha)(beta - alpha) that are singular where ka equals an eigenvalue of the disposition
matrix or where the two eigenvalues nearly coincide (small Q). The matrix exponential is exact
there like anywhere else.

Matrix exponential. N dt is essentially nonnegative (off-diagonal entries >= 0), so
expm(N dt) = e^mu expm(B) with B = N dt - mu I >= 0 entrywise for mu the smallest diagonal
entry. The kernel scales B by 2^-s until its infinity norm is at most 1/2, sums the Taylor
series of the scaled B to a degree whose omitted terms are below 2^-53 relative even for the
entries first reached through two rate constants (G to A2 and to I, A2 to I; degree 16 at
most), multiplies by e^(mu 2^-s) and squares s times (Higham NJ. The scaling and squaring
method for the matrix exponential revisited. SIAM J Matrix Anal Appl 2005;26:1179). Every term
and every product is of nonnegative numbers, so entries of the result are accurate relative to
themselves, late tiny concentrations included, to some 2^s units of roundoff (the conditioning
of e^x at x = mu; the shift and this accuracy for essentially nonnegative matrices: Shao M, Gao
W, Xue J. Aggressively truncated Taylor series method for accurate computation of exponentials
of essentially nonnegative matrices. Report UMINF 12.04, Umeå University, 2012). The integral
is carried as kappa I (kappa a power of two, an exact similarity) so that slow rates with long
intervals do not add squarings. The array form :func:`solve_batch`, the test oracle, uses
``scipy.linalg.expm`` (Padé) on N dt scaled to 1-norm <= 1/2, then squares.

Gradient. With lambda the adjoint of x_end, the gradient of lambda^T expm(M) x with respect to
the matrix M = N dt is the Fréchet derivative L(M^T, lambda x^T), the upper-right block of
expm([[M^T, lambda x^T], [0, M^T]]) (Al-Mohy AH, Higham NJ. Computing the Fréchet derivative of
the matrix exponential, with an application to condition number estimation. SIAM J Matrix Anal
Appl 2009;30:1639), computed by the same scaled, shifted Taylor polynomial of the block matrix
and the squaring recurrence L <- X L + L X, X <- X X; the same computation gives expm(M^T),
which carries lambda back to the start of the interval. The derivative in dt is
lambda^T N x_end. These chain to ka, k10 (hence CL, the CL_ECTR of the running sessions and V1),
k12 and k21 (Q, V1, V2), to the event times and to the inputs (doses, F, a0).

Cost: the kernel keeps kernel.py's layout (work arrays allocated once per call, element
indexing, the events of a case sorted by insertion). The matrices are handled as M^T, which
like its powers and exponential is block upper triangular with blocks (G), (A1, A2), (I): the
products skip the zero blocks. The Taylor polynomial is evaluated by Paterson-Stockmeyer in
A^4 (Paterson MS, Stockmeyer LJ. SIAM J Comput 1973;2:60): 3 + degree // 4 products, then s
squarings, per interval of positive length; the reverse pass repeats the forward pass and
needs three products where the forward pass needs one.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from dialyzability.design import BatchDesign
from dialyzability.pk.kernel import (
    _ORDER,
    _POS,
    _SESSIONS,
    _design_arrays,
    op_classes,
    place_case,
)

#: the scaled, shifted matrix 2^-s (N dt - mu I) has infinity norm at most this (kernel)
_THETA = 0.5
#: omitted Taylor terms below this, relative (kernel); the unit roundoff 2^-53
_TAIL = 2.0**-53
#: N dt is scaled to 1-norm at most this before scipy's expm (array form)
_SCIPY_THETA = 0.5


# ------------------------------------------------------------------------------------------
# array form (numpy)


def _matrices(ka, k10, k12, k21, dt):
    """N dt (..., 4, 4) for broadcast rate constants (1/h) and interval lengths (h), state
    order (G, A1, A2, I)."""
    ka, k10, k12, k21, dt = np.broadcast_arrays(
        *(np.asarray(x, dtype=float) for x in (ka, k10, k12, k21, dt))
    )
    m = np.zeros((*dt.shape, 4, 4))
    m[..., 0, 0] = -ka * dt
    m[..., 1, 0] = ka * dt
    m[..., 1, 1] = -(k10 + k12) * dt
    m[..., 1, 2] = k21 * dt
    m[..., 2, 1] = k12 * dt
    m[..., 2, 2] = -k21 * dt
    m[..., 3, 1] = dt
    return m


def expm_batch(m):
    """expm of a stack (..., 4, 4) of matrices: ``scipy.linalg.expm`` of each scaled by 2^-r to
    1-norm <= 1/2, squared r times (r per matrix). The prescaling keeps scipy's Padé
    approximant in its low-degree range, where the small entries of the result (late, tiny
    concentrations) stay accurate relative to themselves."""
    from scipy.linalg import expm

    m = np.asarray(m, dtype=float)
    norm = np.abs(m).sum(axis=-2).max(axis=-1)
    with np.errstate(divide="ignore"):
        r = np.where(norm > _SCIPY_THETA, np.ceil(np.log2(norm / _SCIPY_THETA)), 0.0)
    r = np.nan_to_num(r, nan=0.0, posinf=0.0).astype(int)
    if m.size == 0:
        return m.copy()
    e = expm(m * np.ldexp(1.0, -r)[..., None, None])
    for i in range(int(r.max(initial=0))):
        e = np.where((i < r)[..., None, None], e @ e, e)
    return e


def solve_batch(
    times,
    design: BatchDesign,
    volume,
    cl,
    cl_ectr,
    ka,
    bioavailability,
    a0,
    q,
    v2,
    dose_amount=None,
):
    """Concentrations at the sample events and AUCs over the windows of a batch of cases, for
    two-compartment disposition (numpy; a loop over the sorted intervals, batched over cases).

    Parameters
    ----------
    times
        (C, n) event times (h), any order.
    design
        A :class:`BatchDesign`.
    volume
        (C,) central volume V1 (L).
    cl
        (C,) endogenous clearance from the central compartment (L/h).
    cl_ectr
        (C, M) extracorporeal clearance of each case per modality (L/h).
    ka
        (C,) absorption rate constant (1/h).
    bioavailability
        (C,) oral bioavailability F.
    a0
        (C, 2) latent amounts (mg) added to the central and the peripheral compartment at
        ``design.initial_event`` (a body burden at distribution equilibrium is split between
        them: :meth:`~dialyzability.pk.structure.Structure.solve`); (C,) for the central one
        only.
    q
        (C,) intercompartmental clearance Q (L/h).
    v2
        (C,) peripheral volume V2 (L).
    dose_amount
        (C, D) dose amounts (mg), padded like ``design``; default ``design.dose_amount``.

    Returns
    -------
    dict
        ``conc`` (C, L) mg/L, ``auc`` (C, W) mg·h/L; on the sorted grid ``grid`` (C, n) h,
        ``state`` (C, n, 3) amounts (gut, central, peripheral) in mg after the inputs at each
        grid point, and ``k`` (C, n - 1) the central elimination rate k10 (1/h) per interval.
    """
    times = np.asarray(times, dtype=float)
    volume, cl, ka, f, a0, q, v2 = (
        np.asarray(x, dtype=float) for x in (volume, cl, ka, bioavailability, a0, q, v2)
    )
    if a0.ndim == 1:
        a0 = np.stack([a0, np.zeros_like(a0)], axis=-1)
    cl_ectr = np.asarray(cl_ectr, dtype=float)
    doses = np.asarray(design.dose_amount if dose_amount is None else dose_amount, dtype=float)
    n_cases, n = times.shape
    rows = np.arange(n_cases)[:, None]
    order = np.argsort(times, axis=1, kind="stable")
    grid = np.take_along_axis(times, order, axis=1)
    pos = np.empty_like(order)
    pos[rows, order] = np.arange(n)[None, :]
    dt = grid[:, 1:] - grid[:, :-1]
    mid = 0.5 * (grid[:, 1:] + grid[:, :-1])

    # k10 per interval: sessions running at the interval's midpoint
    rate = cl[:, None] + np.zeros_like(dt)
    starts = np.take_along_axis(times, design.session_start, axis=1)
    ends = np.take_along_axis(times, design.session_end, axis=1)
    running = (
        (starts[:, :, None] <= mid[:, None, :])
        & (mid[:, None, :] < ends[:, :, None])
        & design.session_mask[:, :, None]
    )
    cl_sessions = np.take_along_axis(cl_ectr, design.session_modality, axis=1)
    rate = rate + (running * cl_sessions[:, :, None]).sum(axis=1)
    k10 = rate / volume[:, None]

    # inputs on the grid
    g_in = np.zeros((n_cases, n))
    a_in = np.zeros((n_cases, n))
    dose_pos = np.take_along_axis(pos, design.dose_event, axis=1)
    oral = design.dose_oral.astype(bool)
    np.add.at(
        g_in,
        (np.broadcast_to(rows, dose_pos.shape), dose_pos),
        np.where(oral, f[:, None] * doses, 0.0),
    )
    np.add.at(a_in, (np.broadcast_to(rows, dose_pos.shape), dose_pos), np.where(oral, 0.0, doses))
    has_a0 = design.initial_event >= 0
    init_pos = pos[np.arange(n_cases), np.maximum(design.initial_event, 0)]
    np.add.at(a_in, (np.arange(n_cases), init_pos), np.where(has_a0, a0[:, 0], 0.0))
    p_in = np.zeros((n_cases, n))
    np.add.at(p_in, (np.arange(n_cases), init_pos), np.where(has_a0, a0[:, 1], 0.0))

    k12 = (q / volume)[:, None]
    k21 = (q / v2)[:, None]
    e = expm_batch(_matrices(ka[:, None], k10, k12, k21, dt))  # (C, n - 1, 4, 4)
    state = np.zeros((n_cases, n, 3))
    integral = np.zeros((n_cases, max(n - 1, 0)))
    x = np.zeros((n_cases, 4))
    x[:, 0], x[:, 1], x[:, 2] = g_in[:, 0], a_in[:, 0], p_in[:, 0]
    state[:, 0] = x[:, :3]
    for p in range(1, n):
        x_end = np.einsum("cij,cj->ci", e[:, p - 1], x)
        integral[:, p - 1] = x_end[:, 3]
        x = x_end.copy()
        x[:, 0] += g_in[:, p]
        x[:, 1] += a_in[:, p]
        x[:, 2] += p_in[:, p]
        x[:, 3] = 0.0
        state[:, p] = x[:, :3]

    sample_pos = np.take_along_axis(pos, design.samples, axis=1)
    conc = np.take_along_axis(state[:, :, 1], sample_pos, axis=1) / volume[:, None]
    lo = np.take_along_axis(pos, design.windows[..., 0], axis=1)
    hi = np.take_along_axis(pos, design.windows[..., 1], axis=1)
    idx = np.arange(n - 1)
    inside = (lo[:, :, None] <= idx[None, None, :]) & (idx[None, None, :] < hi[:, :, None])
    auc = (inside * integral[:, None, :]).sum(axis=-1) / volume[:, None]
    return {"conc": conc, "auc": auc, "grid": grid, "state": state, "k": k10}


def concentration_at(solution: dict, volume, cl, ka, q, v2, query):
    """Central concentration (mg/L) at any times ``query`` (h), from a :func:`solve_batch`
    result.

    From the state just after the last event at or before each query time, the interval's
    matrix exponential is applied with that interval's k10 (after the last event: endogenous
    clearance only, since every session has ended). Before the first event the body is empty.

    Parameters
    ----------
    solution
        The dict returned by :func:`solve_batch` (every array with the batch as its first axis),
        or one case's row of it.
    volume, cl, ka, q, v2
        V1 (L), endogenous clearance (L/h), absorption rate (1/h), intercompartmental clearance
        (L/h) and V2 (L) used for ``solution``: scalars, or (B,) for a batch.
    query
        Times (h), any order: (P,), or (B, P) for a batch (or (P,), the same for all).
    """
    central, _ = amounts_at(solution, volume, cl, ka, q, v2, query)
    v1 = np.asarray(volume, dtype=float)
    return central / (v1[:, None] if central.ndim > 1 and v1.ndim else v1.reshape(-1)[0])


def _propagate(x, ka, k10, k12, k21, t):
    """Central and peripheral amounts after a time ``t`` (h) from the state x = (G, A1, A2)
    (mg, last axis) under constant rates (1/h), in closed form (arrays broadcast).

    With α ≥ β the disposition rates (:func:`~dialyzability.pk.structure.macro_rates`) and
    M = [[−(k10 + k12), k21], [k12, −k21]] (Sylvester's formula, written with divided
    differences so that it holds at α = β; Gibaldi M, Perrier D. Pharmacokinetics, 2nd ed.,
    1982, ch. 2):

        e^(Mt) = e^(−αt) I + D(α, β, t) (M + αI),
        A(t) = e^(Mt) A(0) + ka G(0) [D(α, ka, t) e1 + D₂(α, β, ka, t) (M + αI) e1],

    D the divided exponential of :func:`~dialyzability.pk.closed_form.divided_exp` and
    D₂ = (D(α, ka, t) − D(β, ka, t)) / (β − α) its second divided difference (by the derivative
    of D in its first argument, a central difference, where β − α is below 1e-6 of α + β: the
    curves read from it need no more). The matrix exponential of :func:`solve_batch` is the
    reference it is tested against.
    """
    from dialyzability.pk.closed_form import divided_exp
    from dialyzability.pk.structure import macro_rates

    g, a1, a2 = x[..., 0], x[..., 1], x[..., 2]
    alpha, beta = macro_rates(k10, k12, k21)
    d_ab = divided_exp(alpha, beta, t)
    d_a = divided_exp(alpha, ka, t)
    gap = beta - alpha
    near = np.abs(gap) < 1e-6 * (alpha + beta)
    h = 1e-4 * (alpha + beta) + 1e-300
    safe = np.where(near, 1.0, gap)
    d2 = np.where(
        near,
        -(divided_exp(alpha + h, ka, t) - divided_exp(alpha - h, ka, t)) / (2 * h),
        (d_a - divided_exp(beta, ka, t)) / safe,
    )
    e_a = np.exp(-alpha * t)
    m11, m21 = alpha - k10 - k12, k12  # first column of M + αI
    m12, m22 = k21, alpha - k21  # second column
    central = e_a * a1 + d_ab * (m11 * a1 + m12 * a2) + ka * g * (d_a + d2 * m11)
    peripheral = e_a * a2 + d_ab * (m21 * a1 + m22 * a2) + ka * g * d2 * m21
    return central, peripheral


def amounts_at(solution: dict, volume, cl, ka, q, v2, query):
    """Amounts (mg) in the central and the peripheral compartment at the times ``query`` (h),
    as :func:`concentration_at` (which divides the central one by V1): a pair of (B, P)
    arrays, or of (P,) for one case's row. From the state after the last event before each
    query time, in closed form (:func:`_propagate`)."""
    grid = np.asarray(solution["grid"], dtype=float)
    single = grid.ndim == 1
    grid = np.atleast_2d(grid)
    b, n = grid.shape
    state = np.asarray(solution["state"], dtype=float).reshape(b, n, 3)
    k = np.asarray(solution["k"], dtype=float).reshape(b, n - 1)
    volume, cl, ka, q, v2 = (
        np.atleast_1d(np.asarray(x, dtype=float))[:, None] for x in (volume, cl, ka, q, v2)
    )
    query = np.broadcast_to(np.asarray(query, dtype=float), (b, np.shape(query)[-1]))
    # index of the last grid time <= query, per row
    p = (grid[:, None, :] <= query[:, :, None]).sum(axis=-1) - 1
    before = p < 0
    p = np.clip(p, 0, n - 1)
    rate = np.take_along_axis(np.concatenate([k, np.broadcast_to(cl / volume, (b, 1))], 1), p, 1)
    dt = np.maximum(query - np.take_along_axis(grid, p, 1), 0.0)
    x = np.take_along_axis(state, p[..., None], axis=1)  # (B, P, 3)
    central, peripheral = _propagate(x, ka, rate, q / volume, q / v2, dt)
    central = np.where(before, 0.0, central)
    peripheral = np.where(before, 0.0, peripheral)
    return (central[0], peripheral[0]) if single else (central, peripheral)


# ------------------------------------------------------------------------------------------
# compiled kernel (numba)

# Slots of the matrix work array (12, 4, 4) of a call: A and its powers, the result Y, two
# temporaries, and for the Fréchet derivative its block L and the blocks P_k of the powers of
# [[A, W], [0, A]] (P_1 = W).
_A, _A2, _A3, _A4, _Y, _TMP, _L, _TMP2, _W, _P2, _P3, _P4 = range(12)
_SLOTS = 12
#: first and last index of the diagonal block of each state (G | A1, A2 | I): the matrices
#: A = M^T scaled and their powers are block upper triangular, (A B)_rc sums k in
#: [_START[r], _END[c]]
_START = (0, 1, 1, 3)
_END = (0, 2, 2, 3)
#: Paterson-Stockmeyer block size: T(A) = sum_i (A^4)^i C_i, C_i of degree 3 in A
_PS = 4
#: 1 / k!
_INV_FACTORIAL = np.array([1.0 / math.factorial(k) for k in range(40)])


@numba.njit(cache=True)
def _fill_scaled(ka, k10, k12, k21, dt, mats):
    """Write A = 2^-s (D (N dt - mu I) D^-1)^T into ``mats[_A]`` (transposed, as the reverse
    pass needs it; the forward pass reads expm(M^T) by columns).

    mu = min(-ka dt, -(k10 + k12) dt, -k21 dt, 0) is the smallest diagonal entry of N dt, so
    A >= 0 entrywise. D = diag(1, 1, 1, kappa), kappa a power of two <= 1, scales the integral
    I to kappa I so that its row (kappa dt) does not set the norm when the rates are slow (a
    similarity, exact in floating point). s >= 0 is the least integer with ||A||_inf <= 1/2.

    Returns s, mu 2^-s, the Taylor degree and kappa. The degree is the least m for which the
    omitted terms, at most b^j / j! for j >= m relative to the first term of an entry first
    reached through two rate constants (G to A2 and to I, A2 to I), are below 2^-53
    (b = ||A||_inf <= 1/2: at most 16)."""
    m00 = -ka * dt
    m10 = ka * dt
    m11 = -(k10 + k12) * dt
    m12 = k21 * dt
    m21 = k12 * dt
    m22 = -k21 * dt
    mu = min(min(m00, m11), min(m22, 0.0))
    b00 = m00 - mu
    b11 = m11 - mu
    b22 = m22 - mu
    b33 = -mu
    rest = max(b00, max(m10 + b11 + m12, m21 + b22))
    kappa = 1.0
    ratio = dt / max(rest, _THETA)
    if 1.0 < ratio < 1e300:
        kappa = math.ldexp(1.0, -math.frexp(ratio)[1])
    m31 = kappa * dt
    norm = max(rest, m31 + b33)
    s = 0
    if _THETA < norm < 1e300:  # not for infinite or NaN entries (the result is NaN then)
        s = math.frexp(norm / _THETA)[1]
    scale = math.ldexp(1.0, -s)
    b = norm * scale
    term = 1.0
    j = 0
    while term > _TAIL and j < 30:
        j += 1
        term *= b / j
    for r in range(4):
        for c in range(4):
            mats[_A, r, c] = 0.0
    mats[_A, 0, 0] = b00 * scale
    mats[_A, 1, 1] = b11 * scale
    mats[_A, 2, 2] = b22 * scale
    mats[_A, 3, 3] = b33 * scale
    mats[_A, 0, 1] = m10 * scale
    mats[_A, 2, 1] = m12 * scale
    mats[_A, 1, 2] = m21 * scale
    mats[_A, 1, 3] = m31 * scale
    return s, mu * scale, j + 1, kappa


@numba.njit(cache=True)
def _mm_uu(mats, a, b, out):
    """mats[out] = mats[a] @ mats[b] for block upper triangular factors (blocks (G), (A1, A2),
    (I), as A^T: only the terms k in [_START[r], _END[c]] are nonzero)."""
    for r in range(4):
        for c in range(4):
            total = 0.0
            for k in range(_START[r], _END[c] + 1):
                total += mats[a, r, k] * mats[b, k, c]
            mats[out, r, c] = total


@numba.njit(cache=True)
def _mm_uf(mats, a, b, out):
    """mats[out] = mats[a] @ mats[b], mats[a] block upper triangular, mats[b] full."""
    for r in range(4):
        for c in range(4):
            total = 0.0
            for k in range(_START[r], 4):
                total += mats[a, r, k] * mats[b, k, c]
            mats[out, r, c] = total


@numba.njit(cache=True)
def _mm_fu_add(mats, a, b, out):
    """mats[out] += mats[a] @ mats[b], mats[a] full, mats[b] block upper triangular."""
    for r in range(4):
        for c in range(4):
            total = mats[out, r, c]
            for k in range(_END[c] + 1):
                total += mats[a, r, k] * mats[b, k, c]
            mats[out, r, c] = total


@numba.njit(cache=True)
def _powers(mats, degree, frechet):
    """A^2, A^3, A^4 (as far as ``degree`` needs them) and, for the Fréchet derivative, the
    blocks P_k = A P_(k-1) + W A^(k-1) of [[A, W], [0, A]]^k (P_1 = W)."""
    if degree >= 2:
        _mm_uu(mats, _A, _A, _A2)
        if frechet:
            _mm_uf(mats, _A, _W, _P2)
            _mm_fu_add(mats, _W, _A, _P2)
    if degree >= 3:
        _mm_uu(mats, _A2, _A, _A3)
        if frechet:
            _mm_uf(mats, _A, _P2, _P3)
            _mm_fu_add(mats, _W, _A2, _P3)
    if degree >= _PS:
        _mm_uu(mats, _A3, _A, _A4)
        if frechet:
            _mm_uf(mats, _A, _P3, _P4)
            _mm_fu_add(mats, _W, _A3, _P4)


@numba.njit(cache=True)
def _chunk(mats, i, degree, out, block):
    """mats[out] += C_i = sum over r < 4 of A^r / (4 i + r)! for 4 i + r <= degree (A^0 = I);
    with ``block`` the same sum of the blocks P_r instead (P_0 = 0)."""
    if not block:
        coef = _INV_FACTORIAL[_PS * i]
        for r in range(4):
            mats[out, r, r] += coef
    for k in range(1, _PS):
        if _PS * i + k > degree:
            break
        coef = _INV_FACTORIAL[_PS * i + k]
        slot = (_W, _P2, _P3)[k - 1] if block else (_A, _A2, _A3)[k - 1]
        for r in range(4):
            for c in range(4):
                mats[out, r, c] += coef * mats[slot, r, c]


@numba.njit(cache=True)
def _taylor(mats, degree, frechet):
    """mats[_Y] = T(A), the Taylor polynomial of degree ``degree`` of exp at A, by
    Paterson-Stockmeyer (T = C_0 + A^4 (C_1 + A^4 (C_2 + ...))), and for the Fréchet derivative
    mats[_L] = the upper-right block of T([[A, W], [0, A]]) by the same recurrence on blocks.
    Every term is nonnegative for A >= 0: no cancellation."""
    _powers(mats, degree, frechet)
    q = degree // _PS
    for r in range(4):
        for c in range(4):
            mats[_Y, r, c] = 0.0
            mats[_L, r, c] = 0.0
    _chunk(mats, q, degree, _Y, False)
    if frechet:
        _chunk(mats, q, degree, _L, True)
    for i in range(q - 1, -1, -1):
        if frechet:
            # [[A^4, P_4], [0, A^4]] [[Y, L], [0, Y]] = [[A^4 Y, A^4 L + P_4 Y], [0, A^4 Y]]
            _mm_uf(mats, _A4, _L, _TMP2)
            _mm_fu_add(mats, _P4, _Y, _TMP2)
            for r in range(4):
                for c in range(4):
                    mats[_L, r, c] = mats[_TMP2, r, c]
            _chunk(mats, i, degree, _L, True)
        _mm_uu(mats, _A4, _Y, _TMP)
        for r in range(4):
            for c in range(4):
                mats[_Y, r, c] = mats[_TMP, r, c]
        _chunk(mats, i, degree, _Y, False)


@numba.njit(cache=True)
def _expm_scaled(mats, s, log_c, degree):
    """mats[_Y] = expm(M) for M = 2^s A + mu I, from A = mats[_A] (:func:`_fill_scaled`) and
    log_c = mu 2^-s: X = e^(log_c) T(A), then s squarings (Higham 2005; nonnegative factors,
    so small entries keep their relative accuracy)."""
    _taylor(mats, degree, False)
    factor = math.exp(log_c)
    for r in range(4):
        for c in range(4):
            mats[_Y, r, c] *= factor
    for _ in range(s):
        _mm_uu(mats, _Y, _Y, _TMP)
        for r in range(4):
            for c in range(4):
                mats[_Y, r, c] = mats[_TMP, r, c]


@numba.njit(cache=True)
def _frechet_scaled(mats, s, log_c, degree):
    """mats[_Y] = expm(M^T) and mats[_L] = L(M^T, W), the Fréchet derivative of expm at M^T in
    the direction W, from A = mats[_A] = 2^-s (M^T - mu I) and mats[_W] = 2^-s W: the Taylor
    polynomial of the block matrix [[A, 2^-s W], [0, A]] (:func:`_taylor`), both blocks times
    e^(log_c), then s squarings of the block matrix, L <- X L + L X, X <- X X (Al-Mohy and
    Higham 2009)."""
    _taylor(mats, degree, True)
    factor = math.exp(log_c)
    for r in range(4):
        for c in range(4):
            mats[_Y, r, c] *= factor
            mats[_L, r, c] *= factor
    for _ in range(s):
        _mm_uf(mats, _Y, _L, _TMP)
        _mm_fu_add(mats, _L, _Y, _TMP)
        for r in range(4):
            for c in range(4):
                mats[_L, r, c] = mats[_TMP, r, c]
        _mm_uu(mats, _Y, _Y, _TMP)
        for r in range(4):
            for c in range(4):
                mats[_Y, r, c] = mats[_TMP, r, c]


# Rows of the float work array (rows, cases, width) that the forward pass fills: per grid
# point its time, the oral and iv inputs there, and (G, A1, A2) after the inputs; per interval
# (index of its start) k10 and the integral of A1; per session of the case (mask True, in
# order) its start and end time and CL_ECTR. The reverse pass adds four rows of adjoints.
_GRID, _G_IN, _A_IN, _GUT, _CENTRAL, _PERIPHERAL, _K, _INTEGRAL = range(8)
_S_LO, _S_HI, _S_CL = 8, 9, 10
_ROWS = 11
_ADJ_G, _ADJ_A1, _ADJ_A2, _ADJ_INTEGRAL = 11, 12, 13, 14
# The int work array's rows are the one-compartment kernel's (_ORDER, _POS, _SESSIONS).
#: the float rows that :func:`~dialyzability.pk.kernel.place_case` fills
_PLACE_ROWS = (_GRID, _G_IN, _A_IN, _S_LO, _S_HI, _S_CL)


@numba.njit(cache=True)
def _work(times, design, reverse):
    """Work arrays of one call, for all its cases at once (allocated once per call): (3, C,
    width) int, (rows, C, width) float (``reverse``: with the adjoint rows) and the matrix
    slots."""
    n_cases, n = times.shape
    width = max(n, design[2].shape[1] + 1)
    rows = _ROWS + 4 if reverse else _ROWS
    return (
        np.empty((3, n_cases, width), np.int64),
        np.empty((rows, n_cases, width)),
        np.empty((_SLOTS, 4, 4)),
    )


@numba.njit(cache=True)
def _forward_pass(times, volume, cl, cl_ectr, ka, f, a0, dose_amount, q, v2, design, iw, w, mats):
    """Forward pass of every case into the work arrays of :func:`_work`: sessions listed,
    events sorted by insertion (stable, ties in event order, NaN last), inputs placed on the
    grid, then one matrix exponential per interval (none for a zero-length one: the identity)."""
    n_cases, n = times.shape
    init = design[8]
    a0_central = np.ascontiguousarray(a0[:, 0])
    for c in range(n_cases):
        n_s = place_case(c, times, cl_ectr, f, a0_central, dose_amount, design, iw, w, _PLACE_ROWS)
        if n == 0:
            continue
        v, cl_c, ka_c = volume[c], cl[c], ka[c]
        k12 = q[c] / v
        k21 = q[c] / v2[c]
        at0 = iw[_POS, c, init[c]] if init[c] >= 0 else -1  # where a0 enters
        g = w[_G_IN, c, 0]
        a1 = w[_A_IN, c, 0]
        a2 = a0[c, 1] if at0 == 0 else 0.0
        w[_GUT, c, 0] = g
        w[_CENTRAL, c, 0] = a1
        w[_PERIPHERAL, c, 0] = a2
        for p in range(1, n):
            j = p - 1
            t_p, t_j = w[_GRID, c, p], w[_GRID, c, j]
            dt = t_p - t_j
            mid = 0.5 * (t_p + t_j)
            rate = cl_c
            for s in range(n_s):
                if w[_S_LO, c, s] <= mid and mid < w[_S_HI, c, s]:
                    rate += w[_S_CL, c, s]
            rate /= v
            w[_K, c, j] = rate
            if dt == 0.0:  # coincident events (and padding): expm(0) = I
                nan = 0.0 * (rate + ka_c + k12 + k21)  # NaN in, NaN out
                g, a1, a2 = g + nan, a1 + nan, a2 + nan
                w[_INTEGRAL, c, j] = nan
            else:
                sq, log_c, degree, kappa = _fill_scaled(ka_c, rate, k12, k21, dt, mats)
                _expm_scaled(mats, sq, log_c, degree)
                # x_end = expm(M) x_start, expm(M) = mats[_Y]^T (its zero entries skipped)
                g_end = mats[_Y, 0, 0] * g
                a1_end = mats[_Y, 0, 1] * g + mats[_Y, 1, 1] * a1 + mats[_Y, 2, 1] * a2
                a2_end = mats[_Y, 0, 2] * g + mats[_Y, 1, 2] * a1 + mats[_Y, 2, 2] * a2
                w[_INTEGRAL, c, j] = (
                    mats[_Y, 0, 3] * g + mats[_Y, 1, 3] * a1 + mats[_Y, 2, 3] * a2
                ) / kappa
                g, a1, a2 = g_end, a1_end, a2_end
            g += w[_G_IN, c, p]
            a1 += w[_A_IN, c, p]
            if p == at0:
                a2 += a0[c, 1]
            w[_GUT, c, p] = g
            w[_CENTRAL, c, p] = a1
            w[_PERIPHERAL, c, p] = a2


@numba.njit(cache=True)
def forward(times, volume, cl, cl_ectr, ka, f, a0, dose_amount, q, v2, design):
    """Concentrations (C, L) mg/L at the sample events and AUCs (C, W) mg·h/L over the windows,
    for the arguments of :func:`solve_op` (float64 arrays) and ``design`` the tuple of
    :func:`~dialyzability.pk.kernel._design_arrays`."""
    windows, samples = design[6], design[7]
    n_cases = times.shape[0]
    n_samples, n_windows = samples.shape[1], windows.shape[1]
    conc = np.empty((n_cases, n_samples))
    auc = np.empty((n_cases, n_windows))
    iw, w, mats = _work(times, design, False)
    _forward_pass(times, volume, cl, cl_ectr, ka, f, a0, dose_amount, q, v2, design, iw, w, mats)
    for c in range(n_cases):
        v = volume[c]
        for j in range(n_samples):
            conc[c, j] = w[_CENTRAL, c, iw[_POS, c, samples[c, j]]] / v
        for k in range(n_windows):
            total = 0.0
            for p in range(iw[_POS, c, windows[c, k, 0]], iw[_POS, c, windows[c, k, 1]]):
                total += w[_INTEGRAL, c, p]
            auc[c, k] = total / v
    return conc, auc


@numba.njit(cache=True)
def backward(times, volume, cl, cl_ectr, ka, f, a0, dose_amount, q, v2, g_conc, g_auc, design):
    """Vector-Jacobian product of :func:`forward`: the gradients, with respect to each of its
    ten float inputs, of Σ g_conc · conc + Σ g_auc · auc (reverse pass over the sorted
    intervals; per interval one block Taylor sum and its squarings give expm(M^T) and the
    Fréchet derivative L(M^T, lambda x^T), see the module docstring)."""
    dose_event, dose_oral, windows, samples, init = (
        design[0],
        design[1],
        design[6],
        design[7],
        design[8],
    )
    n_cases, n = times.shape
    g_times = np.empty_like(times)
    g_volume = np.empty(n_cases)
    g_cl = np.empty(n_cases)
    g_ectr = np.zeros_like(cl_ectr)
    g_ka = np.empty(n_cases)
    g_f = np.empty(n_cases)
    g_a0 = np.zeros_like(a0)
    g_dose = np.empty_like(dose_amount)
    g_q = np.empty(n_cases)
    g_v2 = np.empty(n_cases)
    iw, w, mats = _work(times, design, True)
    _forward_pass(times, volume, cl, cl_ectr, ka, f, a0, dose_amount, q, v2, design, iw, w, mats)
    for c in range(n_cases):
        v = volume[c]
        ka_c = ka[c]
        k12 = q[c] / v
        k21 = q[c] / v2[c]
        n_s = iw[_SESSIONS, c, 0]
        at0 = iw[_POS, c, init[c]] if init[c] >= 0 else -1
        for p in range(n):
            w[_ADJ_G, c, p] = 0.0
            w[_ADJ_A1, c, p] = 0.0
            w[_ADJ_A2, c, p] = 0.0
            w[_ADJ_INTEGRAL, c, p] = 0.0
            g_times[c, p] = 0.0
        g_v = 0.0
        for j in range(samples.shape[1]):
            p = iw[_POS, c, samples[c, j]]
            w[_ADJ_A1, c, p] += g_conc[c, j] / v
            g_v -= g_conc[c, j] * w[_CENTRAL, c, p] / (v * v)
        for k in range(windows.shape[1]):
            g_w = g_auc[c, k] / v
            total = 0.0
            for p in range(iw[_POS, c, windows[c, k, 0]], iw[_POS, c, windows[c, k, 1]]):
                total += w[_INTEGRAL, c, p]
                w[_ADJ_INTEGRAL, c, p] += g_w
            g_v -= g_auc[c, k] * total / (v * v)
        g_k = 0.0  # adjoint of ka
        g_c = 0.0  # of CL
        g_12 = 0.0  # of k12
        g_21 = 0.0  # of k21
        for p in range(n - 1, 0, -1):
            j = p - 1
            dt = w[_GRID, c, p] - w[_GRID, c, j]
            rate = w[_K, c, j]
            # lambda = adjoint of x_end = (G, A1, A2 before the inputs at p; the integral)
            l0 = w[_ADJ_G, c, p]
            l1 = w[_ADJ_A1, c, p]
            l2 = w[_ADJ_A2, c, p]
            l3 = w[_ADJ_INTEGRAL, c, j]
            x0 = w[_GUT, c, j]
            x1 = w[_CENTRAL, c, j]
            x2 = w[_PERIPHERAL, c, j]
            e0 = w[_GUT, c, p] - w[_G_IN, c, p]
            e1 = w[_CENTRAL, c, p] - w[_A_IN, c, p]
            e2 = w[_PERIPHERAL, c, p] - (a0[c, 1] if p == at0 else 0.0)
            # d/d dt of lambda^T expm(N dt) x_start = lambda^T N x_end
            g_dt = (
                l0 * (-ka_c * e0)
                + l1 * (ka_c * e0 - (rate + k12) * e1 + k21 * e2)
                + l2 * (k12 * e1 - k21 * e2)
                + l3 * e1
            )
            if dt == 0.0:  # zero-length interval: expm = I, no gradient through the rates
                w[_ADJ_G, c, j] += l0
                w[_ADJ_A1, c, j] += l1
                w[_ADJ_A2, c, j] += l2
                g_rate = 0.0
            else:
                s2, log_c, degree, kappa = _fill_scaled(ka_c, rate, k12, k21, dt, mats)
                # in the coordinates (G, A1, A2, kappa I): lambda' = (l0, l1, l2, l3 / kappa)
                scale = math.ldexp(1.0, -s2)
                l3 /= kappa
                la = (l0 * scale, l1 * scale, l2 * scale, l3 * scale)
                for r in range(4):
                    mats[_W, r, 0] = la[r] * x0
                    mats[_W, r, 1] = la[r] * x1
                    mats[_W, r, 2] = la[r] * x2
                    mats[_W, r, 3] = 0.0
                _frechet_scaled(mats, s2, log_c, degree)
                # lambda_start = expm(M)^T lambda (its integral entry meets I_start = 0)
                for r in range(3):
                    w[_ADJ_G + r, c, j] += (
                        mats[_Y, r, 0] * l0
                        + mats[_Y, r, 1] * l1
                        + mats[_Y, r, 2] * l2
                        + mats[_Y, r, 3] * l3
                    )
                # gradient with respect to M = N dt, then to the rate constants
                g_k += dt * (mats[_L, 1, 0] - mats[_L, 0, 0])
                g_rate = -dt * mats[_L, 1, 1]
                g_12 += dt * (mats[_L, 2, 1] - mats[_L, 1, 1])
                g_21 += dt * (mats[_L, 1, 2] - mats[_L, 2, 2])
            # k10 = (CL + sum of the running sessions' CL_ECTR) / V1
            g_rv = g_rate / v
            g_c += g_rv
            mid = 0.5 * (w[_GRID, c, p] + w[_GRID, c, j])
            for s in range(n_s):
                if w[_S_LO, c, s] <= mid and mid < w[_S_HI, c, s]:
                    g_ectr[c, iw[_SESSIONS, c, s + 1]] += g_rv
            g_v -= g_rate * rate / v
            # dt = grid[p] - grid[j]
            g_times[c, iw[_ORDER, c, p]] += g_dt
            g_times[c, iw[_ORDER, c, j]] -= g_dt
        # k12 = Q / V1, k21 = Q / V2
        g_q[c] = g_12 / v + g_21 / v2[c]
        g_v -= g_12 * k12 / v
        g_v2[c] = -g_21 * k21 / v2[c]
        g_volume[c] = g_v
        g_cl[c] = g_c
        g_ka[c] = g_k
        g_fc = 0.0
        for d in range(dose_event.shape[1]):
            p = iw[_POS, c, dose_event[c, d]]
            if dose_oral[c, d]:
                g_fc += w[_ADJ_G, c, p] * dose_amount[c, d]
                g_dose[c, d] = w[_ADJ_G, c, p] * f[c]
            else:
                g_dose[c, d] = w[_ADJ_A1, c, p]
        g_f[c] = g_fc
        if at0 >= 0:
            g_a0[c, 0] = w[_ADJ_A1, c, at0]
            g_a0[c, 1] = w[_ADJ_A2, c, at0]
    return g_times, g_volume, g_cl, g_ectr, g_ka, g_f, g_a0, g_dose, g_q, g_v2


# ------------------------------------------------------------------------------------------
# PyTensor operation

_N_INPUTS = 10


def solve_op(times, design: BatchDesign, volume, cl, cl_ectr, ka, f, a0, dose_amount, q, v2):
    """``conc`` (C, L) mg/L and ``auc`` (C, W) mg·h/L of :func:`solve_batch` as one PyTensor
    node (tensors in, tensors out; shapes as in :func:`solve_batch`, ``dose_amount`` (C, D)
    padded like ``design``; ``volume`` is V1 (L), ``q`` Q (L/h), ``v2`` V2 (L), ``a0`` (C, 2)
    the latent amounts (mg) put in the central and the peripheral compartment), with its
    gradient with respect to every input (:func:`backward`)."""
    op_class, _ = op_classes("TwoCompartment", forward, backward, _N_INPUTS)
    op = op_class(_design_arrays(design), design.n_cases)
    conc, auc = op(times, volume, cl, cl_ectr, ka, f, a0, dose_amount, q, v2)
    return {"conc": conc, "auc": auc}
