"""The compiled kinetics kernel against the array form of the kinetics and its autodiff gradient.

``solve`` is checked against the ODE (test_kinetics.py); here the kernel (one operation, with a
hand-written reverse pass) must give the same solution, and its gradient must equal PyTensor's
automatic gradient of ``solve_batch``, on random designs (random event orders, ka == k exactly)
and on every published case.
"""

import glob

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from dialyzability.design import BatchDesign, case_events
from dialyzability.io.case import load_case
from dialyzability.pk.closed_form import divided_exp, solve_batch
from dialyzability.pk.kernel import (
    _design_arrays,
    backward,
    divided_exp_partials,
    forward,
    solve_op,
)

from .conftest import CASES
from .test_kinetics import random_design


def _batch(rng, k=4):
    """k random cases padded to a batch, with random parameters."""
    cases = [random_design(rng) for _ in range(k)]
    n = max(d.n_events for _, d in cases)
    times = np.stack([np.concatenate([t, np.full(n - len(t), t.max())]) for t, _ in cases])
    design = BatchDesign.stack([d for _, d in cases])
    volume = rng.uniform(5, 100, k)
    cl = rng.uniform(0.5, 20, k)
    ka = rng.uniform(0.05, 3, k)
    ka[0] = cl[0] / volume[0]  # ka == k exactly off ECTR in the first case
    values = [
        times,
        volume,
        cl,
        rng.uniform(0.5, 15, (k, 2)),
        ka,
        rng.uniform(0.3, 1, k),
        np.zeros(k),
        np.ascontiguousarray(design.dose_amount, dtype=float),
    ]
    return design, values


def _case_batch(path, rng):
    case = load_case(path)
    ev, design, _ = case_events(case)
    latent = {k: rng.uniform(lo, hi) for k, (lo, hi) in ev.latent().items()}
    times = np.array([ev.resolve(latent)], dtype=float)
    batch = BatchDesign.stack([design])
    m = max(len(case.modalities), 1)
    values = [
        times,
        np.array([40.0]),
        np.array([5.0]),
        np.full((1, m), 3.0),
        np.array([1.2]),
        np.array([0.8]),
        np.array([300.0]),
        np.ascontiguousarray(batch.dose_amount, dtype=float),
    ]
    return batch, values


def _autodiff(design, values, g_conc, g_auc):
    """PyTensor's gradient of sum(g_conc conc + g_auc auc) through ``solve_batch``."""
    sym = [pt.tensor(shape=v.shape, dtype="float64") for v in values[:7]]
    out = solve_batch(sym[0], design, *sym[1:], xp=pt)
    objective = (out["conc"] * g_conc).sum() + (out["auc"] * g_auc).sum()
    grads = pytensor.grad(objective, sym, disconnected_inputs="ignore")
    return pytensor.function(sym, grads, on_unused_input="ignore")(*values[:7])


def _check(design, values, rng):
    conc, auc = forward(*values, _design_arrays(design))
    ref = solve_batch(values[0], design, *values[1:7])
    np.testing.assert_allclose(conc, ref["conc"], rtol=1e-11, atol=1e-300)
    np.testing.assert_allclose(auc, ref["auc"], rtol=1e-11, atol=1e-300)
    g_conc, g_auc = rng.normal(size=conc.shape), rng.normal(size=auc.shape)
    got = backward(*values, g_conc, g_auc, _design_arrays(design))
    want = _autodiff(design, values, g_conc, g_auc)
    for name, g, w in zip(
        ("times", "V", "CL", "CL_ECTR", "ka", "F", "a0"), got, want, strict=False
    ):
        scale = max(np.abs(w).max(), 1e-12)
        assert np.abs(g - w).max() <= 1e-9 * scale, name


@pytest.mark.parametrize("seed", range(8))
def test_kernel_matches_array_form_and_its_gradient(seed):
    rng = np.random.default_rng(seed)
    _check(*_batch(rng), rng)


@pytest.mark.parametrize("path", sorted(glob.glob(str(CASES / "*.toml"))), ids=lambda p: p[-30:])
def test_kernel_on_published_cases(path):
    rng = np.random.default_rng(1)
    _check(*_case_batch(path, rng), rng)


def test_dose_gradient_by_finite_differences():
    """Dose amounts are data in the model, but the kernel differentiates them too: central
    differences (the objective is linear in the doses, so they are exact to rounding)."""
    rng = np.random.default_rng(3)
    design, values = _batch(rng, k=2)
    arrays = _design_arrays(design)
    g_conc = rng.normal(size=(2, design.samples.shape[1]))
    g_auc = rng.normal(size=(2, design.windows.shape[1]))
    grad = backward(*values, g_conc, g_auc, arrays)[7]

    def objective(doses):
        conc, auc = forward(*values[:7], doses, arrays)
        return (g_conc * conc).sum() + (g_auc * auc).sum()

    for idx in np.ndindex(values[7].shape):
        up, down = values[7].copy(), values[7].copy()
        up[idx] += 1.0
        down[idx] -= 1.0
        fd = (objective(up) - objective(down)) / 2.0
        assert grad[idx] == pytest.approx(fd, rel=1e-7, abs=1e-12)


@pytest.mark.parametrize("a, b, t", [(0.1, 0.1, 2.0), (0.1, 0.1 + 1e-5, 5.0), (0.05, 2.0, 3.0)])
def test_divided_exp_partials(a, b, t):
    """Value equals divided_exp; partials equal central differences (both branches)."""
    d, da, db, dt = divided_exp_partials(a, b, t)
    assert d == pytest.approx(float(divided_exp(a, b, t)), rel=1e-14)
    eps = 1e-6
    for got, shift in ((da, (eps, 0, 0)), (db, (0, eps, 0)), (dt, (0, 0, eps))):
        up = divided_exp_partials(a + shift[0], b + shift[1], t + shift[2])[0]
        down = divided_exp_partials(a - shift[0], b - shift[1], t - shift[2])[0]
        assert got == pytest.approx((up - down) / (2 * eps), rel=1e-6)


@pytest.mark.parametrize("mode", ["FAST_RUN", "NUMBA"])
def test_operation_in_a_graph(mode):
    """As a PyTensor node (C/Python and numba backends): same values and gradient as the
    kernel called directly."""
    rng = np.random.default_rng(11)
    design, values = _batch(rng, k=3)
    sym = [pt.tensor(shape=v.shape, dtype="float64") for v in values]
    out = solve_op(sym[0], design, *sym[1:])
    g_conc = rng.normal(size=(3, design.samples.shape[1]))
    g_auc = rng.normal(size=(3, design.windows.shape[1]))
    objective = (out["conc"] * g_conc).sum() + (out["auc"] * g_auc).sum()
    f = pytensor.function(sym, [out["conc"], *pytensor.grad(objective, sym)], mode=mode)
    conc, *grads = f(*values)
    arrays = _design_arrays(design)
    np.testing.assert_allclose(conc, forward(*values, arrays)[0], rtol=1e-13)
    for g, want in zip(grads, backward(*values, g_conc, g_auc, arrays), strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-14)
