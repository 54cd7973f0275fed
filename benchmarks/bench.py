"""Speed of dialyzability against a baseline and a peer, measured in one run on this machine.

    python benchmarks/bench.py [--runs 3] [--draws 1000 --tune 1000 --chains 4]
                               [--pooled 10 50 200] [--refit 50]
                               [--skip pymc stan pooled refit cold]

Every row is a fresh process, timed from start to exit (wall clock), with the same draws, tune
and chains:

* ``dialyzability (warm)``: the founding case end to end through the CLI (``dialyzability fit``:
  fit, summary, figures, reports), its compiled model already in the compile cache;
* ``dialyzability (cold)``: the same with an empty compile cache (dialyzability's cache of
  compiled models empty; the numba and PyTensor caches of the kernels and operations, which
  any earlier fit of any structure fills, warm);
* ``dialyzability (first run)``: every cache empty (dialyzability's, numba's, PyTensor's), as on
  a fresh installation;
* ``PyMC default NUTS``: the same CLI with ``--sampler pymc`` (PyMC's own NUTS, C backend, its
  PyTensor cache warm): the baseline; "x baseline" is its median wall time over each row's;
* ``Stan (pystan 3)``: the same model written in Stan (``benchmarks/peers/case.stan``, the log
  density checked equal to PyMC's by ``benchmarks/peers/stan_case.py``), build (cached binary,
  or compiled for the cold row) and sampling; it writes no figures or reports;
* ``pooled N cases``: :func:`dialyzability.api.pool` (``seed=N``, the run's sampling
  settings) on ``simulate_population(N, seed=N)``, one fresh process per size (its compiled
  model is not in the cache: every size is a new structure), one run each;
* ``Stan pooled N cases``: the same cases through the pooled Stan peer
  (``benchmarks/peers/pooled.stan``, checked equal to PyMC's by
  ``benchmarks/peers/stan_pooled.py``; its binary, which does not depend on the cases, built
  untimed before the first pooled row, so these rows time a cached build and the sampling);
* ``pooled N, refit with one timing range changed``: one process fits the N cases
  (``--refit N``; default 50 if 50 is among ``--pooled``, else the smallest size) with an empty
  compile cache, then moves one case's vague timing range (the urine start range of the first
  ``sparse`` case shifted by +0.5/+1 h) and fits again: the batch's structure, and so its
  compile-cache key (:mod:`dialyzability.inference.compiled`), is unchanged, and the refit does
  not compile. Both fit times and the number of compilations of each fit are reported.

Reported per row: median, min and max wall time over the runs, the fit time where it is measured
(inside the process: ``pool``, or Stan's build and sampling), divergences and bulk ESS of
the ratio CL_ECTR/CL_R (of the median run; for pooled rows the minimum bulk ESS over every
reported variable), R-hat max, and the peak resident memory of the process (max over runs). The
table is printed as Markdown with the machine description; paste it into
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASE = ROOT / "data" / "cases" / "lee2020-baclofen.toml"
PEER = ROOT / "benchmarks" / "peers" / "stan_case.py"
POOLED_PEER = ROOT / "benchmarks" / "peers" / "stan_pooled.py"

READ_FIT = """
import json, sys
import arviz as az, numpy as np
from dialyzability.results.fit import Fit
fit = Fit.load(sys.argv[1])
ratio = np.asarray(fit.quantities()["ratio"])
d = fit.diagnostics()
print(json.dumps({"divergences": d.divergences, "ess_ratio": float(az.ess(ratio, method="bulk")),
                  "r_hat_max": d.r_hat_max}))
"""

POOLED = """
import json, sys, time
from dialyzability.api import pool
from dialyzability.io.case import parse_case
from dialyzability.simulate import simulate_population
n, draws, tune, chains = map(int, sys.argv[1:5])
raws, _, _ = simulate_population(n, seed=n)
cases = [parse_case(r, r["id"]) for r in raws]
start = time.perf_counter()
pooled = pool(cases, seed=n, draws=draws, tune=tune, chains=chains)
fit_s = time.perf_counter() - start
d = pooled.diagnostics()
print(json.dumps({"fit_s": fit_s, "divergences": d.divergences, "r_hat_max": d.r_hat_max,
                  "ess_bulk_min": d.ess_bulk_min}))
"""

# one process: fit N cases, move one vague timing range, fit again; count compilations
REFIT = """
import json, sys, time
import dialyzability.inference.compiled as compiled
from dialyzability.api import pool
from dialyzability.design import make_batch
from dialyzability.io.case import parse_case
from dialyzability.io.drugs import load_drug
from dialyzability.simulate import simulate_population
n, draws, tune, chains = map(int, sys.argv[1:5])
compiles = [0]
_compile = compiled._compile
def counting(*args, **kwargs):
    compiles[0] += 1
    return _compile(*args, **kwargs)
