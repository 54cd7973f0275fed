"""Two-compartment kinetics (pk/two_compartment.py): the array form and the compiled kernel
against a numerical ODE solution, hand arithmetic, the one-compartment closed form at Q = 0,
each other, and the kernel's gradient against central differences of the array form.

Degenerate points where a sum of exponentials has vanishing denominators are included: ka equal
to an eigenvalue (alpha or beta) of the disposition matrix, nearly repeated eigenvalues (tiny Q
with k21 = k10), and zero-length intervals (tied events, padding).
"""

import math

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.integrate import solve_ivp

from dialyzability.design import BatchDesign, Design
from dialyzability.pk import closed_form
from dialyzability.pk.kernel import _design_arrays
from dialyzability.pk.two_compartment import (
    backward,
    concentration_at,
    forward,
    solve_batch,
    solve_op,
)

#: the order of the float inputs of forward/backward/solve_op
NAMES = ("times", "V1", "CL", "CL_ECTR", "ka", "F", "a0", "dose", "Q", "V2")


#: the latent body burden's peripheral part, as a share of its central part, in these tests
PERIPHERAL = 0.3


def ode_reference(times, design: Design, v1, cl, cl_ectr, ka, f, a0, q, v2):
    """Integrate (G, A1, A2) and the window AUCs with scipy (DOP853, rtol 1e-12), piecewise
    between the sorted events (stable order, inputs at the events, the rate of an interval at
    its midpoint; a0 into A1 and PERIPHERAL · a0 into A2). Returns conc at the samples and the
    AUCs."""
    times = np.asarray(times, dtype=float)
    order = np.argsort(times, kind="stable")
    starts = times[list(design.session_start)]
    ends = times[list(design.session_end)]
    cl_s = np.asarray(cl_ectr)[list(design.session_modality)] if design.session_start else []
    w = np.asarray(design.windows, dtype=int).reshape(-1, 2)
    k12, k21 = q / v1, q / v2
    state = np.zeros(3 + len(w))  # G, A1, A2 (mg), AUC of each window (mg.h/L)
    pos = {ev: r for r, ev in enumerate(order)}
    values = {}
    for rank, e in enumerate(order):
        for j, de in enumerate(design.dose_event):
            if de == e:
                oral = design.dose_oral[j]
                state[0 if oral else 1] += (f if oral else 1.0) * design.dose_amount[j]
        if e == design.initial_event:
            state[1] += a0
            state[2] += PERIPHERAL * a0
        values[e] = state.copy()
        if rank + 1 == len(order):
            break
        t0, t1 = times[e], times[order[rank + 1]]
        if t1 <= t0:
            continue
        mid = 0.5 * (t0 + t1)
        k10 = cl + sum(c for c, s, en in zip(cl_s, starts, ends, strict=True) if s <= mid < en)
        k10 /= v1
        inside = np.array([pos[a] <= rank < pos[b] for a, b in w], dtype=float)

        def rhs(_, y, k10=k10, inside=inside):
            g, a1, a2 = y[0], y[1], y[2]
            return np.concatenate(
                [
                    [-ka * g, ka * g - (k10 + k12) * a1 + k21 * a2, k12 * a1 - k21 * a2],
                    inside * a1 / v1,
                ]
            )

        sol = solve_ivp(rhs, (t0, t1), state, method="DOP853", rtol=1e-12, atol=1e-16)
        state = sol.y[:, -1].copy()
    conc = np.array([values[s][1] / v1 for s in design.samples])
    return conc, state[3:]


def eigenvalues(k10, k12, k21):
    """alpha >= beta > 0, the negated eigenvalues of [[-(k10 + k12), k21], [k12, -k21]]."""
    total = k10 + k12 + k21
    root = math.sqrt(total * total - 4.0 * k10 * k21)
    return 0.5 * (total + root), 0.5 * (total - root)


