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

Cost: both kernels run the forward pass of all cases into work arrays allocated once per call
(:func:`_work`, :func:`_forward_pass`), the events of a case sorted by insertion (a case has
some tens of events); the reverse pass reuses the forward pass's e^(-k dt), e^(-ka dt) and D of
each interval (two exponentials per interval, three where D takes its series). The loops index
arrays element by element: an array view or an array-valued call per case costs numba reference
counting (atomic, not inlined) that would exceed the arithmetic. The results are those of the
earlier per-case formulation to the last bit (same operations in the same order).
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
def _divided_exp_given(a, b, t, ea, eb):
    """D(a, b, t) of :func:`divided_exp_partials`, given ea = e^(-a t) and eb = e^(-b t) (the
    interval's own decay factors, computed once per interval): the same arithmetic, so the same
    value to the last bit; the series branch (|h| < 1e-3) computes its own e^(-m t) (at t = 0
    as 1 + 0 m, which like e^(-m 0) is 1, or NaN for an infinite or NaN m)."""
    h = 0.5 * (b - a) * t
    if abs(h) < _SERIES_BELOW:
        h2 = h * h
        e = 1.0 + 0.0 * (a + b) if t == 0.0 else math.exp(-0.5 * (a + b) * t)
        return t * e * (1.0 + h2 / 6.0 + h2 * h2 / 120.0)
    return (ea - eb) / (b - a)


@numba.njit(cache=True)
def _divided_exp_grad_given(a, b, t, d, ea, eb):
    """The partials (∂D/∂a, ∂D/∂b, ∂D/∂t) of :func:`divided_exp_partials`, given D = d,
    ea = e^(-a t) and eb = e^(-b t): the same arithmetic and branches, without its exponentials
    (the series branch computes its own e^(-m t))."""
    h = 0.5 * (b - a) * t
    if abs(h) < _SERIES_BELOW:
        h2 = h * h
        m = 0.5 * (a + b)
        e = 1.0 + 0.0 * m if t == 0.0 else math.exp(-m * t)
        s = 1.0 + h2 / 6.0 + h2 * h2 / 120.0
        sp = h / 3.0 + h * h2 / 30.0 + h * h2 * h2 / 840.0
        return (
            -0.5 * t * t * e * (s + sp),
            0.5 * t * t * e * (sp - s),
            e * (s * (1 - m * t) + h * sp),
        )
    return (d - t * ea) / (b - a), (t * eb - d) / (b - a), (b * eb - a * ea) / (b - a)


# Rows of the float work array (rows, cases, width) that the forward pass fills: per grid
# point, its time, the oral and iv inputs there, G and A after the inputs; per interval (index
# of its start), k, ∫A, e^(-k dt), e^(-ka dt) and D(k, ka, dt); per session of the case (mask
# True, in order), its start and end time and CL_ECTR. The reverse pass adds three rows of
# adjoints (_ADJ_A, _ADJ_G, _ADJ_INTEGRAL).
_GRID, _G_IN, _A_IN, _GUT, _AMOUNT, _K, _INTEGRAL, _E_K, _E_KA, _D = range(10)
_S_LO, _S_HI, _S_CL = 10, 11, 12
_ROWS = 13
_ADJ_A, _ADJ_G, _ADJ_INTEGRAL = 13, 14, 15
# Rows of the int work array: the event at each grid point, the grid point of each event, and
# the number of the case's sessions (mask True) followed by their modalities.
_ORDER, _POS, _SESSIONS = 0, 1, 2
#: the float rows that :func:`place_case` fills
_PLACE_ROWS = (_GRID, _G_IN, _A_IN, _S_LO, _S_HI, _S_CL)


@numba.njit(cache=True)
def _work(times, design, reverse):
    """Work arrays of one call, for all its cases at once (allocated once per call): (3, C,
    width) int and (rows, C, width) float, as above (``reverse``: with the adjoint rows)."""
    n_cases, n = times.shape
    width = max(n, design[2].shape[1] + 1)
    rows = _ROWS + 3 if reverse else _ROWS
    return np.empty((3, n_cases, width), np.int64), np.empty((rows, n_cases, width))


