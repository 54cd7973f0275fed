"""Pooled-model recovery: a simulated population of cases with a known population ratio.

    python scripts/pooled_recovery.py [--cases 30] [--seed 11]

Prints the true population log-ratio (typical 70-kg patient, normal kidneys, HD) beside its 95 %
interval, and the mean width of the per-case 95 % intervals of log(ratio), pooled and unpooled.
"""

import argparse
import time

import numpy as np

from dialyzability.api import fit
from dialyzability.io.case import parse_case
from dialyzability.model.pooled import fit_pooled
from dialyzability.simulate import simulate_population


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    raws, _, population = simulate_population(args.cases, seed=args.seed)
    cases = [parse_case(r, r["id"]) for r in raws]
    start = time.perf_counter()
    pooled = fit_pooled(cases, seed=args.seed)
    print(
        f"pooled fit of {len(cases)} cases: {time.perf_counter() - start:.0f} s; "
        f"{pooled.diagnostics().sentence()}"
    )
    draws = np.log(pooled.population_draws()["ratio_HD_normal"]).ravel()
    lo, hi = np.percentile(draws, [2.5, 97.5])
    covered = "covered" if lo <= population.log_ratio <= hi else "NOT covered"
    print(
        f"population log-ratio: truth {population.log_ratio:.3f}, 95 % interval "
        f"[{lo:.3f}, {hi:.3f}]: {covered}"
    )
    pooled_w, single_w = [], []
    for c in cases:
        q = np.log(np.asarray(pooled.case_quantities(c)["ratio"]).ravel())
        pooled_w.append(np.subtract(*np.percentile(q, [97.5, 2.5])))
        s = np.log(np.asarray(fit(c, seed=args.seed).quantities()["ratio"]).ravel())
        single_w.append(np.subtract(*np.percentile(s, [97.5, 2.5])))
    print(
        f"mean width of per-case 95 % intervals of log(ratio): pooled "
        f"{np.mean(pooled_w):.2f}, unpooled {np.mean(single_w):.2f}"
    )


if __name__ == "__main__":
    main()