compiled._compile = counting
raws, _, _ = simulate_population(n, seed=n)
cases = [parse_case(r, r["id"]) for r in raws]
# the first case with a vague urine start: its range moved by +0.5 h (start) and +1 h (end)
i = next(i for i, r in enumerate(raws) if isinstance(r.get("urine", [{}])[0].get("start_h"), list))
lo, hi = raws[i]["urine"][0]["start_h"]
moved = dict(raws[i], urine=[dict(raws[i]["urine"][0], start_h=[lo + 0.5, hi + 1.0])])
cases2 = list(cases)
cases2[i] = parse_case(moved, moved["id"])
drug = load_drug(cases[0].drug)
same_key = compiled.cache_key(make_batch(cases, drug), "hierarchical") == compiled.cache_key(
    make_batch(cases2, drug), "hierarchical")
out = {"case": cases[i].id, "range": [[lo, hi], [lo + 0.5, hi + 1.0]], "same_key": same_key}
for name, batch in (("first", cases), ("refit", cases2)):
    before = compiles[0]
    start = time.perf_counter()
    pooled = pool(batch, seed=n, draws=draws, tune=tune, chains=chains)
    out[name + "_s"] = time.perf_counter() - start
    out[name + "_compiles"] = compiles[0] - before
d = pooled.diagnostics()
out.update(divergences=d.divergences, r_hat_max=d.r_hat_max, ess_bulk_min=d.ess_bulk_min)
print(json.dumps(out))
"""


def run(command: list[str], env: dict | None = None) -> dict:
    """Run a command in a fresh process: wall seconds, peak RSS (MiB), stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=out, stderr=err)
        # wait4: this child's own resource usage (peak RSS of it and its waited-for children)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{err.read().decode()[-2000:]}")
        return {"wall": wall, "rss": usage.ru_maxrss / 1024, "stdout": out.read().decode()}


def last_json(text: str) -> dict:
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


def cli_fit(sampling: list[str], env: dict, workdir: Path) -> dict:
    out = workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    exe = shutil.which("dialyzability") or "dialyzability"
    r = run([exe, "fit", str(CASE), "--out", str(out), "--quiet", *sampling], env)
    stats = last_json(run([sys.executable, "-c", READ_FIT, str(out)])["stdout"])
    return {**r, **stats}


def row(name: str, runs: list[dict]) -> dict:
    walls = [r["wall"] for r in runs]
    median_run = sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]
    return {
        "name": name,
        "runs": len(runs),
        "median": statistics.median(walls),
        "min": min(walls),
        "max": max(walls),
        "divergences": median_run.get("divergences"),
        "ess_ratio": median_run.get("ess_ratio"),
        "r_hat_max": median_run.get("r_hat_max"),
        "fit": median_run.get("fit"),
        "rss": max(r["rss"] for r in runs),
    }


def stan_stats(stats: dict) -> dict:
    """A Stan peer's JSON with its fit time (build and sampling) under ``fit``."""
    return {**stats, "fit": stats["build_s"] + stats["sample_s"]}