@numba.njit(cache=True, inline="always")
def place_case(c, times, cl_ectr, f, a0, dose_amount, design, iw, w, rows):
    """The start of a forward pass for case ``c``, shared by the one- and two-compartment
    kernels: its sessions listed (start, end, CL_ECTR; their number and modalities in the int
    rows), its events sorted by insertion (stable, ties in event order, NaN last: the
    permutation of ``np.argsort(kind="mergesort")``) and its inputs placed on the grid (oral
    doses times F into the gut row, iv doses and ``a0`` into the body row). ``rows`` names the
    float rows (grid, gut inputs, body inputs, session start, end and CL_ECTR); the int rows
    are :data:`_ORDER`, :data:`_POS` and :data:`_SESSIONS` in both. Returns the number of
    sessions."""
    grid, g_in, a_in, s_lo, s_hi, s_cl = rows
    dose_event, dose_oral, s_start, s_end, s_mod, s_mask, _, _, init = design
    n = times.shape[1]
    n_s = 0
    for s in range(s_start.shape[1]):
        if s_mask[c, s]:
            w[s_lo, c, n_s] = times[c, s_start[c, s]]
            w[s_hi, c, n_s] = times[c, s_end[c, s]]
            w[s_cl, c, n_s] = cl_ectr[c, s_mod[c, s]]
            iw[_SESSIONS, c, n_s + 1] = s_mod[c, s]
            n_s += 1
    iw[_SESSIONS, c, 0] = n_s
    for i in range(n):
        x = times[c, i]
        j = i - 1
        while j >= 0:
            y = w[grid, c, j]
            if x < y or (y != y and x == x):  # numpy's float less-than (NaN last)
                w[grid, c, j + 1] = y
                iw[_ORDER, c, j + 1] = iw[_ORDER, c, j]
                j -= 1
            else:
                break
        w[grid, c, j + 1] = x
        iw[_ORDER, c, j + 1] = i
    for p in range(n):
        iw[_POS, c, iw[_ORDER, c, p]] = p
        w[g_in, c, p] = 0.0
        w[a_in, c, p] = 0.0
    for d in range(dose_event.shape[1]):
        p = iw[_POS, c, dose_event[c, d]]
        if dose_oral[c, d]:
            w[g_in, c, p] += f[c] * dose_amount[c, d]
        else:
            w[a_in, c, p] += dose_amount[c, d]
    if init[c] >= 0:
        w[a_in, c, iw[_POS, c, init[c]]] += a0[c]
    return n_s


@numba.njit(cache=True)
def _forward_pass(times, volume, cl, cl_ectr, ka, f, a0, dose_amount, design, iw, w):
    """Forward pass of every case into the work arrays of :func:`_work`.

    Per case: its sessions listed, the events sorted by insertion (stable, ties in event order,
    NaN last: the permutation of ``np.argsort(kind="mergesort")``), the inputs placed on the
    grid, then one pass over the intervals. One loop over the cases with element indexing only:
    no array views or array-valued calls per case, whose reference counting would cost more
    than the arithmetic."""
    n_cases, n = times.shape
    for c in range(n_cases):
        n_s = place_case(c, times, cl_ectr, f, a0, dose_amount, design, iw, w, _PLACE_ROWS)
        if n == 0:
            continue
        v, cl_c, ka_c = volume[c], cl[c], ka[c]
        g_prev = w[_G_IN, c, 0]
        a_prev = w[_A_IN, c, 0]
        w[_GUT, c, 0] = g_prev
        w[_AMOUNT, c, 0] = a_prev
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
            if dt == 0.0:  # coincident events (and padding): e^(-x 0) without exp()
                ek = 1.0 + 0.0 * rate
                eka = 1.0 + 0.0 * ka_c
            else:
                ek = math.exp(-rate * dt)
                eka = math.exp(-ka_c * dt)
            dv = _divided_exp_given(rate, ka_c, dt, ek, eka)
            gut_end = g_prev * eka
            amount_end = a_prev * ek + ka_c * g_prev * dv
            w[_K, c, j] = rate
            w[_E_K, c, j] = ek
            w[_E_KA, c, j] = eka
            w[_D, c, j] = dv
            w[_INTEGRAL, c, j] = (g_prev - gut_end + a_prev - amount_end) / rate
            g_prev = gut_end + w[_G_IN, c, p]
            a_prev = amount_end + w[_A_IN, c, p]
            w[_GUT, c, p] = g_prev
            w[_AMOUNT, c, p] = a_prev


@numba.njit(cache=True)
def forward(times, volume, cl, cl_ectr, ka, f, a0, dose_amount, design):
    """Concentrations (C, L) at the sample events and AUCs (C, W) over the windows."""
    windows, samples = design[6], design[7]
    n_cases = times.shape[0]
    n_samples, n_windows = samples.shape[1], windows.shape[1]
    conc = np.empty((n_cases, n_samples))  # every element is written below
    auc = np.empty((n_cases, n_windows))
    iw, w = _work(times, design, False)
    _forward_pass(times, volume, cl, cl_ectr, ka, f, a0, dose_amount, design, iw, w)
    for c in range(n_cases):
        v = volume[c]
        for j in range(n_samples):
            conc[c, j] = w[_AMOUNT, c, iw[_POS, c, samples[c, j]]] / v
        for k in range(n_windows):
            total = 0.0
            for p in range(iw[_POS, c, windows[c, k, 0]], iw[_POS, c, windows[c, k, 1]]):
                total += w[_INTEGRAL, c, p]
            auc[c, k] = total / v
    return conc, auc


