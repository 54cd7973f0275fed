"""Fit every published case with the default settings and print one row per case.

    python scripts/fit_library.py [CASE_OR_FOLDER ...] [--seed 20260] [--models-dir DIR]

By default the cases are those of ``data/cases/``. Each row: case, drug, the posterior median
of the ratio CL_ECTR / CL_R (first modality) with its 95 % HDI and P(ratio > 1), max R-hat, min
bulk ESS and the number of divergences, whether the fit passed the convergence gate, and the
structural model (the drug model's default). A case without a session has no ratio ("-").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dialyzability.api import fit
from dialyzability.io.case import CaseError, load_cases
from dialyzability.io.drugs import DrugModelError
from dialyzability.io.resources import data_dir, use_models_dir
from dialyzability.results.quantities import name_of

HEADER = (
    f"{'case':<32} {'drug':<12} {'ratio':>8}  {'95 % HDI':<21} {'P(>1)':>5}  "
    f"{'R-hat max':>9} {'ESS min':>7} {'div':>4}  {'gate':<13} structure"
)


def row(case, seed: int) -> str:
    """Fit ``case`` with the defaults and format its row."""
    result = fit(case, seed=seed)
    summary = result.summary()
    d = summary.diagnostics
    ratio = "-".rjust(8) + "  " + "-".ljust(21) + " " + "-".rjust(5)
    if case.modalities:
        q = summary.quantities[name_of("ratio", case.modalities[0], case.modalities)]
        lo, hi = q["hdi"]
        interval = f"[{lo:.3g}, {hi:.3g}]"
        ratio = f"{q['median']:>8.3g}  {interval:<21} {q['p_above_1']:>5.2f}"
    gate = "ok" if d.converged else "NOT CONVERGED"
    return (
        f"{case.id:<32} {case.drug:<12} {ratio}  {d.r_hat_max:>9.3f} {d.ess_bulk_min:>7.0f} "
        f"{d.divergences:>4}  {gate:<13} {result.structure.name}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", type=Path, help="case files or folders")
    parser.add_argument("--seed", type=int, default=20260)
    parser.add_argument("--models-dir", type=Path, default=None, help="user drug models")
    args = parser.parse_args()
    with use_models_dir(args.models_dir):
        try:
            cases = load_cases(args.cases or [data_dir() / "cases"])
        except (CaseError, DrugModelError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(HEADER)
        print("-" * len(HEADER))
        failed = 0
        for case in cases:
            line = row(case, args.seed)
            failed += "NOT CONVERGED" in line
            print(line, flush=True)
    print(f"\n{len(cases)} cases, {failed} not converged")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