def random_case(rng, ties=True, doses=True):
    """A random case: 1-4 doses (oral and iv), 0-3 sessions of 2 modalities (a sample inside
    each), windows of their own and over the sessions, 2-6 further samples; with ``ties`` some
    events at the time of another (zero-length intervals); with ``doses`` False no dose and an
    initial amount a0 at event 0. The events are listed in no particular order of time."""
    times = []
    dose_event = []
    initial = -1
    if doses:
        for _ in range(rng.integers(1, 5)):
            dose_event.append(len(times))
            times.append(rng.uniform(0, 30))
    else:
        initial = 0
        times.append(rng.uniform(0, 5))
    starts, ends, mods, samples = [], [], [], []
    for _ in range(rng.integers(0, 4)):
        s = rng.uniform(0, 60)
        d = rng.uniform(0.5, 8)
        starts.append(len(times))
        ends.append(len(times) + 1)
        samples.append(len(times) + 2)  # during the session
        times += [s, s + d, s + rng.uniform(0.1, 0.9) * d]
        mods.append(int(rng.integers(0, 2)))
    windows = []
    for _ in range(rng.integers(1, 4)):
        a = rng.uniform(0, 60)
        windows.append((len(times), len(times) + 1))
        times += [a, a + rng.uniform(0.1, 30)]
    windows += list(zip(starts, ends, strict=True))
    for _ in range(rng.integers(2, 7)):
        samples.append(len(times))
        times.append(rng.uniform(0, 80))
    times = np.array(times)
    if ties:
        # a sample at a dose's time (listed after it: it sees the dose), one at a session's
        # end, and a window from a sample's time to the last event
        samples.append(len(times))
        times = np.append(times, times[(dose_event or [0])[0]])
        if ends:
            samples.append(len(times))
            times = np.append(times, times[ends[0]])
        windows.append((len(times), int(np.argmax(times))))
        times = np.append(times, times[samples[0]])
    n_dose = len(dose_event)
    design = Design(
        n_events=len(times),
        dose_event=tuple(dose_event),
        dose_amount=tuple(rng.uniform(10, 2000, n_dose)),
        dose_oral=tuple(bool(x) for x in rng.random(n_dose) < 0.6),
        session_start=tuple(starts),
        session_end=tuple(ends),
        session_modality=tuple(mods),
        windows=tuple(windows),
        samples=tuple(samples),
        initial_event=initial,
    )
    return times, design


def random_parameters(rng, kind="plain"):
    """V1, CL, CL_ECTR (2,), ka, F, a0, Q, V2 of one case; ``kind``: ``"plain"``, ``"alpha"`` or
    ``"beta"`` (ka equal to that eigenvalue off ECTR), ``"repeated"`` (Q = 1e-7 L/h and
    k21 = k10: eigenvalues k10 ± about sqrt(k12 k21), 1e-5 apart)."""
    v1, cl = rng.uniform(5, 100), rng.uniform(0.5, 20)
    cl_ectr = rng.uniform(0.5, 15, 2)
    ka, f, a0 = rng.uniform(0.05, 3), rng.uniform(0.3, 1), rng.uniform(50, 500)
    q, v2 = rng.uniform(0.5, 30), rng.uniform(10, 300)
    k10 = cl / v1
    if kind == "repeated":
        q = 1e-7
        v2 = q / k10
    elif kind in ("alpha", "beta"):
        alpha, beta = eigenvalues(k10, q / v1, q / v2)
        ka = alpha if kind == "alpha" else beta
    return v1, cl, cl_ectr, ka, f, a0, q, v2


def batch_of(cases, params):
    """The cases padded to a batch (each case's times padded with its last time) and the ten
    float inputs of the kernel, in :data:`NAMES` order."""
    n = max(d.n_events for _, d in cases)
    times = np.stack([np.concatenate([t, np.full(n - len(t), t.max())]) for t, _ in cases])
    design = BatchDesign.stack([d for _, d in cases])
    cols = list(zip(*params, strict=True))
    v1, cl, cl_ectr, ka, f, a0, q, v2 = (np.array(c, dtype=float) for c in cols)
    a0 = np.stack([a0, PERIPHERAL * a0], axis=-1)  # (C, 2): central and peripheral parts
    dose = np.ascontiguousarray(design.dose_amount, dtype=float)
    return design, [times, v1, cl, cl_ectr, ka, f, a0, dose, q, v2]


def array_form(design, values):
    """:func:`solve_batch` on the ten kernel inputs."""
    times, v1, cl, cl_ectr, ka, f, a0, dose, q, v2 = values
    return solve_batch(times, design, v1, cl, cl_ectr, ka, f, a0, q, v2, dose_amount=dose)


KINDS = ("plain", "alpha", "beta", "repeated")


