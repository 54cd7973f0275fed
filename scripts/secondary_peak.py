"""A sustained-release lithium overdose with a delayed secondary peak, fitted two ways.

    python scripts/secondary_peak.py [--seed 1]

``data/cases/borrasblasco2007-lithium.toml`` (16 g extended-release lithium carbonate, two HD
sessions, the level rising from 2.54 to 6.09 mmol/L between 28 h and 37 h) is fitted with two
compartments and the two-route (fast and slow) absorption, and with one compartment and
first-order absorption. For each fit the script prints every level with the 95 % interval of
the fitted curve (the model's prediction) and of the posterior predictive (with measurement
error), the ratio, the diagnostics, and the two fits' PSIS-LOO comparison.
"""

import argparse

import numpy as np

from dialyzability.api import fit, load_case
from dialyzability.results.compare import compare_fits

CASE = "data/cases/borrasblasco2007-lithium.toml"
FITS = {
    "two-compartment+dual": dict(structure="two-compartment", absorption="dual"),
    "one-compartment": dict(structure="one-compartment", absorption="first-order"),
}


def _interval(values):
    flat = values.reshape(-1, values.shape[-1])
    return np.quantile(flat, [0.025, 0.975], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    case = load_case(CASE)
    results = {name: fit(case, seed=args.seed, **kw) for name, kw in FITS.items()}
    for name, result in results.items():
        idata = result.idata
        obs = idata.observed_data["concentration"].values
        curve = _interval(idata.posterior["pred_level"].values)
        predictive = _interval(idata.posterior_predictive["concentration"].values)
        ratio = result.summary().quantities["ratio"]
        lo, hi = ratio["hdi"]
        print(
            f"\n{name}: ratio {ratio['median']:.3g} ({lo:.3g}-{hi:.3g}); "
            + result.diagnostics().sentence()
        )
        print(f"  {'time h':>7} {'level mg/L':>10} {'curve 95 %':>18} {'predictive 95 %':>18}")
        for c, o, (cl, ch), (pl, ph) in zip(
            case.concentrations, obs, curve.T, predictive.T, strict=True
        ):
            t = c.time_h
            when = f"{t.lo:g}" if t.lo == t.hi else f"{t.lo:g}-{t.hi:g}"
            marks = ("" if cl <= o <= ch else " curve MISS") + (
                "" if pl <= o <= ph else " predictive MISS"
            )
            print(f"  {when:>7} {o:10.3g} {cl:8.3g}-{ch:<9.3g} {pl:8.3g}-{ph:<9.3g}{marks}")
    comparison = compare_fits({name: r.idata for name, r in results.items()})
    print()
    print(comparison.table())


if __name__ == "__main__":
    main()
