"""Closed-form kinetics against a numerical ODE solution, hand arithmetic and finite differences."""

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from dialyzability.design import BatchDesign, Design
from dialyzability.pk.closed_form import divided_exp, solve_batch


def solve(times, design, volume, cl, cl_ectr, ka, bioavailability=1.0, a0=0.0, xp=np):
    """One case through the batched array form (a batch of one); the case's row of each
    output, ``conc`` cut to the case's samples."""

    def one(x):
        return xp.reshape(xp.as_tensor_variable(x) if xp is not np else np.asarray(x), (1,))

    out = solve_batch(
        times[None, :],
        BatchDesign.stack([design]),
        one(volume),
        one(cl),
        cl_ectr[None, :],
        one(ka),
        one(bioavailability),
        one(a0),
        xp=xp,
    )
    rows = {k: v[0] for k, v in out.items()}
    rows["conc"] = rows["conc"][: len(design.samples)]
    return rows


def ode_reference(times, design, volume, cl, cl_ectr, ka, f, a0=0.0):
    """Integrate dG/dt = -ka G, dA/dt = ka G - k(t) A and the window AUCs with scipy, piecewise
    between sorted events (inputs applied at the events), at tight tolerance."""
    times = np.asarray(times, dtype=float)
    order = np.argsort(times, kind="stable")
    starts = times[list(design.session_start)]
    ends = times[list(design.session_end)]
    cl_s = np.asarray(cl_ectr)[list(design.session_modality)] if design.session_start else []
    w = np.asarray(design.windows).reshape(-1, 2)
    state = np.zeros(2 + len(w))  # G, A, AUC of each window (mg.h/L)
    values = {}
    for rank, e in enumerate(order):
        for j, de in enumerate(design.dose_event):
            if de == e:
                state[0 if design.dose_oral[j] else 1] += (
                    f if design.dose_oral[j] else 1.0
                ) * design.dose_amount[j]
        if e == design.initial_event:
            state[1] += a0
        values[e] = state.copy()
        if rank + 1 == len(order):
            break
        t0, t1 = times[e], times[order[rank + 1]]
        if t1 <= t0:
            continue
        mid = 0.5 * (t0 + t1)
        k = (
            cl + sum(c for c, s, en in zip(cl_s, starts, ends, strict=True) if s <= mid < en)
        ) / volume
        inside = np.array([times[a] <= mid < times[b] for a, b in w], dtype=float)

        def rhs(_, y, k=k, inside=inside):
            return np.concatenate([[-ka * y[0], ka * y[0] - k * y[1]], inside * y[1] / volume])

        sol = solve_ivp(rhs, (t0, t1), state, method="DOP853", rtol=1e-13, atol=1e-14)
        state = sol.y[:, -1].copy()
    conc = np.array([values[s][1] / volume for s in design.samples])
    auc = state[2:]
    return conc, auc


def random_design(rng):
    """A random case: 1-3 doses (oral/iv), 0-3 sessions of 1-2 modalities, windows, samples."""
    times, kinds = [], []
    n_dose = rng.integers(1, 4)
    dose_event = []
    for _ in range(n_dose):
        dose_event.append(len(times))
        times.append(rng.uniform(0, 30))
    starts, ends, mods = [], [], []
    for _ in range(rng.integers(0, 4)):
        s = rng.uniform(0, 60)
        starts.append(len(times))
        times.append(s)
        ends.append(len(times))
        times.append(s + rng.uniform(0.5, 8))
        mods.append(int(rng.integers(0, 2)))
    windows = []
    for _ in range(rng.integers(1, 4)):
        a = rng.uniform(0, 60)
        windows.append((len(times), len(times) + 1))
        times += [a, a + rng.uniform(0.1, 30)]
    windows += list(zip(starts, ends, strict=True))
    samples = []
    for _ in range(rng.integers(1, 6)):
        samples.append(len(times))
        times.append(rng.uniform(0, 80))
    del kinds
    design = Design(
        n_events=len(times),
        dose_event=tuple(dose_event),
        dose_amount=tuple(rng.uniform(10, 2000, n_dose)),
        dose_oral=tuple(bool(x) for x in rng.random(n_dose) < 0.7),
        session_start=tuple(starts),
        session_end=tuple(ends),
        session_modality=tuple(mods),
        windows=tuple(windows),
        samples=tuple(samples),
    )
    return np.array(times), design


