"""Speed of the kinetics kernels (:mod:`dialyzability.pk.kernel`) on realistic pooled batches.

    python benchmarks/kernel_speed.py [--baseline PATH] [--kernel PATH] [--sizes 1 10 50 200]
                                      [--repeats 101] [--block-ms 5] [--clock cpu|wall]
                                      [--modes loop python]

For the founding case (``data/cases/lee2020-baclofen.toml``, size 1) and simulated populations
(``simulate_population(n, seed=n)``, sizes 10, 50, 200; the cases of baclofen laid out by
:func:`dialyzability.design.make_batch`), ``forward`` and ``backward`` are timed directly on
realistic inputs: the event times of ``batch.data["event_time"]`` with every latent timing at the
middle of its range, V = 40 L, CL = 5 L/h, CL_ECTR = 6 L/h, ka = 1 /h, F = 0.8, a0 = 0, the
batch's dose amounts, and fixed random output adjoints for ``backward``.

Two ways of calling, each reported in microseconds per call (median over ``--repeats`` blocks of
calls, each block lasting about ``--block-ms``; by default measured on the thread's CPU clock,
which other processes sharing the cores do not advance, ``--clock wall`` for wall time):

* ``compiled loop``: the kernel called from a numba-compiled loop, as nutpie calls it inside the
  compiled log density (no Python dispatch; the design arrays compile-time constants, as in the
  Ops' numba implementations);
* ``from Python``: the kernel's numba dispatcher called from Python (adds the unboxing of its
  17 arguments).

With ``--baseline PATH`` (a copy of an earlier ``kernel.py``, imported by path), the baseline and
the installed kernel are timed in the same process with their blocks interleaved (same machine
load), their results are compared (largest relative difference of every output), and the table
gives both with the speed-up. ``--kernel PATH`` times that file instead of the installed
kernel. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import platform
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np

from dialyzability.design import make_batch
from dialyzability.io.case import load_case, parse_case
from dialyzability.io.drugs import load_drug
from dialyzability.simulate import simulate_population

ROOT = Path(__file__).resolve().parent.parent
CASE = ROOT / "data" / "cases" / "lee2020-baclofen.toml"


def load_kernel_module(path: str | None):
    """The installed kernel module, or the one at ``path``, imported under a name fixed by its
    path (numba's on-disk cache of a module's functions refers to the module by name)."""
    if path is None:
        from dialyzability.pk import kernel

        return kernel
    path = str(Path(path).resolve())
    name = "kernel_" + hashlib.sha1(path.encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def batch_for(size: int):
    """The batch of ``size`` cases (1: the founding case)."""
    if size == 1:
        cases = [load_case(CASE)]
    else:
        raws, _, _ = simulate_population(size, seed=size)
        cases = [parse_case(r, r["id"]) for r in raws]
    return make_batch(cases, load_drug("baclofen"))


def inputs_for(batch, arrays_of) -> tuple[tuple, tuple, tuple]:
    """(forward arguments, the output adjoints, the design arrays) for ``batch``."""
    data = batch.data
    times = data["event_time"].copy()
    mid = 0.5 * (data["timing_lo"] + data["timing_hi"])
    rows, cols = batch.timing_scatter()
    if len(rows):
        np.add.at(times.reshape(-1), rows, mid[cols])
    c = batch.n_cases
    m = max(len(batch.modalities), 1)
    values = (
        np.ascontiguousarray(times),
        np.full(c, 40.0),
        np.full(c, 5.0),
        np.full((c, m), 6.0),
        np.full(c, 1.0),
        np.full(c, 0.8),
        np.zeros(c),
        np.ascontiguousarray(data["dose_amount"], dtype=float),
    )
    arrays = arrays_of(batch.kinetics)
    rng = np.random.default_rng(c)
    g_conc = rng.normal(size=(c, arrays[7].shape[1]))
    g_auc = rng.normal(size=(c, arrays[6].shape[1]))
    return values, (g_conc, g_auc), arrays


def compiled_loops(module, design):
    """numba loops calling ``module``'s forward / backward ``n`` times, the design arrays closed
    over as compile-time constants exactly as the PyTensor Ops' numba implementations do (the
    results kept alive through a checksum so that no call is optimised away)."""
    fwd, bwd = module.forward, module.backward

    @numba.njit
    def loop_forward(n, times, volume, cl, cl_ectr, ka, f, a0, dose):
        s = 0.0
        for _ in range(n):
            conc, auc = fwd(times, volume, cl, cl_ectr, ka, f, a0, dose, design)
            s += conc[0, 0] + auc[0, 0]
        return s

    @numba.njit
    def loop_backward(n, times, volume, cl, cl_ectr, ka, f, a0, dose, g_conc, g_auc):
        s = 0.0
        for _ in range(n):
            out = bwd(times, volume, cl, cl_ectr, ka, f, a0, dose, g_conc, g_auc, design)
            s += out[0][0, 0] + out[1][0] + out[7][0, 0]
        return s

    return loop_forward, loop_backward


def python_loops(module, design):
    """Python loops calling the dispatchers (the design arrays passed as an argument)."""
    fwd, bwd = module.forward, module.backward

    def loop_forward(n, *args):
        for _ in range(n):
            fwd(*args, design)

    def loop_backward(n, *args):
        for _ in range(n):
            bwd(*args, design)

    return loop_forward, loop_backward


CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}


def block_size(loop, args, block_s: float, clock) -> int:
    """Calls per block so that a block lasts about ``block_s``."""
    n = 1
    while True:
        start = clock()
        loop(n, *args)
        elapsed = clock() - start
        if elapsed > block_s / 4 or n > 1 << 24:
            return max(1, int(n * block_s / max(elapsed, 1e-9)))
        n *= 4


def time_interleaved(loops: dict, args: dict, repeats: int, block_s: float, clock) -> dict:
    """Median microseconds per call of each loop, blocks of the loops interleaved."""
    sizes = {k: block_size(loops[k], args[k], block_s, clock) for k in loops}
    per_call = {k: [] for k in loops}
    keys = list(loops)
    for r in range(repeats):
        for k in keys if r % 2 == 0 else reversed(keys):  # alternate the order too
            n = sizes[k]
            start = clock()
            loops[k](n, *args[k])
            per_call[k].append((clock() - start) / n * 1e6)
    return {k: statistics.median(v) for k, v in per_call.items()}


def max_rel_diff(a, b) -> float:
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        scale = max(np.abs(y).max(initial=0.0), 1e-300)
        worst = max(worst, float(np.abs(x - y).max(initial=0.0) / scale))
    return worst


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="path of an earlier kernel.py to compare with")
    parser.add_argument("--kernel", help="path of a kernel.py to time instead of the installed one")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50, 200])
    parser.add_argument("--repeats", type=int, default=101)
    parser.add_argument("--block-ms", type=float, default=5.0)
    parser.add_argument(
        "--clock",
        default="cpu",
        choices=list(CLOCKS),
        help="cpu: this thread's CPU time (robust to other processes on shared cores); wall",
    )
    parser.add_argument(
        "--modes", nargs="+", default=["loop", "python"], choices=["loop", "python"]
    )
    args = parser.parse_args(argv)

    impls = {"new": load_kernel_module(args.kernel)}
    if args.baseline:
        impls = {"baseline": load_kernel_module(args.baseline), **impls}
    batches = {size: batch_for(size) for size in args.sizes}
    inputs = {
        (name, size): inputs_for(batches[size], module._design_arrays)
        for name, module in impls.items()
        for size in args.sizes
    }
    diffs = {}
    if args.baseline:
        for size in args.sizes:
            v, g, a = inputs[("new", size)]
            vb, gb, ab = inputs[("baseline", size)]
            f_new = impls["new"].forward(*v, a)
            f_old = impls["baseline"].forward(*vb, ab)
            b_new = impls["new"].backward(*v, *g, a)
            b_old = impls["baseline"].backward(*vb, *gb, ab)
            diffs[size] = (max_rel_diff(f_new, f_old), max_rel_diff(b_new, b_old))

    print(
        f"machine: {platform.processor() or platform.machine()}, python "
        f"{platform.python_version()}, numba {numba.__version__}, "
        f"{args.clock} clock, {args.repeats} interleaved blocks of ~{args.block_ms:g} ms "
        f"(median us per call)\n"
    )
    for mode in args.modes:
        make = compiled_loops if mode == "loop" else python_loops
        rows = []
        for size in args.sizes:
            loops, call_args = {}, {}
            for name, module in impls.items():
                v, g, a = inputs[(name, size)]
                lf, lb = make(module, a)
                loops[f"{name}/fwd"], call_args[f"{name}/fwd"] = lf, v
                loops[f"{name}/bwd"], call_args[f"{name}/bwd"] = lb, (*v, *g)
            for k in loops:  # compile and warm
                loops[k](1, *call_args[k])
            res = time_interleaved(
                loops, call_args, args.repeats, args.block_ms / 1e3, CLOCKS[args.clock]
            )
            rows.append((size, inputs[("new", size)][0][0].shape[1], res))
        title = "compiled loop (as inside nutpie)" if mode == "loop" else "called from Python"
        print(f"### {title}\n")
        if args.baseline:
            print(
                "| cases | events | forward before | forward after | speed-up "
                "| backward before | backward after | speed-up | max rel diff f / b |"
            )
            print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for size, n, r in rows:
                fb, fn, bb, bn = r["baseline/fwd"], r["new/fwd"], r["baseline/bwd"], r["new/bwd"]
                print(
                    f"| {size} | {n} | {fb:.2f} | {fn:.2f} | {fb / fn:.2f}x "
                    f"| {bb:.2f} | {bn:.2f} | {bb / bn:.2f}x "
                    f"| {diffs[size][0]:.1e} / {diffs[size][1]:.1e} |"
                )
        else:
            print("| cases | events | forward (us) | backward (us) | per case f / b (us) |")
            print("|---:|---:|---:|---:|---:|")
            for size, n, r in rows:
                fn, bn = r["new/fwd"], r["new/bwd"]
                print(f"| {size} | {n} | {fn:.2f} | {bn:.2f} | {fn / size:.3f} / {bn / size:.3f} |")
        print()


if __name__ == "__main__":
    main()
