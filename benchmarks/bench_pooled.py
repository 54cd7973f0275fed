"""Time pooled fits of simulated populations of 10, 50 and 200 cases on this machine.

    python benchmarks/bench_pooled.py [--sizes 10 50 200] [--draws 1000 --tune 1000 --chains 4]

Each size is fitted in a fresh process (so compile time counts) and reported with its wall time
relative to the smallest size of the same run, its divergences, max R-hat and min bulk ESS, and
its peak memory (max RSS).
"""

import argparse
import json
import platform
import subprocess
import sys
import time

CHILD = """
import json, resource, sys, time
from dialyzability.io.case import parse_case
from dialyzability.model.pooled import fit_pooled
from dialyzability.simulate import simulate_population
n, draws, tune, chains = map(int, sys.argv[1:5])
raws, _, _ = simulate_population(n, seed=n)
cases = [parse_case(r, r["id"]) for r in raws]
t = time.perf_counter()
pooled = fit_pooled(cases, seed=n, draws=draws, tune=tune, chains=chains)
wall = time.perf_counter() - t
d = pooled.diagnostics()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"n": n, "fit_s": wall, "divergences": d.divergences, "r_hat_max": d.r_hat_max,
                  "ess_bulk_min": d.ess_bulk_min, "max_rss_mib": rss}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    args = parser.parse_args()
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"python {platform.python_version()}"
    )
    print(
        f"{'cases':>5} {'wall s':>8} {'fit s':>8} {'x base':>7} {'div':>4} {'R-hat':>6} "
        f"{'ESS min':>8} {'RSS MiB':>8}",
        flush=True,
    )
    base = None
    for n in args.sizes:  # each row is printed as soon as it is measured
        start = time.perf_counter()
        command = [sys.executable, "-c", CHILD, str(n), str(args.draws), str(args.tune)]
        result = subprocess.run(
            [*command, str(args.chains)], capture_output=True, text=True, check=True
        )
        r = json.loads(result.stdout.strip().splitlines()[-1])
        r["wall_s"] = time.perf_counter() - start
        base = base or r["wall_s"]
        print(
            f"{r['n']:>5} {r['wall_s']:>8.1f} {r['fit_s']:>8.1f} {r['wall_s'] / base:>7.2f} "
            f"{r['divergences']:>4} {r['r_hat_max']:>6.3f} {r['ess_bulk_min']:>8.0f} "
            f"{r['max_rss_mib']:>8.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
