"""The ``dialyzability`` command.

Subcommands: ``check`` (validate case files, show them normalised with the classical estimates),
``fit`` (Bayesian fit of one case), ``report`` (rebuild a fit's outputs), ``pool`` (the pooled
fit of several cases) and ``template`` (an empty extraction sheet). Every command reads cases
through one loader (:func:`dialyzability.io.case.load_cases`: TOML case files and tidy CSV by
extension). Heavy libraries are imported only by the subcommands that need them, so ``--help``
and ``check`` answer quickly.
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

#: exit status of ``fit``, ``pool`` and ``report`` when the fit fails the convergence gate
EXIT_NOT_CONVERGED = 3


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
                *([f"haematocrit {p.haematocrit:g}"] if p.haematocrit is not None else []),
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
        site = ""
        if c.site is not None:
            site = f", {c.site} ({case.sessions[c.session - 1].modality} session {c.session})"
        lines.append(f"    {c.time_h}: {value} {c.matrix}{site}")
    lines.append(f"  urine collections ({len(case.urine)})")
    for u in case.urine:
        vol = f", volume {_fmt(u.volume, 'L')}" if u.volume is not None else ""
        lines.append(f"    {u.start_h} to {u.end}: {_fmt(u.recovered, 'mg')}{vol}")
    lines.append(f"  sessions ({len(case.sessions)})")
    for i, s in enumerate(case.sessions, start=1):
        extra = []
        if s.blood_flow is not None:
            plasma = s.blood_flow * (1 - (p.haematocrit or 0.0))
            extra.append(
                f"blood flow {_fmt(s.blood_flow, 'L/h')} ({s.blood_flow / 0.06:.0f} mL/min; "
                f"CL_ECTR at most the plasma flow {plasma:.3g} L/h)"
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
        for k, e in enumerate(s.effluent_samples, 1):
            lines.append(
                f"      effluent sample {k} at {e.time_h}: {_fmt(e.concentration, 'mg/L')}"
            )
    from dialyzability.design import unused_fields

    unused = unused_fields(case)
    if unused:
        lines.append(f"  not used by the model: {'; '.join(unused)}")
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


def _figure_formats(text: str) -> list[str]:
    from dialyzability.outputs.plots import FIGURE_FORMATS

    formats = [f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in FIGURE_FORMATS]
    if bad or not formats:
        raise argparse.ArgumentTypeError(
            f"one or more of {', '.join(FIGURE_FORMATS)} (comma-separated), got {text!r}"
        )
    return formats


def _formats(args: argparse.Namespace) -> list[str]:
    """The --figure-format values, flattened, in order, once each (png by default)."""
    chosen = [f for group in args.figure_format or [["png"]] for f in group]
    return list(dict.fromkeys(chosen))


def _print_problems(exc, as_json: bool, several: bool) -> None:
    """Every problem of a CaseError: one line each on stderr (``file: block[index].field:
    message``), or as JSON on stdout (``{"file", "errors": [...]}``, a list for several files)."""
    if not as_json:
        print(str(exc), file=sys.stderr)
        return
    out = [
        {"file": f, "errors": [p.to_json() for p in problems]}
        for f, problems in exc.by_file().items()
    ]
    print(json.dumps(out if several or len(out) > 1 else out[0], indent=2))


def _check(args: argparse.Namespace) -> int:
    from dialyzability.io.case import CaseError, load_cases
    from dialyzability.results.nca import classical_estimates

    try:
        cases = load_cases(args.cases)
    except CaseError as exc:
        several = len(args.cases) > 1 or any(p.is_dir() for p in args.cases)
        _print_problems(exc, args.json, several)
        return 1
    if args.json:
        out = [
            {"case": c.to_json(), "classical": [e.to_json() for e in classical_estimates(c)]}
            for c in cases
        ]
        print(json.dumps(out if len(out) > 1 else out[0], indent=2))
    else:
        print("\n\n".join(describe_case(c) for c in cases))
    return 0


def _export(args: argparse.Namespace) -> int:
    from dialyzability.io.case import load_cases
    from dialyzability.io.nonmem import write_nonmem

    cases = load_cases(args.cases)
    paths = write_nonmem(cases, args.nonmem)
    rows = sum(1 for _ in paths[0].open(encoding="utf-8")) - 1
    print(f"wrote {paths[0]} ({len(cases)} case(s), {rows} rows)")
    print(f"  data dictionary {paths[1]}; case ids and time ranges {paths[2]}")
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


def _write_outputs(result, out: Path, hdi: float, formats: Sequence[str] = ("png",)) -> int:
    """summary.json, summary.csv, draws.csv, figures (in each of ``formats``) and reports of a
    fit, each file whole; returns the exit status (:data:`EXIT_NOT_CONVERGED` for a fit that
    failed the gate). The figures are drawn in a second process while the summary is computed;
    the reports show the png (or the first format)."""
    from dialyzability.outputs.draws import write_draws
    from dialyzability.outputs.plots import FIGURES, figure_names, write_figures
    from dialyzability.outputs.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    _ = result.posterior  # the draws that both need, computed once before the fork
    planned = result.view(0).plan(hdi)  # read by plan.png and the report alike
    figures_done = _in_parallel(lambda: write_figures(result, out, formats, hdi))
    summary = result.summary(hdi)
    write_text_whole(out / "summary.json", json.dumps(summary.to_json(), indent=2) + "\n")
    write_text_whole(out / "summary.csv", summary.to_csv())
    write_draws(result, out / "draws.csv")
    if planned is not None:
        converged = {"converged": summary.diagnostics.converged}
        text = json.dumps({**converged, **planned.to_json()}, indent=2) + "\n"
        write_text_whole(out / "plan.json", text)
    try:
        figures_done()
    except RuntimeError as exc:  # the figure process failed: its own message is above
        print(f"error: {exc}; summary.json, summary.csv and draws.csv are written", file=sys.stderr)
        return 1
    shown = "png" if "png" in formats else formats[0]
    reports = write_report(result, summary, out, figure_names(FIGURES, [shown]))
    print(summary.table())
    names = ", ".join([*figure_names(FIGURES, formats), *(p.name for p in reports)])
    plan_file = "plan.json, " if planned is not None else ""
    print(f"\nWrote to {out}: summary.json, summary.csv, draws.csv, {plan_file}{names}")
    if not summary.diagnostics.converged:
        print("NOT CONVERGED: see Diagnostics above.", file=sys.stderr)
        return EXIT_NOT_CONVERGED
    return 0


def _fit(args: argparse.Namespace) -> int:
    from dialyzability.io.case import CaseError, load_cases

    cases = load_cases([args.case])  # a case file, or a tidy CSV
    if args.case_id:
        ids = [c.id for c in cases]
        cases = [c for c in cases if c.id == args.case_id]
        if not cases:
            print(
                f"error: {args.case}: no case {args.case_id!r} (it has {', '.join(ids)})",
                file=sys.stderr,
            )
            return 1
    if len(cases) != 1:
        print(
            f"error: {args.case}: holds {len(cases)} cases ({', '.join(c.id for c in cases)}); "
            "fit one with --case ID, or pool them with `dialyzability pool`",
            file=sys.stderr,
        )
        return 1
    [case] = cases
    threshold = _threshold(args.threshold, case)
    from dialyzability.api import fit

    _say_drug_model(case.drug)
    structures = [args.structure]
    if args.structure == "both":
        from dialyzability.pk.structure import DISPOSITIONS

        structures = list(DISPOSITIONS)
    results = {}
    for structure in structures:
        if not args.quiet:
            what = f", {structure}" if structure else ""
            print(f"Fitting {case.id} ({case.drug}{what}) ...", file=sys.stderr)
        try:
            results[structure] = fit(
                case,
                draws=args.draws,
                tune=args.tune,
                chains=args.chains,
                seed=args.seed,
                sampler=args.sampler,
                progressbar=not args.quiet,
                threshold=threshold,
                structure=structure,
                absorption=args.absorption,
            )
        except CaseError:
            raise  # bad input: exit 1 in main, every problem named
        except ValueError as exc:  # a sampler that is not installed, a structure it cannot run
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if len(structures) > 1:  # kept as soon as it is done: a later failure loses nothing
            done = results[structure]
            done.save(Path(args.out) / done.structure.name)
    out = Path(args.out)
    if len(results) == 1:
        [result] = results.values()
        out.mkdir(parents=True, exist_ok=True)
        result.save(out)
        return _write_outputs(result, out, args.hdi, _formats(args))
    return _write_compared(results, out, args.hdi, _formats(args))


def _write_compared(results: dict, out: Path, hdi: float, formats: Sequence[str]) -> int:
    """``fit --structure both``: each fit's outputs in its own subfolder of ``out`` (named by
    its structure), their comparison by PSIS-LOO in each summary and report and in
    ``out/comparison.json``; the exit status is the worst of the fits'."""
    from dialyzability.results.compare import compare_fits

    named = {r.structure.name: r for r in results.values()}
    comparison = compare_fits({name: r.idata for name, r in named.items()})
    statuses = []
    for name, result in named.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        result.attach_comparison(comparison.to_json())
        result.save(folder)
        statuses.append(_write_outputs(result, folder, hdi, formats))
    write_text_whole(out / "comparison.json", json.dumps(comparison.to_json(), indent=2) + "\n")
    print(comparison.table())
    print(f"\nWrote the comparison to {out / 'comparison.json'}")
    return max(statuses)