@pytest.mark.parametrize("seed", range(12))
def test_matches_ode_on_random_designs(seed):
    rng = np.random.default_rng(seed)
    kind = KINDS[seed % 4]
    times, design = random_case(rng, ties=seed % 2 == 0)
    params = random_parameters(rng, kind)
    conc, auc = ode_reference(times, design, *params)
    batch, values = batch_of([(times, design)], [params])
    out = array_form(batch, values)
    np.testing.assert_allclose(out["conc"][0, : len(conc)], conc, rtol=1e-8, atol=1e-13)
    np.testing.assert_allclose(out["auc"][0, : len(auc)], auc, rtol=1e-8, atol=1e-13)
    k_conc, k_auc = forward(*values, _design_arrays(batch))
    np.testing.assert_allclose(k_conc[0, : len(conc)], conc, rtol=1e-8, atol=1e-13)
    np.testing.assert_allclose(k_auc[0, : len(auc)], auc, rtol=1e-8, atol=1e-13)


def test_initial_amount_without_dose_matches_ode():
    rng = np.random.default_rng(21)
    times, design = random_case(rng, ties=True, doses=False)
    params = random_parameters(rng)
    conc, auc = ode_reference(times, design, *params)
    batch, values = batch_of([(times, design)], [params])
    out = array_form(batch, values)
    np.testing.assert_allclose(out["conc"][0], conc, rtol=1e-8, atol=1e-13)
    np.testing.assert_allclose(out["auc"][0, : len(auc)], auc, rtol=1e-8, atol=1e-13)


def test_padded_batch_matches_ode_case_by_case():
    """Four cases of different sizes in one batch (padding: zero-length intervals, padded
    doses, sessions, windows and samples), each against its own ODE solution."""
    rng = np.random.default_rng(99)
    cases = [random_case(rng, ties=i % 2 == 0, doses=i != 3) for i in range(4)]
    params = [random_parameters(rng, kind) for kind in KINDS]
    batch, values = batch_of(cases, params)
    out = array_form(batch, values)
    k_conc, k_auc = forward(*values, _design_arrays(batch))
    for i, ((times, design), p) in enumerate(zip(cases, params, strict=True)):
        conc, auc = ode_reference(times, design, *p)
        np.testing.assert_allclose(out["conc"][i, : len(conc)], conc, rtol=1e-8, atol=1e-13)
        np.testing.assert_allclose(out["auc"][i, : len(auc)], auc, rtol=1e-8, atol=1e-13)
        np.testing.assert_allclose(k_conc[i, : len(conc)], conc, rtol=1e-8, atol=1e-13)
        np.testing.assert_allclose(k_auc[i, : len(auc)], auc, rtol=1e-8, atol=1e-13)


def test_iv_bolus_by_hand():
    # 100 mg iv at 0 into V1 = 10 L; CL 2, Q 5 L/h, V2 20 L: k10 0.2, k12 0.5, k21 0.25 /h.
    # alpha + beta = 0.95, alpha beta = k10 k21 = 0.05, root = sqrt(0.9025 - 0.2) = 0.838153:
    # alpha = 0.894076, beta = 0.0559236 /h.
    # C(t) = 10 [(alpha - k21) e^(-alpha t) + (k21 - beta) e^(-beta t)] / (alpha - beta)
    #      = 7.684475 e^(-alpha t) + 2.315525 e^(-beta t) mg/L;
    # C(4) = 7.684475 × 0.027980 + 2.315525 × 0.799548 = 0.215013 + 1.851390 = 2.066403 mg/L.
    # AUC 0-4 = 7.684475 (1 - e^(-4 alpha)) / alpha + 2.315525 (1 - e^(-4 beta)) / beta
    #         = 8.354237 + 8.299434 = 16.653671 mg.h/L;
    # AUC 0-2000 = dose / CL = 50 mg.h/L (e^(-2000 beta) = e^(-111.8), negligible).
    design = Design(
        n_events=3,
        dose_event=(0,),
        dose_amount=(100.0,),
        dose_oral=(False,),
        windows=((0, 1), (0, 2)),
        samples=(0, 1),
    )
    batch, values = batch_of(
        [(np.array([0.0, 4.0, 2000.0]), design)],
        [(10.0, 2.0, np.zeros(2), 1.0, 1.0, 0.0, 5.0, 20.0)],
    )
    alpha, beta = eigenvalues(0.2, 0.5, 0.25)
    a, b = 10 * (alpha - 0.25) / (alpha - beta), 10 * (0.25 - beta) / (alpha - beta)
    assert (round(alpha, 6), round(beta, 7), round(a, 6)) == (0.894076, 0.0559236, 7.684475)
    c4 = a * math.exp(-4 * alpha) + b * math.exp(-4 * beta)
    auc4 = a * -math.expm1(-4 * alpha) / alpha + b * -math.expm1(-4 * beta) / beta
    assert round(c4, 6) == 2.066403 and round(auc4, 6) == 16.653671
    out = array_form(batch, values)
    k_conc, k_auc = forward(*values, _design_arrays(batch))
    for conc, auc in ((out["conc"][0], out["auc"][0]), (k_conc[0], k_auc[0])):
        np.testing.assert_allclose(conc, [10.0, c4], rtol=1e-13)
        np.testing.assert_allclose(auc, [auc4, 50.0], rtol=1e-12)


