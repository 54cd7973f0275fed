"""Parameter recovery of the single-case model: prints one row per simulated case and coverage.

    python scripts/recovery.py [--per-design 4] [--seed 0]
    python scripts/recovery.py --designs effluent_samples --per-design 12 --seed 200

Cases are simulated from the model's priors over six designs (rich, sparse, no dose, no weight,
anuric, censored levels) and fitted with the default settings; the 95 % HDIs of ratio, cl_renal
and cl_ectr should cover the truth in about 95 % of cases. ``--designs`` chooses others, e.g.
``effluent_samples`` (CL_ECTR seen only through effluent concentrations and the effluent flow)
or ``blood`` (every level in whole blood).
"""

import argparse

from dialyzability.simulate import DESIGNS, RECOVERY_DESIGNS, recovery_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-design", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--designs",
        default=",".join(RECOVERY_DESIGNS),
        help=f"comma-separated, of {', '.join(DESIGNS)}",
    )
    args = parser.parse_args()
    designs = tuple(d.strip() for d in args.designs.split(",") if d.strip())
    names = ("ratio", "cl_renal", "cl_ectr")
    print(f"{'design':<10} {'seed':>4}  " + "  ".join(f"{n:>30}" for n in names) + "  div  R-hat")

    def show(row):
        cells = []
        for n in names:
            q = row[n]
            mark = "ok" if q["covered"] else "MISS"
            cells.append(f"{q['truth']:8.3g} in [{q['hdi'][0]:7.3g}, {q['hdi'][1]:7.3g}] {mark:>4}")
        d = row["diagnostics"]
        print(
            f"{row['design']:<10} {row['seed']:>4}  "
            + "  ".join(cells)
            + f"  {d.divergences:>3}  {d.r_hat_max:.3f}",
            flush=True,
        )

    rows = recovery_study(args.per_design, args.seed, progress=show, designs=designs)
    n = len(rows)
    print(f"\n{n} cases over {len(designs)} designs ({', '.join(designs)})")
    for name in names:
        covered = sum(r[name]["covered"] for r in rows)
        print(f"coverage of the 95 % HDI, {name:<9}: {covered}/{n} = {covered / n:.0%}")
    divergent = sum(r["diagnostics"].divergences > 0 for r in rows)
    print(f"fits with divergences: {divergent}")


if __name__ == "__main__":
    main()