def _say_drug_model(name: str) -> None:
    """Print which file the drug model comes from when it is a user file."""
    from dialyzability.io.drugs import load_drug

    drug = load_drug(name)
    if drug.user or drug.defaults:
        print(drug.provenance())


def _drugs(args: argparse.Namespace) -> int:
    from dialyzability.io.drugs import catalogue, catalogue_table

    rows = catalogue()
    print(json.dumps(rows, indent=2) if args.json else catalogue_table(rows))
    return 0


def _load_fit_dir(path: Path):
    """The fit saved in folder ``path``, or None after printing why it cannot be read (no
    posterior.nc, a truncated file, another netCDF); a case or drug-model problem is raised."""
    from dialyzability.api import load_fit
    from dialyzability.io.case import CaseError
    from dialyzability.io.drugs import DrugModelError

    if not (path / "posterior.nc").is_file():
        print(f"error: {path}: no posterior.nc (run `dialyzability fit` first)", file=sys.stderr)
        return None
    try:
        return load_fit(path)
    except (CaseError, DrugModelError):
        raise
    except Exception as exc:  # a truncated file, another netCDF: netCDF4, h5py, xarray errors
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        reason = reason.removeprefix(f"{path / 'posterior.nc'}: ")
        print(
            f"error: {path / 'posterior.nc'}: cannot be read as a fit of dialyzability "
            f"({reason}); run `dialyzability fit` again",
            file=sys.stderr,
        )
        return None


