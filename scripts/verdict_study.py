"""Verdict thresholds on simulated cases: clearly faster, clearly slower, and ambiguous.

Each row is a synthetic baclofen case (``dialyzability.simulate``) with chosen true clearances,
fitted with the defaults; the verdict is read from the fit's summary. A rich design (levels
around the session, a urine collection, the effluent recovery) with HD clearing 10 times the
kidneys' clearance must read "faster", with a tenth of it "more slowly"; a sparse design
(one level, no effluent recovery measured) whose truth is a ratio of 1 must read
"Inconclusive". Run: ``python scripts/verdict_study.py``; the slow test
``tests/test_interpret.py::test_verdict_on_simulated_cases`` runs the same study.
"""

from __future__ import annotations

import numpy as np

#: (label, design, true CL_ECTR / CL_R, expected start of the verdict); the truth's renal and
#: non-renal clearances are those of a 70-kg adult at the drug model's prior medians
CASES = (
    ("clearly faster", "rich", 10.0, "HD cleared baclofen faster"),
    ("clearly slower", "rich", 0.1, "HD cleared baclofen more slowly"),
    ("ambiguous", "sparse", 1.0, "Inconclusive"),
)


def study(seed: int = 11, **fit_kwargs) -> list[dict]:
    """Fit each case of :data:`CASES`; one row each with the verdict and what was expected."""
    from dialyzability.api import fit
    from dialyzability.io.case import parse_case
    from dialyzability.io.drugs import clearance_prior, load_drug
    from dialyzability.simulate import Truth, simulate_case

    drug = load_drug("baclofen")
    mean, _ = clearance_prior(drug, "normal")
    cl_renal, cl_nonrenal = (float(x) for x in np.exp(mean))
    rows = []
    for k, (label, design, ratio, expected) in enumerate(CASES):
        truth = Truth(
            weight=70.0,
            volume=drug.priors.volume.median * 70.0,
            cl_renal=cl_renal,
            cl_nonrenal=cl_nonrenal,
            cl_ectr={"HD": ratio * cl_renal},
            ka=drug.priors.ka.median,
            bioavailability=drug.priors.bioavailability.mean,
        )
        raw, truth = simulate_case(design, seed + k, truth=truth)
        if design == "sparse":  # keep one level only and no effluent recovery: ambiguous data
            raw["concentrations"] = raw["concentrations"][:1]
            for s in raw.get("sessions", []):
                s.pop("recovered", None)
        result = fit(parse_case(raw, raw["id"]), seed=seed + k, progressbar=False, **fit_kwargs)
        summary = result.summary()
        row = summary.quantities["ratio"]
        rows.append(
            {
                "label": label,
                "design": design,
                "truth": truth.ratio,
                "median": row["median"],
                "hdi": row["hdi"],
                "p_above_1": row["p_above_1"],
                "verdict": summary.verdict[0],
                "expected": expected,
                "agrees": summary.verdict[0].startswith(expected),
                "converged": summary.diagnostics.converged,
            }
        )
    return rows


def main() -> None:
    rows = study()
    print(f"{'case':<15} {'design':<7} {'truth':>6} {'median':>7} {'interval':>15} {'P(>1)':>6}")
    for r in rows:
        lo, hi = r["hdi"]
        print(
            f"{r['label']:<15} {r['design']:<7} {r['truth']:>6.3g} {r['median']:>7.3g} "
            f"{f'{lo:.3g}-{hi:.3g}':>15} {r['p_above_1']:>6.3f}  "
            f"{'agrees' if r['agrees'] else 'DISAGREES'}"
            f"{'' if r['converged'] else ' (NOT CONVERGED)'}"
        )
        print(f"  {r['verdict']}")
    print(f"{sum(r['agrees'] for r in rows)}/{len(rows)} verdicts as expected")


if __name__ == "__main__":
    main()