def pooled_stats(stats: dict) -> dict:
    """A pooled row's statistics: the minimum bulk ESS in the ESS column, the fit time."""
    out = {**stats, "ess_ratio": stats.get("ess_bulk_min")}
    if "fit" not in out:
        out["fit"] = stats.get("fit_s")
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pooled", type=int, nargs="*", default=[10, 50, 200])
    parser.add_argument(
        "--refit",
        type=int,
        default=None,
        help="cases of the refit row (default: 50 if among --pooled, else the smallest size)",
    )
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["pymc", "stan", "pooled", "refit", "cold"]
    )
    args = parser.parse_args()
    if args.refit is None:
        args.refit = 50 if 50 in args.pooled or not args.pooled else min(args.pooled)
    settings = ["--draws", str(args.draws), "--tune", str(args.tune), "--chains", str(args.chains)]
    print(f"machine: {machine()}")
    print(
        f"settings: {args.chains} chains x {args.tune} tune + {args.draws} draws, {args.runs} runs"
    )
    rows = []
    work = Path(tempfile.mkdtemp(prefix="dialyzability-bench-"))
    try:
        cache = work / "cache"
        seeds = [args.seed + i for i in range(args.runs)]

        def report(r: dict) -> None:
            rows.append(r)
            print(json.dumps(r), flush=True)

        if "cold" not in args.skip:
            first = []
            for s in seeds:
                shutil.rmtree(cache, ignore_errors=True)
                env = {
                    "DIALYZABILITY_CACHE": str(cache),
                    "NUMBA_CACHE_DIR": str(work / f"numba-{s}"),
                    "PYTENSOR_FLAGS": f"base_compiledir={work / f'pytensor-{s}'}",
                }
                first.append(cli_fit([*settings, "--seed", str(s)], env, work))
            report(row("dialyzability (first run)", first))
            cold = []
            for s in seeds:
                shutil.rmtree(cache, ignore_errors=True)
                cold.append(
                    cli_fit(
                        [*settings, "--seed", str(s)], {"DIALYZABILITY_CACHE": str(cache)}, work
                    )
                )
            report(row("dialyzability (cold)", cold))
        env = {"DIALYZABILITY_CACHE": str(cache)}
        cli_fit([*settings, "--seed", "0"], env, work)  # fills the cache if --skip cold
        warm = [cli_fit([*settings, "--seed", str(s)], env, work) for s in seeds]
        report(row("dialyzability (warm)", warm))
        if "pymc" not in args.skip:
            base = [
                cli_fit([*settings, "--seed", str(s), "--sampler", "pymc"], env, work)
                for s in seeds
            ]
            report(row("PyMC default NUTS", base))
        if "stan" not in args.skip:
            peer = [sys.executable, str(PEER), str(CASE), "--sample", *settings]
            if "cold" not in args.skip:
                env_cold = {"XDG_CACHE_HOME": str(work / "stan-cold")}
                r = run([*peer, "--seed", str(args.seed)], env_cold)
                report(row("Stan (pystan 3, cold)", [{**r, **stan_stats(last_json(r["stdout"]))}]))
            run([sys.executable, str(PEER), str(CASE), "--build"])  # cached binary, untimed
            runs = []
            for s in seeds:
                r = run([*peer, "--seed", str(s)])
                runs.append({**r, **stan_stats(last_json(r["stdout"]))})
            report(row("Stan (pystan 3, warm)", runs))
        if "pooled" not in args.skip:
            if "stan" not in args.skip:
                run([sys.executable, str(POOLED_PEER), "--build", "--cases", "3"])  # untimed
            for n in args.pooled:
                code = [sys.executable, "-c", POOLED, str(n), str(args.draws), str(args.tune)]
                r = run([*code, str(args.chains)], env)
                stats = last_json(r["stdout"])
                report(row(f"pooled {n} cases", [{**r, **pooled_stats(stats)}]))
                if "stan" not in args.skip:
                    peer = [sys.executable, str(POOLED_PEER), "--sample", "--cases", str(n)]
                    r = run([*peer, *settings, "--seed", str(n)])
                    stats = stan_stats(last_json(r["stdout"]))
                    report(row(f"Stan pooled {n} cases", [{**r, **pooled_stats(stats)}]))
        if "refit" not in args.skip and args.refit:
            n = args.refit
            code = [sys.executable, "-c", REFIT, str(n), str(args.draws), str(args.tune)]
            r = run([*code, str(args.chains)], {"DIALYZABILITY_CACHE": str(work / "refit-cache")})
            stats = last_json(r["stdout"])
            print(json.dumps(stats), flush=True)
            stats["fit"] = (
                f"{stats['first_s']:.1f} / {stats['refit_s']:.1f} "
                f"(compiles {stats['first_compiles']} / {stats['refit_compiles']}"
                f"{', same key' if stats['same_key'] else ', key changed'})"
            )
            report(
                row(
                    f"pooled {n}, refit with one timing range changed",
                    [{**r, **pooled_stats(stats)}],
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = next((r["median"] for r in rows if r["name"] == "PyMC default NUTS"), None)
    print()
    print(
        "| run | n | median s | min-max s | x baseline | fit s | divergences | ESS | R-hat max "
        "| peak RSS MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        single = "pooled" not in r["name"]
        speed = f"{base / r['median']:.1f}" if base and single else "-"
        ess = f"{r['ess_ratio']:.0f}" if r["ess_ratio"] is not None else "-"
        rhat = f"{r['r_hat_max']:.3f}" if r["r_hat_max"] is not None else "-"
        fit = r["fit"]
        fit = "-" if fit is None else fit if isinstance(fit, str) else f"{fit:.1f}"
        print(
            f"| {r['name']} | {r['runs']} | {r['median']:.1f} | {r['min']:.1f}-{r['max']:.1f} "
            f"| {speed} | {fit} | {r['divergences']} | {ess} | {rhat} | {r['rss']:.0f} |"
        )
    print(
        "\n(median/min-max s: wall time of the fresh process, start to exit; fit s: inside the "
        "process, pool or Stan's build + sampling (refit row: first / second fit); ESS: "
        "bulk ESS of CL_ECTR/CL_R, for pooled rows the minimum bulk ESS over every reported "
        "variable (Stan: mu_*, tau_*, and per case volume, cl_renal, cl_nonrenal, cl_ectr, ka); "
        "R-hat max: over every reported variable (Stan: the same variables).)"
    )


if __name__ == "__main__":
    main()