def _report(args: argparse.Namespace) -> int:
    path = Path(args.dir)
    result = _load_fit_dir(path)
    if result is None:
        return 1
    if not result.single:  # a pooled fit: its summary, forest plot and report
        return _write_pooled(result, path, args.hdi, None, _formats(args))
    threshold = _threshold(args.threshold, result.case)
    if threshold is not None:
        result.config["threshold"] = threshold
    return _write_outputs(result, path, args.hdi, _formats(args))


def _pool(args: argparse.Namespace) -> int:
    from dialyzability.api import fit_cases, pool
    from dialyzability.io.case import load_cases
    from dialyzability.model.build import PoolError

    cases = load_cases(args.cases)
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
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        sampler=args.sampler,
        structure=args.structure,
        absorption=args.absorption,
    )
    if not args.quiet:
        print(f"Pooling {len(cases)} {drugs[0]} cases ...", file=sys.stderr)
    _say_drug_model(drugs[0])
    try:
        pooled = pool(cases, progressbar=not args.quiet, **sampling)
    except (PoolError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    unpooled = None
    if not args.no_unpooled:
        # the same cases side by side under the drug model's prior: one model, no pooling
        unpooled = fit_cases(cases, "fixed", **sampling)
    return _write_pooled(pooled, out, args.hdi, unpooled, _formats(args))


def _write_pooled(
    pooled, out: Path, hdi: float, unpooled, formats: Sequence[str] = ("png",)
) -> int:
    import matplotlib.pyplot as plt

    from dialyzability.outputs.draws import write_draws
    from dialyzability.outputs.plots import DPI, figure_names, forest_data, plot_forest
    from dialyzability.results.population import pooled_summary, unpooled_ratios
    from dialyzability.results.quantities import describe

    summary = pooled_summary(pooled, hdi)
    unpooled = unpooled_ratios(unpooled) if unpooled is not None else {}
    for cid, draws in unpooled.items():
        summary["cases"][cid]["unpooled_ratio"] = describe(draws, hdi, "log")
    pooled.save(out)
    write_text_whole(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_draws(pooled, out / "draws.csv")
    fig = plot_forest(pooled, forest_data(pooled, unpooled, hdi))
    figures = figure_names(["forest.png"], formats)
    for name in figures:
        write_whole(out / name, lambda tmp: fig.savefig(tmp, dpi=DPI))
    plt.close(fig)
    from dialyzability.outputs.report import build_pooled_report

    shown = "png" if "png" in formats else formats[0]
    report = build_pooled_report(summary, figure_names(["forest.png"], [shown]))
    write_text_whole(out / "report.md", report.markdown())
    write_text_whole(out / "report.html", report.html(out))
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from dialyzability.outputs.report import interval, median, probability

    d = summary["diagnostics"]
    lines = [] if d["converged"] else ["NOT CONVERGED: do not use these numbers."]
    lines += list(summary["verdicts"].values())
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"Pooled {summary['n_cases']} {summary['drug']} cases ({hdi:.0%} interval)",
    )
    for name, justify in (("quantity", "left"), ("median", "right"), ("interval", "right")):
        table.add_column(name, justify=justify, overflow="fold")
    table.add_column("P(> 1)", justify="right")
    for name, q in summary["population"].items():
        p = probability(q) if "p_above_1" in q else ""
        table.add_row(name, median(q), interval(q), p)
    console = Console(file=sys.stdout, width=200, color_system=None, highlight=False)
    print("\n".join(lines))
    console.print(table)
    state = "converged" if d["converged"] else "NOT CONVERGED"
    print(
        f"Diagnostics: R-hat max {d['r_hat_max']:.3f}, bulk ESS min "
        f"{d['ess_bulk_min']:.0f}, divergences {d['divergences']}: {state}"
    )
    print(
        f"Wrote to {out}: posterior.nc, summary.json, draws.csv, {', '.join(figures)}, "
        "report.md, report.html"
    )
    if not d["converged"]:
        print("NOT CONVERGED: the pooled fit did not converge.", file=sys.stderr)
        return EXIT_NOT_CONVERGED
    return 0


def _template(args: argparse.Namespace) -> int:
    from dialyzability.io.template import columns_path, write_template

    out = args.out
    targets = [out, columns_path(out)] if out.suffix.lower() == ".csv" else [out]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not args.force:
        print(f"error: {', '.join(existing)} exists already (--force replaces it)", file=sys.stderr)
        return 1
    written = write_template(out)
    print(f"Wrote {', '.join(str(p) for p in written)}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    """Rank the measurements a case lacks by the expected width of its ratio's interval."""
    import matplotlib.pyplot as plt

    from dialyzability.io.case import CaseError
    from dialyzability.outputs.plots import DPI, plot_plan
    from dialyzability.results.plan import plan

    path = Path(args.source)
    if path.is_dir():
        result = _load_fit_dir(path)
        if result is None:
            return 1
        if not result.single:
            print(f"error: {path}: a pooled fit; plan from a single-case fit", file=sys.stderr)
            return 1
    else:
        from dialyzability.api import fit
        from dialyzability.io.case import load_case

        case = load_case(path)
        print(f"Fitting {case.id} ({case.drug}) with the default settings ...", file=sys.stderr)
        try:
            result = fit(case, seed=args.seed)
        except CaseError:
            raise
        except ValueError as exc:  # a sampler that is not installed
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        planned = plan(result, outcomes=args.outcomes, seed=args.seed)
    except ValueError as exc:  # a case without any session: no ratio
        print(f"error: {exc}", file=sys.stderr)
        return 1
    converged = result.diagnostics().converged
    if not converged:
        print("NOT CONVERGED: the fit did not converge; the plan reads its draws all the same.")
    print(planned.table())
    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"converged": converged, **planned.to_json()}, indent=2) + "\n"
        write_text_whole(out / "plan.json", text)
        figure = plot_plan(planned)
        write_whole(out / "plan.png", lambda tmp: figure.savefig(tmp, dpi=DPI))
        plt.close(figure)
        print(f"\nWrote to {out}: plan.json, plan.png")
    return 0 if converged else EXIT_NOT_CONVERGED


