"""The ``dialyzability`` command.

Subcommands: ``check`` (validate case files, show them normalised with the classical estimates)
and ``fit`` (Bayesian fit of one case). Heavy libraries are imported only by the subcommands that
need them, so ``--help`` and ``check`` answer quickly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from dialyzability.io.files import write_text_whole, write_whole


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    return f"{x:.4g}{' ' + unit if unit else ''}"


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def describe_case(case) -> str:
    """Human-readable normalised case (canonical units, ranges shown as ranges)."""
    from dialyzability.results.nca import classical_estimates

    p = case.patient
    lines = [
        f"Case {case.id}: {case.drug}",
        f"  source     {case.reference or '-'}{'  doi:' + case.doi if case.doi else ''}",
        f"  clock      {case.clock}",
        "  patient    "
        + ", ".join(
            [
                f"weight {_fmt(p.weight, 'kg')}" if p.weight else "weight not given (latent)",
                f"age {p.age_years:g} y" if p.age_years is not None else "age not given",
                p.sex or "sex not given",
                f"kidney function {case.kidney_function}"
                + ("" if p.kidney_function else " (assumed: not given)"),
            ]
        ),
    ]
    if case.doses:
        lines.append(f"  doses ({len(case.doses)}), total {_fmt(case.total_dose, 'mg')}")
        lines += [f"    {d.time_h}: {_fmt(d.amount, 'mg')} {d.route}" for d in case.doses]
    else:
        lines.append("  doses      none given: the body burden at the first observation is latent")
    lines.append(f"  levels ({len(case.concentrations)})")
    for c in case.concentrations:
        value = f"< {_fmt(c.lloq, 'mg/L')} (below LLOQ)" if c.below_lloq else _fmt(c.value, "mg/L")
        lines.append(f"    {c.time_h}: {value} {c.matrix}")
    lines.append(f"  urine collections ({len(case.urine)})")
    for u in case.urine:
        vol = f", volume {_fmt(u.volume, 'L')}" if u.volume is not None else ""
        lines.append(f"    {u.start_h} to {u.end}: {_fmt(u.recovered, 'mg')}{vol}")
    lines.append(f"  sessions ({len(case.sessions)})")
    for i, s in enumerate(case.sessions, start=1):
        extra = []
        if s.blood_flow is not None:
            extra.append(
                f"blood flow {_fmt(s.blood_flow, 'L/h')} ({s.blood_flow / 0.06:.0f} mL/min)"
            )
        if s.effluent_flow is not None:
            extra.append(f"effluent flow {_fmt(s.effluent_flow, 'L/h')}")
        rec = (
            f"recovered {_fmt(s.amount, 'mg')}" if s.amount is not None else "no recovery measured"
        )
        lines.append(
            f"    #{i} {s.modality} {s.start_h} to {s.end}: {rec}"
            + (f"; {', '.join(extra)}" if extra else "")
        )
    lines.append("  classical estimates (model-free)")
    estimates = classical_estimates(case)
    if not estimates:
        lines.append("    none: the case has no urine collection or measured recovery")
    for e in estimates:
        if e.computable:
            ml = f" ({e.value * 1000 / 60:.4g} mL/min)" if e.unit == "L/h" else ""
            lines.append(f"    {e.label}: {_fmt(e.value, e.unit)}{ml}")
        else:
            lines.append(f"    {e.label}: {e.reason}")
    return "\n".join(lines)


def _check(args: argparse.Namespace) -> int:
    from dialyzability.io.case import load_cases
    from dialyzability.results.nca import classical_estimates

    cases = load_cases(args.cases)
    if args.json:
        out = [
            {"case": c.to_json(), "classical": [e.to_json() for e in classical_estimates(c)]}
            for c in cases
        ]
        print(json.dumps(out if len(out) > 1 else out[0], indent=2))
    else:
        print("\n\n".join(describe_case(c) for c in cases))
    return 0


def _threshold(text: str | None, case) -> float | None:
    """A --threshold such as "0.4 mg/L" in mg/L (molar units via the drug's molar mass)."""
    if text is None:
        return None
    from dialyzability.io.case import CaseError
    from dialyzability.io.drugs import load_drug
    from dialyzability.io.units import UnitError, parse_quantity

    try:
        return parse_quantity(text, "concentration", load_drug(case.drug).molar_mass)
    except UnitError as exc:
        raise CaseError("--threshold", str(exc)) from None


def _in_parallel(task):
    """Start ``task()`` in a forked process (the machine's other core) and return a function
    that waits for it and raises if it failed; without fork, run it now."""
    if not hasattr(os, "fork"):
        task()
        return lambda: None
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: do the task, never return into the caller
        code = 1
        try:
            task()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def wait():
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError("writing the figures failed (see the message above)")

    return wait


def _write_outputs(result, out: Path, hdi: float) -> None:
    """summary.json, summary.csv, figures and reports of a fit, each file whole. The figures
    are drawn in a second process while the summary is computed."""
    from dialyzability.outputs.plots import FIGURES, write_figures
    from dialyzability.outputs.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    _ = result.posterior  # the draws that both need, computed once before the fork
    figures_done = _in_parallel(lambda: write_figures(result, out))
    summary = result.summary(hdi)
    write_text_whole(out / "summary.json", json.dumps(summary.to_json(), indent=2) + "\n")
    write_text_whole(out / "summary.csv", summary.to_csv())
    figures_done()
    figures = [out / name for name in FIGURES]
    reports = write_report(result, summary, out, [p.name for p in figures])
    print(summary.table())
    names = ", ".join(p.name for p in [*figures, *reports])
    print(f"\nWrote to {out}: summary.json, summary.csv, {names}")
    if not summary.diagnostics.converged:
        print("WARNING: the fit did not converge (see Diagnostics above).", file=sys.stderr)


def _fit(args: argparse.Namespace) -> int:
    from dialyzability.io.case import load_case

    case = load_case(args.case)
    threshold = _threshold(args.threshold, case)
    from dialyzability.api import fit

    if not args.quiet:
        print(f"Fitting {case.id} ({case.drug}) ...", file=sys.stderr)
    try:
        result = fit(
            case,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            seed=args.seed,
            sampler=args.sampler,
            progressbar=not args.quiet,
            threshold=threshold,
        )
    except ValueError as exc:  # e.g. a sampler that is not installed
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result.save(out)
    _write_outputs(result, out, args.hdi)
    return 0


def _report(args: argparse.Namespace) -> int:
    from dialyzability.results.fit import Fit

    path = Path(args.dir)
    if not (path / "posterior.nc").is_file():
        print(f"error: {path}: no posterior.nc (run `dialyzability fit` first)", file=sys.stderr)
        return 1
    try:
        result = Fit.load(path)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {path / 'posterior.nc'}: cannot be read as a fit ({exc})", file=sys.stderr)
        return 1
    if not result.single:  # a pooled fit: its summary, forest plot and report
        _write_pooled(result, path, args.hdi, None)
        return 0
    threshold = _threshold(args.threshold, result.case)
    if threshold is not None:
        result.config["threshold"] = threshold
    _write_outputs(result, path, args.hdi)
    return 0


def _load_inputs(paths: list[Path]):
    """Cases from case files, folders of them, and tidy CSV files."""
    from dialyzability.io.case import load_cases
    from dialyzability.io.tidy import load_tidy_csv

    cases = []
    for p in paths:
        if p.suffix.lower() == ".csv":
            cases += load_tidy_csv(p)
        else:
            cases += load_cases(p)
    return cases


def _pool(args: argparse.Namespace) -> int:
    from dialyzability.api import fit_cases, fit_pooled
    from dialyzability.model.build import PoolError

    cases = _load_inputs(args.cases)
    if args.drug:
        cases = [c for c in cases if c.drug == args.drug.lower()]
    drugs = sorted({c.drug for c in cases})
    if len(drugs) != 1:
        found = ", ".join(f"{d} ({sum(c.drug == d for c in cases)})" for d in drugs) or "none"
        print(
            f"error: pool the cases of one drug; found {found}; choose with --drug", file=sys.stderr
        )
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sampling = dict(
        draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed, sampler=args.sampler
    )
    if not args.quiet:
        print(f"Pooling {len(cases)} {drugs[0]} cases ...", file=sys.stderr)
    try:
        pooled = fit_pooled(cases, progressbar=not args.quiet, **sampling)
    except (PoolError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    unpooled = None
    if not args.no_unpooled:
        # the same cases side by side under the drug model's prior: one model, no pooling
        unpooled = fit_cases(cases, "fixed", **sampling)
    _write_pooled(pooled, out, args.hdi, unpooled)
    return 0


def _write_pooled(pooled, out: Path, hdi: float, unpooled) -> None:
    import matplotlib.pyplot as plt

    from dialyzability.outputs.plots import DPI, forest_data, plot_forest
    from dialyzability.results.population import pooled_summary, unpooled_ratios
    from dialyzability.results.quantities import describe

    summary = pooled_summary(pooled, hdi)
    unpooled = unpooled_ratios(unpooled) if unpooled is not None else {}
    for cid, draws in unpooled.items():
        summary["cases"][cid]["unpooled_ratio"] = describe(draws, hdi)
    pooled.save(out)
    write_text_whole(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    fig = plot_forest(pooled, forest_data(pooled, unpooled, hdi))
    write_whole(out / "forest.png", lambda tmp: fig.savefig(tmp, dpi=DPI))
    plt.close(fig)
    from dialyzability.outputs.report import build_pooled_report

    report = build_pooled_report(summary, ["forest.png"])
    write_text_whole(out / "report.md", report.markdown())
    write_text_whole(out / "report.html", report.html(out))
    lines = [f"Pooled {summary['n_cases']} {summary['drug']} cases ({hdi:.0%} HDI)"]
    for name, q in summary["population"].items():
        if name.startswith("ratio"):
            lines.append(
                f"  {name:<28} median {q['median']:.3g}  [{q['hdi'][0]:.3g}, "
                f"{q['hdi'][1]:.3g}]  P(>1) = {q['p_above_1']:.2f}"
            )
    d = summary["diagnostics"]
    state = "converged" if d["converged"] else "NOT CONVERGED"
    lines.append(
        f"Diagnostics: R-hat max {d['r_hat_max']:.3f}, bulk ESS min "
        f"{d['ess_bulk_min']:.0f}, divergences {d['divergences']}: {state}"
    )
    print("\n".join(lines))
    print(f"Wrote to {out}: posterior.nc, summary.json, forest.png, report.md, report.html")
    if not d["converged"]:
        print("WARNING: the pooled fit did not converge.", file=sys.stderr)


def _plan(args: argparse.Namespace) -> int:
    """Rank the measurements a case lacks by the expected width of its ratio's interval."""
    import matplotlib.pyplot as plt

    from dialyzability.outputs.plots import DPI, plot_plan
    from dialyzability.results.fit import Fit
    from dialyzability.results.plan import plan

    path = Path(args.source)
    if path.is_dir():
        if not (path / "posterior.nc").is_file():
            print(
                f"error: {path}: no posterior.nc (run `dialyzability fit` first)", file=sys.stderr
            )
            return 1
        try:
            result = Fit.load(path)
        except (OSError, ValueError, KeyError) as exc:
            print(
                f"error: {path / 'posterior.nc'}: cannot be read as a fit ({exc})", file=sys.stderr
            )
            return 1
        if not result.single:
            print(f"error: {path}: a pooled fit; plan from a single-case fit", file=sys.stderr)
            return 1
    else:
        from dialyzability.api import fit
        from dialyzability.io.case import load_case

        case = load_case(path)
        print(f"Fitting {case.id} ({case.drug}) with the default settings ...", file=sys.stderr)
        result = fit(case, seed=args.seed)
    try:
        planned = plan(result, outcomes=args.outcomes, seed=args.seed)
    except ValueError as exc:  # a case without any session: no ratio
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(planned.table())
    if not result.diagnostics().converged:
        print("WARNING: the fit did not converge; the plan reads its draws.", file=sys.stderr)
    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_text_whole(out / "plan.json", json.dumps(planned.to_json(), indent=2) + "\n")
        figure = plot_plan(planned)
        write_whole(out / "plan.png", lambda tmp: figure.savefig(tmp, dpi=DPI))
        plt.close(figure)
        print(f"\nWrote to {out}: plan.json, plan.png")
    return 0


def _sampling_options(parser: argparse.ArgumentParser) -> None:
    """The sampling and output options shared by ``fit`` and ``pool``."""
    from dialyzability.inference.sampling import DEFAULT_SAMPLER_CONFIG as D
    from dialyzability.results.quantities import HDI_PROB

    parser.add_argument(
        "--draws", type=_positive, default=D["draws"], help=f"draws per chain ({D['draws']})"
    )
    parser.add_argument(
        "--tune", type=_positive, default=D["tune"], help=f"tuning steps per chain ({D['tune']})"
    )
    parser.add_argument(
        "--chains", type=_positive, default=D["chains"], help=f"chains ({D['chains']})"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed (recorded in the output)"
    )
    parser.add_argument(
        "--sampler",
        choices=["auto", "nutpie", "numpyro", "pymc"],
        default="auto",
        help="NUTS backend; auto picks the fastest installed",
    )
    parser.add_argument(
        "--hdi",
        type=_probability,
        default=HDI_PROB,
        help=f"probability of the highest-density intervals ({HDI_PROB})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    from dialyzability.results.quantities import HDI_PROB

    parser = argparse.ArgumentParser(
        prog="dialyzability",
        description="Did extracorporeal treatment clear the drug faster than the kidneys? "
        "Bayesian estimates of CL_ECTR / CL_R from poisoning case reports.",
    )
    from dialyzability import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = sub.add_parser(
        "check",
        help="validate case files and show them normalised, with classical estimates",
        description="Validate case files (TOML), print them in canonical units (h, mg, L, mg/L, "
        "L/h) with timing ranges shown as ranges, and the classical (model-free) clearance "
        "estimates, or why they are not computable.",
    )
    check.add_argument("cases", nargs="+", type=Path, metavar="CASE", help="case files or folders")
    check.add_argument("--json", action="store_true", help="print JSON for machines")
    check.set_defaults(func=_check)

    fit = sub.add_parser(
        "fit",
        help="fit one case: posterior of CL_ECTR / CL_R with its interval",
        description="Fit the Bayesian model of one case and write posterior.nc, summary.json, "
        "summary.csv, the figures and report.md/report.html to --out; print the quantities "
        "with their intervals and the convergence diagnostics.",
    )
    fit.add_argument("case", type=Path, metavar="CASE", help="case file (TOML)")
    fit.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    _sampling_options(fit)
    fit.add_argument(
        "--threshold",
        default=None,
        metavar="LEVEL",
        help='end of toxicity for "hours saved", e.g. "0.4 mg/L" (default: the '
        "upper therapeutic level of the drug model)",
    )
    fit.set_defaults(func=_fit)

    report = sub.add_parser(
        "report",
        help="rebuild summary, figures and report of a saved fit, without sampling",
        description="Read DIR/posterior.nc written by `dialyzability fit` and write summary.json, "
        "summary.csv, the figures (fit.png, ratio.png, recoveries.png, extrip.png, "
        "sensitivity.png), report.md and report.html again.",
    )
    report.add_argument("dir", type=Path, metavar="DIR", help="output folder of a fit")
    report.add_argument(
        "--hdi",
        type=_probability,
        default=HDI_PROB,
        help=f"probability of the highest-density intervals ({HDI_PROB})",
    )
    report.add_argument(
        "--threshold",
        default=None,
        metavar="LEVEL",
        help='end of toxicity for "hours saved", e.g. "0.4 mg/L"',
    )
    report.set_defaults(func=_report)

    pool = sub.add_parser(
        "pool",
        help="pool the cases of one drug: population ratio, shrunk per-case ratios, forest plot",
        description="Fit the hierarchical model of several cases of one drug (case files, "
        "folders of them, or tidy CSV files) and write posterior.nc, summary.json (population "
        "and cases sections) and forest.png to --out.",
    )
    pool.add_argument(
        "cases",
        nargs="+",
        type=Path,
        metavar="CASES",
        help="case files, folders or tidy .csv files",
    )
    pool.add_argument("--out", type=Path, required=True, help="output folder")
    pool.add_argument("--drug", default=None, help="pool only the cases of this drug")
    _sampling_options(pool)
    pool.add_argument(
        "--no-unpooled",
        action="store_true",
        help="skip the single-case fits shown beside the pooled ones",
    )
    pool.set_defaults(func=_pool)

    plan = sub.add_parser(
        "plan",
        help="what would have settled it: the measurements that would narrow the ratio most",
        description="For each measurement the case lacks (a level at the start and end of each "
        "session, each session's effluent total, a urine collection over each session, the "
        "exact time of each event given as a range), the expected fold range of the 95 %% "
        "interval of CL_ECTR / CL_R had it been made, from the posterior without refitting "
        "(reweighted draws), best first. CASE_OR_FIT_DIR: a fit folder (with posterior.nc) or "
        "a case file (fitted first with the default settings).",
    )
    plan.add_argument(
        "source", type=Path, metavar="CASE_OR_FIT_DIR", help="fit folder or case file (TOML)"
    )
    plan.add_argument("--out", type=Path, default=None, help="write plan.json and plan.png here")
    plan.add_argument(
        "--outcomes", type=_positive, default=30, help="outcomes simulated per candidate (30)"
    )
    plan.add_argument("--seed", type=int, default=0, help="seed of the outcomes (and of a fit)")
    plan.set_defaults(func=_plan)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 success, 1 bad input, 2 usage)."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
    from dialyzability.io.case import CaseError
    from dialyzability.io.drugs import DrugModelError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CaseError, DrugModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