def test_oral_dose_mass_balance_with_a_session():
    # 600 mg oral, F 0.5, ka 0.8 /h; CL 3 L/h and a 4-h session (CL_ECTR 9 L/h) from 2 h.
    # All that is absorbed (300 mg) leaves through CL or the session, so over 0-3000 h:
    # CL × AUC(0-3000) + CL_ECTR × AUC(session) = 300 mg.
    design = Design(
        n_events=4,
        dose_event=(0,),
        dose_amount=(600.0,),
        dose_oral=(True,),
        session_start=(1,),
        session_end=(2,),
        session_modality=(0,),
        windows=((0, 3), (1, 2)),
        samples=(3,),
    )
    batch, values = batch_of(
        [(np.array([0.0, 2.0, 6.0, 3000.0]), design)],
        [(25.0, 3.0, np.array([9.0, 0.0]), 0.8, 0.5, 0.0, 12.0, 80.0)],
    )
    for auc in (array_form(batch, values)["auc"][0], forward(*values, _design_arrays(batch))[1][0]):
        assert 3.0 * auc[0] + 9.0 * auc[1] == pytest.approx(300.0, rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_without_intercompartmental_clearance_equals_one_compartment(seed):
    """Q = 0: the central compartment alone, the closed form of pk/closed_form.py (ka == k10
    exactly in the first case)."""
    rng = np.random.default_rng(40 + seed)
    cases = [random_case(rng, ties=i % 2 == 0, doses=i != 2) for i in range(4)]
    params = [random_parameters(rng) for _ in range(4)]
    params[0] = (*params[0][:3], params[0][1] / params[0][0], *params[0][4:])
    batch, values = batch_of(cases, params)
    values[8] = np.zeros(4)
    times, v1, cl, cl_ectr, ka, f, a0, _, _, _ = values
    one = closed_form.solve_batch(times, batch, v1, cl, cl_ectr, ka, f, a0[:, 0])
    two = array_form(batch, values)
    k_conc, k_auc = forward(*values, _design_arrays(batch))
    for conc, auc in ((two["conc"], two["auc"]), (k_conc, k_auc)):
        np.testing.assert_allclose(conc, one["conc"], rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(auc, one["auc"], rtol=1e-12, atol=1e-300)
    # nothing flows between the compartments: the peripheral amount keeps its start (a0's
    # peripheral part for the case without a dose, 0 for the others)
    # (0 before a0 enters, on the sorted grid)
    start = np.where(batch.initial_event >= 0, a0[:, 1], 0.0)[:, None]
    peripheral = two["state"][..., 2]
    assert np.all((peripheral == 0.0) | (peripheral == start))
    np.testing.assert_array_equal(peripheral[:, -1:], start)


@pytest.mark.parametrize("seed", range(4))
def test_kernel_equals_array_form(seed):
    rng = np.random.default_rng(60 + seed)
    cases = [random_case(rng, ties=i % 2 == 0, doses=i != 1) for i in range(4)]
    params = [random_parameters(rng, kind) for kind in KINDS]
    batch, values = batch_of(cases, params)
    out = array_form(batch, values)
    conc, auc = forward(*values, _design_arrays(batch))
    np.testing.assert_allclose(conc, out["conc"], rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(auc, out["auc"], rtol=1e-12, atol=1e-300)


def central_differences(design, values, g_conc, g_auc, skip_times=False):
    """Central differences of sum(g_conc conc + g_auc auc) of the array form with respect to
    every element of every input: step 1e-5 relative (for the times at least 1e-5 h; 1e-5 for a
    zero input); the objective is linear in the doses, F and a0."""

    def objective(vals):
        out = array_form(design, vals)
        return (g_conc * out["conc"]).sum() + (g_auc * out["auc"]).sum()

    grads = []
    for i, x in enumerate(values):
        fd = np.full(x.shape, np.nan)
        if not (i == 0 and skip_times):
            for idx in np.ndindex(x.shape):
                h = 1e-5 * (max(abs(x[idx]), 1.0) if i == 0 else abs(x[idx]) or 1.0)
                up = [v.copy() for v in values]
                down = [v.copy() for v in values]
                up[i][idx] += h
                down[i][idx] -= h
                fd[idx] = (objective(up) - objective(down)) / (2 * h)
        grads.append(fd)
    return grads


def graph_gradient(design, values, g_conc, g_auc, mode="FAST_RUN"):
    """conc, auc and the gradients of sum(g_conc conc + g_auc auc) through :func:`solve_op`
    (pytensor.grad) in a compiled PyTensor function."""
    sym = [pt.tensor(shape=v.shape, dtype="float64") for v in values]
    out = solve_op(sym[0], design, *sym[1:])
    objective = (out["conc"] * g_conc).sum() + (out["auc"] * g_auc).sum()
    fn = pytensor.function(
        sym, [out["conc"], out["auc"], *pytensor.grad(objective, sym)], mode=mode
    )
    return fn(*values)


def assert_gradients_close(got, want, rtol=1e-6):
    """Finite gradients, each input's within ``rtol`` of the largest central difference of that
    input (NaN central differences: not checked)."""
    for name, g, fd in zip(NAMES, got, want, strict=True):
        assert np.all(np.isfinite(g)), name
        if np.isnan(fd).all():
            continue
        scale = np.nanmax(np.abs(fd))
        assert np.nanmax(np.abs(g - fd)) <= rtol * max(scale, 1e-12), (name, g, fd)


def gradient_case(seed, kinds, ties):
    """Two cases (the first with doses, the second with a0 only) of the given kinds, random
    weights of conc and auc, and the gradients through the PyTensor node (checked to give the
    array form's conc and auc) with central differences of the array form."""
    rng = np.random.default_rng(seed)
    cases = [random_case(rng, ties=ties, doses=i == 0) for i in range(2)]
    params = [random_parameters(rng, kind) for kind in kinds]
    batch, values = batch_of(cases, params)
    g_conc = rng.normal(size=batch.samples.shape)
    g_auc = rng.normal(size=batch.windows.shape[:2])
    conc, auc, *grads = graph_gradient(batch, values, g_conc, g_auc)
    ref = array_form(batch, values)
    np.testing.assert_allclose(conc, ref["conc"], rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(auc, ref["auc"], rtol=1e-12, atol=1e-300)
    return values, grads, central_differences(batch, values, g_conc, g_auc, skip_times=ties)


@pytest.mark.parametrize(
    ("seed", "kinds", "ties"),
    [(0, ("alpha", "beta"), False), (1, ("beta", "plain"), False), (2, ("plain", "alpha"), True)],
    ids=["alpha-beta", "beta-plain", "ties"],
)
def test_gradient_equals_central_differences(seed, kinds, ties):
    """Every input's gradient through the PyTensor node, ka at an eigenvalue (event times
    included, but not where events are tied: the solution is not differentiable in the time
    of a tied event)."""
    _, grads, fd = gradient_case(seed, kinds, ties)
    assert_gradients_close(grads, fd)


def test_gradient_at_nearly_repeated_eigenvalues():
    """Q = 1e-7 L/h and k21 = k10 in the first case (eigenvalues 2e-4 apart relative). Every
    gradient there equals central differences to 1e-6, except those of Q and V2 of that case:
    they move the objective by about Q / CL = 1e-8 of itself, below what central differences of
    an array form accurate to some 1e-13 can resolve to 1e-6; they are checked in units of the
    log-parameters (g·x) to 1e-6 of the largest log-sensitivity of the objective."""
    values, grads, fd = gradient_case(3, ("repeated", "beta"), False)
    weak = [(NAMES.index(name), 0) for name in ("Q", "V2")]
    others = [f.copy() for f in fd]
    for i, c in weak:
        others[i][c] = np.nan
    assert_gradients_close(grads, others)
    largest = max(np.nanmax(np.abs(f * x)) for f, x in zip(fd, values, strict=True))
    for i, c in weak:
        assert abs(grads[i][c] - fd[i][c]) * values[i][c] <= 1e-6 * largest


def test_operation_in_a_numba_graph():
    """In PyTensor's numba backend (the one nutpie compiles): the same values and gradient as
    the kernel called directly."""
    rng = np.random.default_rng(5)
    cases = [random_case(rng, ties=True, doses=i == 0) for i in range(2)]
    params = [random_parameters(rng, kind) for kind in ("alpha", "repeated")]
    batch, values = batch_of(cases, params)
    g_conc = rng.normal(size=batch.samples.shape)
    g_auc = rng.normal(size=batch.windows.shape[:2])
    conc, auc, *grads = graph_gradient(batch, values, g_conc, g_auc, mode="NUMBA")
    arrays = _design_arrays(batch)
    want_conc, want_auc = forward(*values, arrays)
    np.testing.assert_allclose(conc, want_conc, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(auc, want_auc, rtol=1e-13, atol=1e-300)
    for g, want in zip(grads, backward(*values, g_conc, g_auc, arrays), strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-14)


def test_zero_length_intervals_have_finite_gradients():
    """All events of a case at one time but the last (every interval but one of length 0), and
    a dose tied with a sample: finite gradients, and the sample sees the dose listed before it.
    """
    # 100 mg iv at 0 (event 0), sampled at 0 (event 1, after the dose): C = 100 / V1 = 4 mg/L
    design = Design(
        n_events=4,
        dose_event=(0,),
        dose_amount=(100.0,),
        dose_oral=(False,),
        windows=((2, 3),),
        samples=(1, 3),
    )
    batch, values = batch_of(
        [(np.array([0.0, 0.0, 0.0, 5.0]), design)],
        [(25.0, 2.0, np.zeros(2), 1.0, 1.0, 0.0, 4.0, 50.0)],
    )
    conc, _ = forward(*values, _design_arrays(batch))
    assert conc[0, 0] == pytest.approx(4.0, rel=1e-15)
    grads = backward(*values, np.ones((1, 2)), np.ones((1, 1)), _design_arrays(batch))
    assert all(np.all(np.isfinite(g)) for g in grads)


@pytest.mark.parametrize("seed", range(3))
def test_concentration_at_any_time(seed):
    """At the sample times it gives conc; at arbitrary times (before the first event, between
    events, after the last) it matches the ODE."""
    rng = np.random.default_rng(80 + seed)
    times, design = random_case(rng, ties=True)
    params = random_parameters(rng, KINDS[seed + 1])
    v1, cl, _, ka, _, _, q, v2 = params
    batch, values = batch_of([(times, design)], [params])
    sol = array_form(batch, values)
    at_samples = concentration_at(sol, v1, cl, ka, q, v2, times[list(design.samples)])
    np.testing.assert_allclose(at_samples[0], sol["conc"][0], rtol=1e-12)
    row = {k: v[0] for k, v in sol.items()}
    query = np.sort(rng.uniform(-5, 120, 15))
    got = concentration_at(row, v1, cl, ka, q, v2, query)
    extra = Design(
        **{
            **design.__dict__,
            "n_events": design.n_events + len(query),
            "samples": tuple(range(design.n_events, design.n_events + len(query))),
        }
    )
    conc, _ = ode_reference(np.concatenate([times, query]), extra, *params)
    np.testing.assert_allclose(got, conc, rtol=1e-8, atol=1e-13)
    assert np.all(got[query < times.min()] == 0.0)


def test_closed_form_between_events_matches_the_matrix_exponential():
    # the curves' closed form (Sylvester with divided differences) against expm of N t,
    # including ka = α, ka = β and nearly repeated eigenvalues (tiny Q, k21 = k10)
    from dialyzability.pk.structure import macro_rates
    from dialyzability.pk.two_compartment import _matrices, _propagate, expm_batch

    rng = np.random.default_rng(21)
    rows = []
    for i in range(40):
        k10, k12, k21 = rng.uniform(0.01, 1.0, 3)
        ka = rng.uniform(0.05, 3.0)
        if i % 4 == 1:
            ka = float(macro_rates(k10, k12, k21)[0])
        elif i % 4 == 2:
            ka = float(macro_rates(k10, k12, k21)[1])
        elif i % 4 == 3:
            k12, k21 = 1e-9, k10
        rows.append((ka, k10, k12, k21, rng.uniform(0.0, 40.0)))
    ka, k10, k12, k21, t = (np.array(c) for c in zip(*rows, strict=True))
    x = rng.uniform(0.0, 100.0, (len(t), 3))
    central, peripheral = _propagate(x, ka, k10, k12, k21, t)
    e = expm_batch(_matrices(ka, k10, k12, k21, t))
    np.testing.assert_allclose(central, np.einsum("pj,pj->p", e[:, 1, :3], x), rtol=1e-7)
    np.testing.assert_allclose(peripheral, np.einsum("pj,pj->p", e[:, 2, :3], x), rtol=1e-7,
                               atol=1e-12 * x.sum(axis=1).max())  # fmt: skip