def _compare(args: argparse.Namespace) -> int:
    """Rank saved fits of the same observations by PSIS-LOO (results/compare.py)."""
    paths = [Path(p) for p in args.dirs]
    if len(paths) < 2:
        print(f"error: compare at least 2 fit folders, got {len(paths)}", file=sys.stderr)
        return 1
    if args.names is not None:
        names = [n.strip() for n in args.names.split(",")]
        if len(names) != len(paths) or not all(names) or len(set(names)) != len(names):
            print(
                f"error: --names: {len(paths)} distinct names needed (one per folder), "
                f"got {args.names!r}",
                file=sys.stderr,
            )
            return 1
    else:
        names = [p.resolve().name or str(p) for p in paths]
        if len(set(names)) != len(names):  # folders of the same name: their paths as given
            names = [str(p) for p in paths]
    fits = {}
    for name, path in zip(names, paths, strict=True):
        if not path.is_dir():
            print(f"error: {path}: no such fit folder", file=sys.stderr)
            return 1
        result = _load_fit_dir(path)
        if result is None:
            return 1
        fits[name] = result.idata
    from dialyzability.results.compare import CompareError, compare_fits

    try:
        compared = compare_fits(fits)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(compared.to_json(), indent=2) if args.json else compared.table())
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
    _figure_option(parser)


