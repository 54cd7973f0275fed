"""The closed-form kinetics as one compiled PyTensor operation, with its exact gradient.

:func:`~dialyzability.pk.closed_form.solve` writes the kinetics as array expressions (ranks by
pairwise
comparison, lower-triangular matrices of exponentials): exact and differentiable by PyTensor, but
some 250 small operations whose per-operation overhead, not their arithmetic, sets the cost of a
gradient. Here the same solution is one operation, :class:`Kinetics`, computed by a numba
kernel: events sorted (stable, ties in event order, as in ``solve``), then one pass over the
sorted intervals,

    G_end = G e^(-ka dt),   A_end = A e^(-k dt) + ka G D(k, ka, dt),
    ∫A over the interval = (G - G_end + A - A_end) / k,

and its vector-Jacobian product, :class:`KineticsGrad`, computed by the reverse pass over the
same intervals (reverse-mode differentiation written out by hand; the partial derivatives of
D are in :func:`divided_exp_partials`). Both are checked against ``solve`` and its PyTensor
gradient (``tests/test_kernel.py``), and ``solve`` against the ODE. Cases are a batch (first
axis), so the pooled model uses the same operation. The kernels are compiled once per machine
(numba's on-disk cache); a model's graph calls them as one node in every backend except JAX.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from dialyzability.design import BatchDesign
from dialyzability.pk.closed_form import _SERIES_BELOW

_DESIGN_FIELDS = (
    "dose_event",
    "dose_oral",
    "session_start",
    "session_end",
    "session_modality",
    "session_mask",
    "windows",
    "samples",
    "initial_event",
)


@numba.njit(cache=True)
def divided_exp_partials(a, b, t):
    """D(a, b, t) = (e^(-a t) - e^(-b t)) / (b - a) and its partial derivatives in a, b, t.

    With m = (a + b)/2, h = (b - a) t/2 and S(h) = sinh(h)/h (so D = t e^(-m t) S):

        ∂D/∂a = -(t²/2) e^(-m t) (S + S'),   ∂D/∂b = (t²/2) e^(-m t) (S' - S),
        ∂D/∂t = e^(-m t) (S (1 - m t) + h S'),

    with the series S = 1 + h²/6 + h⁴/120, S' = h/3 + h³/30 + h⁵/840 for |h| < 1e-3 (as in
    :func:`~dialyzability.pk.closed_form.divided_exp`); otherwise the equivalent direct forms
    ∂D/∂a = (D - t e^(-a t))/(b - a), ∂D/∂b = (t e^(-b t) - D)/(b - a),
    ∂D/∂t = (b e^(-b t) - a e^(-a t))/(b - a).
    """
    h = 0.5 * (b - a) * t
    if abs(h) < _SERIES_BELOW:
        h2 = h * h
        m = 0.5 * (a + b)
        e = math.exp(-m * t)
        s = 1.0 + h2 / 6.0 + h2 * h2 / 120.0
        sp = h / 3.0 + h * h2 / 30.0 + h * h2 * h2 / 840.0
        d = t * e * s
        return (
            d,
            -0.5 * t * t * e * (s + sp),
            0.5 * t * t * e * (sp - s),
            e * (s * (1 - m * t) + h * sp),
        )
    ea = math.exp(-a * t)
    eb = math.exp(-b * t)
    d = (ea - eb) / (b - a)
    return d, (d - t * ea) / (b - a), (t * eb - d) / (b - a), (b * eb - a * ea) / (b - a)


@numba.njit(cache=True)
def _case_forward(c, times, volume, cl, cl_ectr, ka, f, a0, dose_amount, design):
    """Sorted grid and states of case ``c``: order, pos, grid, G and A after the inputs at each
    grid point, k and ∫A per interval, and the inputs."""
    dose_event, dose_oral, s_start, s_end, s_mod, s_mask, _, _, init = design
    n = times.shape[1]
    t = times[c]
    order = np.argsort(t, kind="mergesort")
    pos = np.empty(n, np.int64)
    for p in range(n):
        pos[order[p]] = p
    grid = t[order]
    g_in = np.zeros(n)
    a_in = np.zeros(n)
    for d in range(dose_event.shape[1]):
        p = pos[dose_event[c, d]]
        if dose_oral[c, d]:
            g_in[p] += f[c] * dose_amount[c, d]
        else:
            a_in[p] += dose_amount[c, d]
    if init[c] >= 0:
        a_in[pos[init[c]]] += a0[c]
    gut = np.empty(n)
    amount = np.empty(n)
    k = np.empty(max(n - 1, 0))
    integral = np.empty(max(n - 1, 0))
    gut[0] = g_in[0]
    amount[0] = a_in[0]
    for p in range(1, n):
        dt = grid[p] - grid[p - 1]
        mid = 0.5 * (grid[p] + grid[p - 1])
        rate = cl[c]
        for s in range(s_start.shape[1]):
            if s_mask[c, s] and t[s_start[c, s]] <= mid and mid < t[s_end[c, s]]:
                rate += cl_ectr[c, s_mod[c, s]]
        rate /= volume[c]
        dd = divided_exp_partials(rate, ka[c], dt)[0]
        gut_end = gut[p - 1] * math.exp(-ka[c] * dt)
        amount_end = amount[p - 1] * math.exp(-rate * dt) + ka[c] * gut[p - 1] * dd
        k[p - 1] = rate
        integral[p - 1] = (gut[p - 1] - gut_end + amount[p - 1] - amount_end) / rate
        gut[p] = gut_end + g_in[p]
        amount[p] = amount_end + a_in[p]
    return order, pos, grid, gut, amount, k, integral


@numba.njit(cache=True)
def forward(times, volume, cl, cl_ectr, ka, f, a0, dose_amount, design):
    """Concentrations (C, L) at the sample events and AUCs (C, W) over the windows."""
    windows, samples = design[6], design[7]
    n_cases = times.shape[0]
    conc = np.zeros((n_cases, samples.shape[1]))
    auc = np.zeros((n_cases, windows.shape[1]))
    for c in range(n_cases):
        _, pos, _, _, amount, _, integral = _case_forward(
            c, times, volume, cl, cl_ectr, ka, f, a0, dose_amount, design
        )
        for j in range(samples.shape[1]):
            conc[c, j] = amount[pos[samples[c, j]]] / volume[c]
        for w in range(windows.shape[1]):
            total = 0.0
            for p in range(pos[windows[c, w, 0]], pos[windows[c, w, 1]]):
                total += integral[p]
            auc[c, w] = total / volume[c]
    return conc, auc


@numba.njit(cache=True)
def backward(times, volume, cl, cl_ectr, ka, f, a0, dose_amount, g_conc, g_auc, design):
    """Vector-Jacobian product of :func:`forward`: the gradients, with respect to each input, of
    Σ g_conc · conc + Σ g_auc · auc (reverse pass over the sorted intervals)."""
    (dose_event, dose_oral, s_start, s_end, s_mod, s_mask, windows, samples, init) = design
    n_cases, n = times.shape
    g_times = np.zeros_like(times)
    g_volume = np.zeros(n_cases)
    g_cl = np.zeros(n_cases)
    g_ectr = np.zeros_like(cl_ectr)
    g_ka = np.zeros(n_cases)
    g_f = np.zeros(n_cases)
    g_a0 = np.zeros(n_cases)
    g_dose = np.zeros_like(dose_amount)
    for c in range(n_cases):
        order, pos, grid, gut, amount, k, integral = _case_forward(
            c, times, volume, cl, cl_ectr, ka, f, a0, dose_amount, design
        )
        t = times[c]
        v = volume[c]
        g_amount = np.zeros(n)  # adjoints of the states after the inputs at each grid point
        g_int = np.zeros(max(n - 1, 0))
        for j in range(samples.shape[1]):
            p = pos[samples[c, j]]
            g_amount[p] += g_conc[c, j] / v
            g_volume[c] -= g_conc[c, j] * amount[p] / (v * v)
        for w in range(windows.shape[1]):
            lo, hi = pos[windows[c, w, 0]], pos[windows[c, w, 1]]
            total = 0.0
            for p in range(lo, hi):
                total += integral[p]
                g_int[p] += g_auc[c, w] / v
            g_volume[c] -= g_auc[c, w] * total / (v * v)
        g_grid = np.zeros(n)
        g_gin = np.zeros(n)
        g_ain = np.zeros(n)
        g_gut = 0.0  # adjoint of gut[p] in the loop below
        for p in range(n - 1, 0, -1):
            j = p - 1
            dt = grid[p] - grid[j]
            rate = k[j]
            e_ka = math.exp(-ka[c] * dt)
            e_k = math.exp(-rate * dt)
            dd, dd_a, dd_b, dd_t = divided_exp_partials(rate, ka[c], dt)
            # gut[p] = gut_end + g_in[p], amount[p] = amount_end + a_in[p]
            g_gin[p] += g_gut
            g_ain[p] += g_amount[p]
            g_gut_end = g_gut
            g_amount_end = g_amount[p]
            # integral[j] = (gut[j] - gut_end + amount[j] - amount_end) / rate
            g_num = g_int[j] / rate
            g_rate = -g_int[j] * integral[j] / rate
            g_gut_j = g_num
            g_gut_end -= g_num
            g_amount[j] += g_num
            g_amount_end -= g_num
            # amount_end = amount[j] e_k + ka gut[j] D
            g_amount[j] += g_amount_end * e_k
            g_rate -= g_amount_end * amount[j] * e_k * dt
            g_dt = -g_amount_end * amount[j] * e_k * rate
            g_ka[c] += g_amount_end * gut[j] * dd
            g_gut_j += g_amount_end * ka[c] * dd
            g_d = g_amount_end * ka[c] * gut[j]
            # gut_end = gut[j] e_ka
            g_gut_j += g_gut_end * e_ka
            g_ka[c] -= g_gut_end * gut[j] * e_ka * dt
            g_dt -= g_gut_end * gut[j] * e_ka * ka[c]
            # D(rate, ka, dt)
            g_rate += g_d * dd_a
            g_ka[c] += g_d * dd_b
            g_dt += g_d * dd_t
            # rate = (cl + sum of the running sessions' cl_ectr) / V
            g_cl[c] += g_rate / v
            mid = 0.5 * (grid[p] + grid[j])
            for s in range(s_start.shape[1]):
                if s_mask[c, s] and t[s_start[c, s]] <= mid and mid < t[s_end[c, s]]:
                    g_ectr[c, s_mod[c, s]] += g_rate / v
            g_volume[c] -= g_rate * rate / v
            # dt = grid[p] - grid[j]
            g_grid[p] += g_dt
            g_grid[j] -= g_dt
            g_gut = g_gut_j
        if n > 0:
            g_gin[0] += g_gut
            g_ain[0] += g_amount[0]
        for d in range(dose_event.shape[1]):
            p = pos[dose_event[c, d]]
            if dose_oral[c, d]:
                g_f[c] += g_gin[p] * dose_amount[c, d]
                g_dose[c, d] += g_gin[p] * f[c]
            else:
                g_dose[c, d] += g_ain[p]
        if init[c] >= 0:
            g_a0[c] += g_ain[pos[init[c]]]
        for p in range(n):
            g_times[c, order[p]] += g_grid[p]
    return g_times, g_volume, g_cl, g_ectr, g_ka, g_f, g_a0, g_dose


def _design_arrays(design: BatchDesign) -> tuple:
    return (
        np.ascontiguousarray(design.dose_event, dtype=np.int64),
        np.ascontiguousarray(design.dose_oral, dtype=np.bool_),
        np.ascontiguousarray(design.session_start, dtype=np.int64),
        np.ascontiguousarray(design.session_end, dtype=np.int64),
        np.ascontiguousarray(design.session_modality, dtype=np.int64),
        np.ascontiguousarray(design.session_mask, dtype=np.bool_),
        np.ascontiguousarray(design.windows, dtype=np.int64),
        np.ascontiguousarray(design.samples, dtype=np.int64),
        np.ascontiguousarray(design.initial_event, dtype=np.int64),
    )


def _op_classes():
    """The PyTensor Ops (defined on first use, so that importing this module stays light)."""
    global Kinetics, KineticsGrad
    if "Kinetics" in globals():
        return Kinetics, KineticsGrad
    import pytensor.tensor as pt
    from pytensor.gradient import DisconnectedType
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op
    from pytensor.link.numba.dispatch import numba_funcify
    from pytensor.link.numba.dispatch.basic import numba_njit

    class _Base(Op):
        __props__ = ("key",)

        def __init__(self, arrays: tuple, n_cases: int):
            self.arrays, self.n_cases = arrays, n_cases
            self.key = tuple((a.dtype.str, a.shape, a.tobytes()) for a in arrays)

    class _Kinetics(_Base):
        """conc (C, L), auc (C, W) = the kinetics of a batch of cases (see the module)."""

        def make_node(self, times, volume, cl, cl_ectr, ka, f, a0, dose_amount):
            inputs = [
                pt.as_tensor_variable(x).astype("float64")
                for x in (times, volume, cl, cl_ectr, ka, f, a0, dose_amount)
            ]
            c = self.n_cases
            out = [
                pt.tensor(dtype="float64", shape=(c, self.arrays[7].shape[1])),
                pt.tensor(dtype="float64", shape=(c, self.arrays[6].shape[1])),
            ]
            return Apply(self, inputs, out)

        def perform(self, node, inputs, outputs):
            conc, auc = forward(*[np.asarray(x, dtype=float) for x in inputs], self.arrays)
            outputs[0][0], outputs[1][0] = conc, auc

        def L_op(self, inputs, outputs, output_grads):
            g = [
                pt.zeros_like(out) if isinstance(g.type, DisconnectedType) else g
                for out, g in zip(outputs, output_grads, strict=True)
            ]
            return KineticsGrad(self.arrays, self.n_cases)(*inputs, *g)

    class _KineticsGrad(_Base):
        """The vector-Jacobian product of :class:`Kinetics`: one gradient per float input."""

        def make_node(self, *inputs):
            inputs = [pt.as_tensor_variable(x).astype("float64") for x in inputs]
            return Apply(self, inputs, [x.type() for x in inputs[:8]])

        def perform(self, node, inputs, outputs):
            grads = backward(*[np.asarray(x, dtype=float) for x in inputs], self.arrays)
            for out, g in zip(outputs, grads, strict=True):
                out[0] = g

    @numba_funcify.register(_Kinetics)
    def _numba_kinetics(op, node=None, **kwargs):
        arrays = op.arrays

        @numba_njit
        def kinetics(times, volume, cl, cl_ectr, ka, f, a0, dose_amount):
            return forward(times, volume, cl, cl_ectr, ka, f, a0, dose_amount, arrays)

        return kinetics

    @numba_funcify.register(_KineticsGrad)
    def _numba_kinetics_grad(op, node=None, **kwargs):
        arrays = op.arrays

        @numba_njit
        def kinetics_grad(times, volume, cl, cl_ectr, ka, f, a0, dose_amount, g_conc, g_auc):
            return backward(
                times, volume, cl, cl_ectr, ka, f, a0, dose_amount, g_conc, g_auc, arrays
            )

        return kinetics_grad

    Kinetics, KineticsGrad = _Kinetics, _KineticsGrad
    return Kinetics, KineticsGrad


def solve_op(times, design: BatchDesign, volume, cl, cl_ectr, ka, f, a0, dose_amount):
    """``conc`` (C, L) and ``auc`` (C, W) of :func:`~dialyzability.pk.closed_form.solve_batch` as
    one
    PyTensor node (tensors in, tensors out; shapes as in ``solve_batch``, ``dose_amount``
    (C, D) padded like ``design``)."""
    kinetics, _ = _op_classes()
    op = kinetics(_design_arrays(design), design.n_cases)
    conc, auc = op(times, volume, cl, cl_ectr, ka, f, a0, dose_amount)
    return {"conc": conc, "auc": auc}