@pytest.mark.parametrize("seed", range(12))
def test_matches_ode_on_random_designs(seed):
    rng = np.random.default_rng(seed)
    times, design = random_design(rng)
    volume, cl = rng.uniform(5, 100), rng.uniform(0.5, 20)
    cl_ectr = rng.uniform(0.5, 15, 2)
    ka = rng.uniform(0.05, 3)
    f = rng.uniform(0.3, 1)
    if seed % 3 == 0:
        ka = cl / volume  # ka == k exactly off ECTR
    out = solve(times, design, volume, cl, cl_ectr, ka, f)
    conc, auc = ode_reference(times, design, volume, cl, cl_ectr, ka, f)
    np.testing.assert_allclose(out["conc"], conc, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(out["auc"], auc, rtol=1e-8, atol=1e-14)


def test_initial_body_burden_without_dose():
    # 100 mg in a 20-L body at t = 0, CL 2 L/h: C(5) = 5 e^(-0.5) = 3.0327 mg/L,
    # AUC 0-5 = 5 (1 - e^(-0.5)) / 0.1 = 19.673 mg.h/L
    design = Design(n_events=2, windows=((0, 1),), samples=(1,), initial_event=0)
    out = solve(np.array([0.0, 5.0]), design, 20.0, 2.0, np.zeros(1), 1.0, a0=100.0)
    assert out["conc"][0] == pytest.approx(5 * math.exp(-0.5), rel=1e-12)
    assert out["auc"][0] == pytest.approx(50 * (1 - math.exp(-0.5)), rel=1e-12)


def test_iv_bolus_with_session_by_hand():
    # 500 mg iv at 0 into 50 L, CL 5 L/h (k 0.1); HD 2-4 h at 10 L/h (k 0.3 on HD).
    # C(2) = 10 e^-0.2 = 8.1873; C(4) = 8.1873 e^-0.6 = 4.4933; C(6) = 4.4933 e^-0.2 = 3.6788
    # AUC on HD = 8.1873 (1 - e^-0.6) / 0.3 = 12.232
    design = Design(
        n_events=4,
        dose_event=(0,),
        dose_amount=(500.0,),
        dose_oral=(False,),
        session_start=(1,),
        session_end=(2,),
        session_modality=(0,),
        windows=((1, 2),),
        samples=(1, 2, 3),
    )
    out = solve(np.array([0.0, 2.0, 4.0, 6.0]), design, 50.0, 5.0, np.array([10.0]), 1.0)
    c2 = 10 * math.exp(-0.2)
    np.testing.assert_allclose(
        out["conc"], [c2, c2 * math.exp(-0.6), c2 * math.exp(-0.8)], rtol=1e-12
    )
    assert out["auc"][0] == pytest.approx(c2 * (1 - math.exp(-0.6)) / 0.3, rel=1e-12)


def test_event_order_does_not_matter():
    rng = np.random.default_rng(7)
    times, design = random_design(rng)
    out = solve(times, design, 30.0, 4.0, np.array([6.0, 2.0]), 0.8, 0.9)
    # relabel the events in a random order: same physics, same answers
    perm = rng.permutation(design.n_events)
    inv = np.argsort(perm)
    m = lambda ev: tuple(int(inv[e]) for e in ev)  # noqa: E731
    design2 = Design(
        n_events=design.n_events,
        dose_event=m(design.dose_event),
        dose_amount=design.dose_amount,
        dose_oral=design.dose_oral,
        session_start=m(design.session_start),
        session_end=m(design.session_end),
        session_modality=design.session_modality,
        windows=tuple((int(inv[a]), int(inv[b])) for a, b in design.windows),
        samples=m(design.samples),
    )
    out2 = solve(times[perm], design2, 30.0, 4.0, np.array([6.0, 2.0]), 0.8, 0.9)
    np.testing.assert_allclose(out2["conc"], out["conc"], rtol=1e-12)
    np.testing.assert_allclose(out2["auc"], out["auc"], rtol=1e-12)


@pytest.mark.parametrize(
    ("a", "b", "t"),
    [(0.1, 0.1, 2.0), (0.3, 0.3001, 5.0), (2.0, 0.01, 400.0), (0.01, 5.0, 300.0), (0.0, 0.0, 3.0)],
)
def test_divided_exp_is_exact_and_finite(a, b, t):
    value = divided_exp(a, b, t)
    if a == b:
        expected = t * math.exp(-a * t)
    else:
        expected = (math.exp(-a * t) - math.exp(-b * t)) / (b - a)
    assert np.isfinite(value) and value == pytest.approx(expected, rel=1e-9)


def test_pytensor_matches_numpy_and_gradient_at_ka_equal_k():
    import pytensor
    import pytensor.tensor as pt

    rng = np.random.default_rng(3)
    times, design = random_design(rng)
    volume, cl = 40.0, 4.0
    ka_v = cl / volume  # ka == k exactly off ECTR
    t = pt.dvector("t")
    ka = pt.dscalar("ka")
    v = pt.dscalar("v")
    out = solve(t, design, v, cl, pt.constant(np.array([6.0, 2.0])), ka, 0.9, xp=pt)
    total = out["conc"].sum() + out["auc"].sum()
    grads = pytensor.grad(total, [ka, v, t])
    fn = pytensor.function([t, ka, v], [out["conc"], out["auc"], total, *grads])
    conc, auc, _, gka, gv, gt = fn(times, ka_v, volume)
    ref = solve(times, design, volume, cl, np.array([6.0, 2.0]), ka_v, 0.9)
    np.testing.assert_allclose(conc, ref["conc"], rtol=1e-12)
    np.testing.assert_allclose(auc, ref["auc"], rtol=1e-12)
    assert np.all(np.isfinite([gka, gv, *gt]))

    def f(ka_, v_):
        r = solve(times, design, v_, cl, np.array([6.0, 2.0]), ka_, 0.9)
        return r["conc"].sum() + r["auc"].sum()

    eps = 1e-6
    fd_ka = (f(ka_v + eps, volume) - f(ka_v - eps, volume)) / (2 * eps)
    fd_v = (f(ka_v, volume + eps) - f(ka_v, volume - eps)) / (2 * eps)
    assert gka == pytest.approx(fd_ka, rel=1e-5)
    assert gv == pytest.approx(fd_v, rel=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_concentration_at_any_time_matches_ode(seed):
    from dialyzability.pk.closed_form import concentration_at

    rng = np.random.default_rng(100 + seed)
    times, design = random_design(rng)
    volume, cl, ka, f = 35.0, 3.0, 0.7, 0.8
    cl_ectr = np.array([8.0, 3.0])
    query = np.sort(rng.uniform(-5, 120, 25))
    sol = solve(times, design, volume, cl, cl_ectr, ka, f)
    got = concentration_at(sol, volume, cl, ka, query)
    # the same times as extra sample events of the ODE reference
    extra = Design(
        **{
            **design.__dict__,
            "n_events": design.n_events + len(query),
            "samples": tuple(range(design.n_events, design.n_events + len(query))),
        }
    )
    conc, _ = ode_reference(np.concatenate([times, query]), extra, volume, cl, cl_ectr, ka, f)
    np.testing.assert_allclose(got, conc, rtol=1e-8, atol=1e-13)


def test_batch_equals_cases_one_by_one():
    rng = np.random.default_rng(42)
    cases = [random_design(rng) for _ in range(5)]
    n = max(d.n_events for _, d in cases)
    # pad each case's times with its last time (zero-length intervals at the end)
    times = np.stack([np.concatenate([t, np.full(n - len(t), t.max())]) for t, _ in cases])
    params = rng.uniform(0.5, 2.0, (5, 4)) * [30.0, 4.0, 0.8, 0.7]
    cl_ectr = rng.uniform(1, 10, (5, 2))
    batch = solve_batch(
        times,
        BatchDesign.stack([d for _, d in cases]),
        params[:, 0],
        params[:, 1],
        cl_ectr,
        params[:, 2],
        params[:, 3],
        np.zeros(5),
    )
    for i, (t, d) in enumerate(cases):
        one = solve(t, d, params[i, 0], params[i, 1], cl_ectr[i], params[i, 2], params[i, 3])
        np.testing.assert_allclose(batch["conc"][i, : len(d.samples)], one["conc"], rtol=1e-12)
        np.testing.assert_allclose(batch["auc"][i, : len(d.windows)], one["auc"], rtol=1e-12)