def _figure_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--figure-format",
        type=_figure_formats,
        action="append",
        metavar="png|svg|pdf",
        help="figure file format(s): repeat or comma-separate, e.g. png,svg (png); the "
        "report shows the png, or the first format",
    )


def _structure_options(parser: argparse.ArgumentParser, both: bool = False) -> None:
    from dialyzability.pk.structure import ABSORPTIONS, DISPOSITIONS

    choices = [*DISPOSITIONS, "both"] if both else list(DISPOSITIONS)
    extra = (
        "; both: fit one and two compartments and compare them by PSIS-LOO (each fit in its "
        "own subfolder of --out)"
        if both
        else ""
    )
    parser.add_argument(
        "--structure",
        choices=choices,
        default=None,
        help=f"disposition (default: the drug model's){extra}",
    )
    parser.add_argument(
        "--absorption",
        choices=ABSORPTIONS,
        default=None,
        help="absorption of oral doses: first-order, lag (first-order after a lag time) or "
        "dual (a fast and a slow first-order route; sustained release, bezoars) (default: "
        "the drug model's)",
    )


def _models_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of drug models (TOML) searched before the shipped ones; a file there "
        "named as a shipped drug overrides it (default: $DIALYZABILITY_MODELS)",
    )


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
        description="Validate case files (TOML) and tidy CSV files, print them in canonical "
        "units (h, mg, L, mg/L, L/h) with timing ranges shown as ranges, and the classical "
        "(model-free) clearance estimates, or why they are not computable. A bad file gets "
        "every problem, one line each: FILE: BLOCK[INDEX].FIELD: MESSAGE (exit status 1).",
    )
    check.add_argument(
        "cases",
        nargs="+",
        type=Path,
        metavar="CASE",
        help="case files (.toml), tidy .csv files, or folders of case files",
    )
    check.add_argument(
        "--json", action="store_true", help="print JSON for machines (the problems too)"
    )
    _models_option(check)
    check.set_defaults(func=_check)

    fit = sub.add_parser(
        "fit",
        help="fit one case: posterior of CL_ECTR / CL_R with its interval",
        description="Fit the Bayesian model of one case and write posterior.nc, summary.json, "
        "summary.csv, draws.csv, the figures and report.md/report.html to --out; print the "
        "quantities with their intervals and the convergence diagnostics.",
    )
    fit.add_argument(
        "case", type=Path, metavar="CASE", help="case file (.toml) or tidy .csv of one case"
    )
    fit.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    fit.add_argument(
        "--case",
        dest="case_id",
        default=None,
        metavar="ID",
        help="the case to fit, when CASE is a tidy CSV of several",
    )
    _sampling_options(fit)
    fit.add_argument(
        "--threshold",
        default=None,
        metavar="LEVEL",
        help='end of toxicity for "hours saved", e.g. "0.4 mg/L" (default: the '
        "upper therapeutic level of the drug model)",
    )
    _structure_options(fit, both=True)
    _models_option(fit)
    fit.set_defaults(func=_fit)

    report = sub.add_parser(
        "report",
        help="rebuild summary, figures and report of a saved fit, without sampling",
        description="Read DIR/posterior.nc written by `dialyzability fit` and write summary.json, "
        "summary.csv, draws.csv, the figures (fit.png, ratio.png, recoveries.png, extrip.png, "
        "sensitivity.png, or in the --figure-format given), report.md and report.html again.",
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
    _models_option(report)
    _figure_option(report)
    report.set_defaults(func=_report)

    pool = sub.add_parser(
        "pool",
        help="pool the cases of one drug: population ratio, shrunk per-case ratios, forest plot",
        description="Fit the hierarchical model of several cases of one drug (case files, "
        "folders of them, or tidy CSV files) and write posterior.nc, summary.json (population "
        "and cases sections), draws.csv, forest.png and report.md/report.html to --out.",
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
    _structure_options(pool)
    _models_option(pool)
    pool.set_defaults(func=_pool)

    drugs = sub.add_parser(
        "drugs",
        help="list the drug models: shipped and the user's, with their sources",
        description="List the available drug models (shipped, and the user folder's, marking "
        "those that override a shipped one) with description, molar mass, EXTRIP grade, the "
        "prior 95 % interval of the half-life of a 70-kg adult and the short citation of "
        "each source.",
    )
    drugs.add_argument("--json", action="store_true", help="print JSON for machines")
    _models_option(drugs)
    drugs.set_defaults(func=_drugs)

    export = sub.add_parser(
        "export",
        help="write cases as a NONMEM-style dataset (CSV, data dictionary, comments)",
        description="Write the cases as a NONMEM-style dataset FILE.csv (ID, TIME, AMT, RATE, "
        "DV, EVID, MDV, CMT, DVID, BLQ, LLOQ, TSTART, ... one row per event, ID 1, 2, ... in "
        "the order given), its data dictionary FILE.dictionary.csv and FILE.txt (the case ids "
        "and the time ranges, which are written at their midpoint).",
    )
    export.add_argument("cases", nargs="+", type=Path, metavar="CASE", help="case files or folders")
    export.add_argument(
        "--nonmem", type=Path, required=True, metavar="FILE.csv", help="the dataset to write"
    )
    _models_option(export)
    export.set_defaults(func=_export)

    template = sub.add_parser(
        "template",
        help="write an empty extraction sheet (tidy CSV or workbook) with its column guide",
        description="Write the tidy sheet's header with one example row of each kind (patient, "
        "dose, level, urine, session, effluent) to --out, and the table of its columns (name, "
        "meaning, unit, allowed values) beside it: FILE.columns.csv for a .csv; the sheets "
        "'case' and 'columns' of one workbook for an .xlsx (needs openpyxl: the xlsx extra). "
        "A filled sheet is read by check, fit and pool like a case file.",
    )
    template.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="FILE.csv or FILE.xlsx"
    )
    template.add_argument("--force", action="store_true", help="replace files that exist already")
    _models_option(template)
    template.set_defaults(func=_template)

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
    _models_option(plan)
    plan.set_defaults(func=_plan)

    compare = sub.add_parser(
        "compare",
        help="which fit do the data prefer: saved fits of the same case ranked by PSIS-LOO",
        description="Read DIR/posterior.nc of each fit folder (fits of the same case or cases "
        "with the same observations, under different structures: drug models, priors, "
        "population layers) and rank them by PSIS-LOO (elpd over every observation, az.compare "
        "with stacking weights); print the table, the Pareto k counts and a sentence saying "
        "whether the data prefer one (elpd difference more than 2 SE).",
    )
    compare.add_argument(
        "dirs", nargs="+", type=Path, metavar="DIR", help="fit folders (2 or more)"
    )
    compare.add_argument(
        "--names",
        default=None,
        metavar="A,B,...",
        help="names of the fits, comma-separated, one per DIR (default: the folder names)",
    )
    compare.add_argument("--json", action="store_true", help="print JSON for machines")
    _models_option(compare)
    compare.set_defaults(func=_compare)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status: 0 success, 1 bad input, 2 usage (or a sampler
    that is not installed), 3 (:data:`EXIT_NOT_CONVERGED`) a fit that failed the convergence
    gate (its outputs are written, each saying NOT CONVERGED first), 130 interrupted."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
    # PyTensor's advice on linking a BLAS library is for developers, not for readers of a fit
    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
    from dialyzability.io.case import CaseError
    from dialyzability.io.drugs import DrugModelError
    from dialyzability.io.resources import use_models_dir

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with use_models_dir(args.models_dir):
            return int(args.func(args) or 0)
    except CaseError as exc:  # every problem, one line each: file: block[index].field: message
        print(str(exc), file=sys.stderr)
        return 1
    except DrugModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # an output folder that cannot be made or written
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
