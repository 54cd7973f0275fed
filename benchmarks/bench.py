"""Speed of dialyzability against a baseline and a peer, measured in one run on this machine.

    python benchmarks/bench.py [--runs 3] [--draws 1000 --tune 1000 --chains 4]
                               [--pooled 10 50 200] [--skip pymc stan pooled]

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
* ``pooled N``: :func:`dialyzability.model.pooled.fit_pooled` on N simulated cases, one run each.

Reported per row: median, min and max wall time over the runs, divergences and bulk ESS of the
ratio CL_ECTR/CL_R (of the median run), R-hat max (pooled), and the peak resident memory of the
process (max over runs). The table is printed as Markdown with the machine description; paste it
into ``benchmarks/RESULTS.md``.
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
import json, sys
from dialyzability.io.case import parse_case
from dialyzability.model.pooled import fit_pooled
from dialyzability.simulate import simulate_population
n, draws, tune, chains = map(int, sys.argv[1:5])
raws, _, _ = simulate_population(n, seed=n)
cases = [parse_case(r, r["id"]) for r in raws]
pooled = fit_pooled(cases, seed=n, draws=draws, tune=tune, chains=chains)
d = pooled.diagnostics()
print(json.dumps({"divergences": d.divergences, "r_hat_max": d.r_hat_max,
                  "ess_bulk_min": d.ess_bulk_min}))
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
        "rss": max(r["rss"] for r in runs),
    }


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
    parser.add_argument("--skip", nargs="*", default=[], choices=["pymc", "stan", "pooled", "cold"])
    args = parser.parse_args()
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
                report(row("Stan (pystan 3, cold)", [{**r, **last_json(r["stdout"])}]))
            runs = []
            for s in seeds:
                r = run([*peer, "--seed", str(s)])
                runs.append({**r, **last_json(r["stdout"])})
            report(row("Stan (pystan 3, warm)", runs))
        if "pooled" not in args.skip:
            for n in args.pooled:
                code = [sys.executable, "-c", POOLED, str(n), str(args.draws), str(args.tune)]
                r = run([*code, str(args.chains)], env)
                stats = last_json(r["stdout"])
                stats["ess_ratio"] = stats.pop("ess_bulk_min")
                report(row(f"pooled {n} cases", [{**r, **stats}]))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = next((r["median"] for r in rows if r["name"] == "PyMC default NUTS"), None)
    print()
    print(
        "| run | n | median s | min-max s | x baseline | divergences | ESS ratio | R-hat max "
        "| peak RSS MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        single = not r["name"].startswith("pooled")
        speed = f"{base / r['median']:.1f}" if base and single else "-"
        ess = f"{r['ess_ratio']:.0f}" if r["ess_ratio"] is not None else "-"
        rhat = f"{r['r_hat_max']:.3f}" if r["r_hat_max"] is not None else "-"
        print(
            f"| {r['name']} | {r['runs']} | {r['median']:.1f} | {r['min']:.1f}-{r['max']:.1f} "
            f"| {speed} | {r['divergences']} | {ess} | {rhat} | {r['rss']:.0f} |"
        )
    print(
        "\n(ESS ratio: bulk ESS of CL_ECTR/CL_R; for pooled rows, the minimum bulk ESS over all "
        "variables.)"
    )


if __name__ == "__main__":
    main()
