"""The posterior geometry of the model's sampler coordinates, measured (DESIGN §5).

    python benchmarks/geometry.py [--pooled 10 50] [--coordinates log_k log_cl] [--seed 1]

For the founding case and for simulated populations (``simulate_population(n, seed=n)``),
each fitted at the defaults (4 chains x 1000 tune + 1000 draws, nutpie) in each choice of the
clearance pair's coordinates (:func:`dialyzability.model.build.build_model`): leapfrog steps per
draw, step size, the largest posterior correlation between two sampler coordinates and the
condition number of their correlation matrix, with the fit's wall time and convergence. Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from dialyzability.api import fit_cases
from dialyzability.design import RAW
from dialyzability.io.case import load_case, parse_case
from dialyzability.simulate import simulate_population

ROOT = Path(__file__).resolve().parent.parent


def coordinates_matrix(posterior) -> np.ndarray:
    """Draws x sampler coordinates (every ``*_raw`` variable and the timings), flattened."""
    n = posterior.sizes["chain"] * posterior.sizes["draw"]
    names = [v for v in posterior.data_vars if v.endswith(RAW) or v == "timing"]
    return np.concatenate([posterior[v].values.reshape(n, -1) for v in names], axis=1)


def measure(name, cases, population, coordinates, seed) -> dict:
    start = time.perf_counter()
    fit = fit_cases(cases, population, seed=seed, coordinates=coordinates)
    wall = time.perf_counter() - start
    stats = fit.idata.sample_stats
    x = coordinates_matrix(fit.idata.posterior)
    x = x[:, x.std(axis=0) > 0]
    corr = np.corrcoef(x, rowvar=False)
    off = np.abs(corr - np.eye(len(corr)))
    eig = np.linalg.eigvalsh(corr)
    d = fit.diagnostics()
    return {
        "target": name,
        "coordinates": coordinates,
        "steps": float(stats["n_steps"].mean()),
        "step_size": float(stats["step_size"].mean()),
        "max_corr": float(off.max()),
        "condition": float(eig.max() / eig.min()),
        "wall": wall,
        "r_hat_max": d.r_hat_max,
        "ess_bulk_min": d.ess_bulk_min,
        "divergences": d.divergences,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pooled", type=int, nargs="*", default=[10, 50])
    parser.add_argument("--coordinates", nargs="*", default=["log_k", "log_cl"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-single", action="store_true")
    args = parser.parse_args()
    targets = []
    if not args.skip_single:
        targets.append(
            ("founding case", [load_case(ROOT / "data/cases/lee2020-baclofen.toml")], "fixed")
        )
    for n in args.pooled:
        raws, _, _ = simulate_population(n, seed=n)
        targets.append((f"pooled {n}", [parse_case(r, r["id"]) for r in raws], "hierarchical"))
    print(
        "| target | coordinates | leapfrog steps/draw | step size | max corr | condition "
        "| wall s | R-hat max | bulk ESS min | divergences |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, cases, population in targets:
        for coordinates in args.coordinates:
            r = measure(name, cases, population, coordinates, args.seed)
            print(
                f"| {r['target']} | {r['coordinates']} | {r['steps']:.0f} | {r['step_size']:.3f} "
                f"| {r['max_corr']:.2f} | {r['condition']:.0f} | {r['wall']:.1f} "
                f"| {r['r_hat_max']:.3f} | {r['ess_bulk_min']:.0f} | {r['divergences']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