@numba.njit(cache=True)
def backward(times, volume, cl, cl_ectr, ka, f, a0, dose_amount, g_conc, g_auc, design):
    """Vector-Jacobian product of :func:`forward`: the gradients, with respect to each input, of
    Σ g_conc · conc + Σ g_auc · auc (reverse pass over the sorted intervals; the exponentials
    and D of each interval are the forward pass's, stored)."""
    dose_event, dose_oral, windows, samples, init = (
        design[0],
        design[1],
        design[6],
        design[7],
        design[8],
    )
    n_cases, n = times.shape
    # every element of these is written below (g_ectr is accumulated)
    g_times = np.empty_like(times)
    g_volume = np.empty(n_cases)
    g_cl = np.empty(n_cases)
    g_ectr = np.zeros_like(cl_ectr)
    g_ka = np.empty(n_cases)
    g_f = np.empty(n_cases)
    g_a0 = np.empty(n_cases)
    g_dose = np.empty_like(dose_amount)
    iw, w = _work(times, design, True)
    _forward_pass(times, volume, cl, cl_ectr, ka, f, a0, dose_amount, design, iw, w)
    # adjoints of A after the inputs at each grid point (= of the iv inputs there), of G after
    # the inputs (= of the oral inputs there) and of ∫A per interval: rows _ADJ_* of w
    for c in range(n_cases):
        v = volume[c]
        ka_c = ka[c]
        n_s = iw[_SESSIONS, c, 0]
        for p in range(n):
            w[_ADJ_A, c, p] = 0.0
            w[_ADJ_INTEGRAL, c, p] = 0.0
        g_v = 0.0
        for j in range(samples.shape[1]):
            p = iw[_POS, c, samples[c, j]]
            w[_ADJ_A, c, p] += g_conc[c, j] / v
            g_v -= g_conc[c, j] * w[_AMOUNT, c, p] / (v * v)
        for k in range(windows.shape[1]):
            g_w = g_auc[c, k] / v
            total = 0.0
            for p in range(iw[_POS, c, windows[c, k, 0]], iw[_POS, c, windows[c, k, 1]]):
                total += w[_INTEGRAL, c, p]
                w[_ADJ_INTEGRAL, c, p] += g_w
            g_v -= g_auc[c, k] * total / (v * v)
        g_k = 0.0
        g_c = 0.0
        g_gut = 0.0  # adjoint of gut[p] in the loop below
        g_next = 0.0  # adjoint of the time of grid point p from the interval after it
        for p in range(n - 1, 0, -1):
            j = p - 1
            t_p, t_j = w[_GRID, c, p], w[_GRID, c, j]
            dt = t_p - t_j
            rate = w[_K, c, j]
            eka = w[_E_KA, c, j]
            ek = w[_E_K, c, j]
            dv = w[_D, c, j]
            gut_j = w[_GUT, c, j]
            amount_j = w[_AMOUNT, c, j]
            dd_a, dd_b, dd_t = _divided_exp_grad_given(rate, ka_c, dt, dv, ek, eka)
            # gut[p] = gut_end + g_in[p], amount[p] = amount_end + a_in[p]
            w[_ADJ_G, c, p] = g_gut
            g_gut_end = g_gut
            g_amount_end = w[_ADJ_A, c, p]
            # integral[j] = (gut[j] - gut_end + amount[j] - amount_end) / rate
            g_int = w[_ADJ_INTEGRAL, c, j]
            g_num = g_int / rate
            g_rate = -g_int * w[_INTEGRAL, c, j] / rate
            g_gut_j = g_num
            g_gut_end -= g_num
            g_amount_j = w[_ADJ_A, c, j] + g_num
            g_amount_end -= g_num
            # amount_end = amount[j] e_k + ka gut[j] D
            w[_ADJ_A, c, j] = g_amount_j + g_amount_end * ek
            g_rate -= g_amount_end * amount_j * ek * dt
            g_dt = -g_amount_end * amount_j * ek * rate
            g_k += g_amount_end * gut_j * dv
            g_gut_j += g_amount_end * ka_c * dv
            g_d = g_amount_end * ka_c * gut_j
            # gut_end = gut[j] e_ka
            g_gut_j += g_gut_end * eka
            g_k -= g_gut_end * gut_j * eka * dt
            g_dt -= g_gut_end * gut_j * eka * ka_c
            # D(rate, ka, dt)
            g_rate += g_d * dd_a
            g_k += g_d * dd_b
            g_dt += g_d * dd_t
            # rate = (cl + sum of the running sessions' cl_ectr) / V
            g_rv = g_rate / v
            g_c += g_rv
            mid = 0.5 * (t_p + t_j)
            for s in range(n_s):
                if w[_S_LO, c, s] <= mid and mid < w[_S_HI, c, s]:
                    g_ectr[c, iw[_SESSIONS, c, s + 1]] += g_rv
            g_v -= g_rate * rate / v
            # dt = grid[p] - grid[j]: each grid point's time adjoint is complete here
            g_times[c, iw[_ORDER, c, p]] = g_next + g_dt
            g_next = -g_dt
            g_gut = g_gut_j
        if n > 0:
            w[_ADJ_G, c, 0] = g_gut
            g_times[c, iw[_ORDER, c, 0]] = g_next
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
                g_dose[c, d] = w[_ADJ_A, c, p]
        g_f[c] = g_fc
        g_a0[c] = w[_ADJ_A, c, iw[_POS, c, init[c]]] if init[c] >= 0 else 0.0
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


#: the PyTensor Ops of each kernel, made on first use (importing the kinetics stays light)
_OPS: dict[str, tuple] = {}


def op_classes(name: str, forward, backward, n_inputs: int) -> tuple:
    """The PyTensor Ops of a compiled kernel, one class pair per kernel (made on first use):
    ``name`` computing ``forward(*inputs, design)`` → (conc (C, L), auc (C, W)), and its
    vector-Jacobian product computing ``backward(*inputs, g_conc, g_auc, design)`` → one
    gradient per float input (``n_inputs`` of them), each registered with PyTensor's numba
    backend so that nutpie compiles them into the model. Shared by the one- and the
    two-compartment kernels."""
    if name in _OPS:
        return _OPS[name]
    import pytensor.tensor as pt
    from pytensor.gradient import DisconnectedType
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op
    from pytensor.link.numba.dispatch import numba_funcify
    from pytensor.link.numba.dispatch.basic import numba_njit

    class Base(Op):
        __props__ = ("key",)

        def __init__(self, arrays: tuple, n_cases: int):
            self.arrays, self.n_cases = arrays, n_cases
            self.key = tuple((a.dtype.str, a.shape, a.tobytes()) for a in arrays)

    class Forward(Base):
        def make_node(self, *inputs):
            if len(inputs) != n_inputs:
                raise TypeError(f"{name} takes {n_inputs} inputs, got {len(inputs)}")
            inputs = [pt.as_tensor_variable(x).astype("float64") for x in inputs]
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
            return Grad(self.arrays, self.n_cases)(*inputs, *g)

    class Grad(Base):
        def make_node(self, *inputs):
            inputs = [pt.as_tensor_variable(x).astype("float64") for x in inputs]
            return Apply(self, inputs, [x.type() for x in inputs[:n_inputs]])

        def perform(self, node, inputs, outputs):
            grads = backward(*[np.asarray(x, dtype=float) for x in inputs], self.arrays)
            for out, g in zip(outputs, grads, strict=True):
                out[0] = g

    Forward.__name__ = Forward.__qualname__ = name
    Grad.__name__ = Grad.__qualname__ = f"{name}Grad"
    Forward.__doc__ = f"conc (C, L), auc (C, W) of the {name} kernel of a batch of cases."
    Grad.__doc__ = f"The vector-Jacobian product of {name}: one gradient per float input."

    @numba_funcify.register(Forward)
    def _numba_forward(op, node=None, **kwargs):
        arrays = op.arrays

        @numba_njit
        def kernel(*inputs):
            return forward(*inputs, arrays)

        return kernel

    @numba_funcify.register(Grad)
    def _numba_grad(op, node=None, **kwargs):
        arrays = op.arrays

        @numba_njit
        def kernel_grad(*inputs):
            return backward(*inputs, arrays)

        return kernel_grad

    _OPS[name] = (Forward, Grad)
    return _OPS[name]


def solve_op(times, design: BatchDesign, volume, cl, cl_ectr, ka, f, a0, dose_amount):
    """``conc`` (C, L) and ``auc`` (C, W) of :func:`~dialyzability.pk.closed_form.solve_batch` as
    one
    PyTensor node (tensors in, tensors out; shapes as in ``solve_batch``, ``dose_amount``
    (C, D) padded like ``design``)."""
    kinetics, _ = op_classes("Kinetics", forward, backward, 8)
    op = kinetics(_design_arrays(design), design.n_cases)
    conc, auc = op(times, volume, cl, cl_ectr, ka, f, a0, dose_amount)
    return {"conc": conc, "auc": auc}
