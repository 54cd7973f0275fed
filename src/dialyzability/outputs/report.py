"""The report of a fit: Markdown and self-contained HTML, generated from the summary's numbers.

A :class:`Report` is a small frozen value: a list of blocks (headings, paragraphs, tables,
figures) built once from a :class:`~dialyzability.results.fit.Summary`, then rendered as Markdown
or as
HTML with the figures embedded (no network). Every number in a sentence is formatted by
:func:`fmt` from the same summary as the tables and ``summary.json``.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from dialyzability.results.extrip import GRADE_LABELS, GRADES
from dialyzability.results.quantities import FLOWS_ML_MIN

FIGURE_CAPTIONS = {
    "fit.png": "Measured levels with the posterior median and 50 %/95 % bands; sessions shaded "
    "(pale: the range their timing could take), urine collections as bars.",
    "ratio.png": "Posterior of CL_ECTR / CL_R; the dashed line marks equal clearances.",
    "recoveries.png": "Observed amounts against the amounts the model predicts, with "
    "measurement error.",
    "extrip.png": "Posterior probability of each EXTRIP grade, per criterion.",
    "sensitivity.png": "How the ratio depends on each timing the report gave only as a range.",
}


#: how the HTML report embeds a figure file, by extension
_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".pdf": "application/pdf"}


def _caption(name: str) -> str:
    """The caption of figure file ``name`` in any format (``fit.svg`` as ``fit.png``)."""
    return FIGURE_CAPTIONS.get(Path(name).with_suffix(".png").name, name)


def fmt(x: float | None) -> str:
    """Three significant digits, the format of every number in the report."""
    if x is None:
        return "–"
    return f"{x:.3g}"


def interval(q: dict) -> str:
    return f"{fmt(q['hdi'][0])}–{fmt(q['hdi'][1])}"


@dataclass(frozen=True)
class Block:
    kind: str  # "h1", "h2", "p", "warning", "table", "figure"
    text: str = ""
    rows: tuple = ()
    header: tuple = ()


@dataclass(frozen=True)
class Report:
    """A report: blocks rendered by :meth:`markdown` and :meth:`html`."""

    title: str
    blocks: tuple[Block, ...]

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b.kind == "h1":
                out.append(f"# {b.text}")
            elif b.kind == "h2":
                out.append(f"## {b.text}")
            elif b.kind == "p":
                out.append(b.text)
            elif b.kind == "warning":
                out.append(f"> **WARNING** {b.text}")
            elif b.kind == "table":
                out.append("| " + " | ".join(b.header) + " |")
                out.append("|" + "---|" * len(b.header))
                out += ["| " + " | ".join(str(c) for c in row) + " |" for row in b.rows]
            elif b.kind == "figure":
                out.append(f"![{b.rows[0]}]({b.text})\n\n*{b.rows[0]}*")
            out.append("")
        return "\n".join(out)

    def html(self, figures_dir: str | Path) -> str:
        figures_dir = Path(figures_dir)
        esc = html.escape
        body = []
        for b in self.blocks:
            if b.kind in ("h1", "h2"):
                body.append(f"<{b.kind}>{esc(b.text)}</{b.kind}>")
            elif b.kind == "p":
                body.append(f"<p>{esc(b.text)}</p>")
            elif b.kind == "warning":
                body.append(f'<p class="warning"><strong>WARNING</strong> {esc(b.text)}</p>')
            elif b.kind == "table":
                head = "".join(f"<th>{esc(h)}</th>" for h in b.header)
                rows = "".join(
                    "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>"
                    for row in b.rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif b.kind == "figure":
                data = base64.b64encode((figures_dir / b.text).read_bytes()).decode()
                mime = _MIME.get(Path(b.text).suffix.lower(), "image/png")
                src = f"data:{mime};base64,{data}"
                element = (
                    f'<object data="{src}" type="{mime}" width="100%" height="600"></object>'
                    if mime == "application/pdf"
                    else f'<img alt="{esc(b.rows[0])}" src="{src}">'
                )
                body.append(f"<figure>{element}<figcaption>{esc(b.rows[0])}</figcaption></figure>")
        style = (
            "body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;"
            "max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.45}"
            "table{border-collapse:collapse;margin:0.5rem 0 1rem;font-size:0.9rem}"
            "th,td{border:1px solid #ccc;padding:0.25rem 0.5rem;text-align:left}"
            "th{background:#f3f3f3}img{max-width:100%}figure{margin:1rem 0}"
            "figcaption{font-size:0.85rem;color:#555}"
            ".warning{background:#fde0dc;border:2px solid #c0392b;padding:0.5rem}"
        )
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{esc(self.title)}</title><style>{style}</style></head><body>\n"
            + "\n".join(body)
            + "\n</body></html>\n"
        )


def answer_sentences(summary, case, drug: str) -> list[str]:
    """The report's sentences, each number from ``summary`` via :func:`fmt`."""
    q = summary.quantities
    pct = f"{summary.hdi_prob * 100:.0f} % HDI"
    modalities = case.modalities
    out = []
    for m in modalities:
        key = "ratio" if len(modalities) == 1 else f"ratio_{m}"
        ectr = "cl_ectr" if len(modalities) == 1 else f"cl_ectr_{m}"
        r = q[key]
        out.append(
            f"{m} cleared {drug} at {fmt(r['median'])} ({pct} {interval(r)}) times the renal "
            f"clearance; the probability that it cleared faster than the kidneys, "
            f"P(ratio > 1), is {fmt(r['p_above_1'])}."
        )
        c = q[ectr]
        out.append(
            f"{m} clearance was {fmt(c['median'])} L/h ({pct} {interval(c)}), i.e. "
            f"{fmt(c['median'] * FLOWS_ML_MIN)} mL/min, against a renal clearance of "
            f"{fmt(q['cl_renal']['median'])} L/h ({pct} {interval(q['cl_renal'])})."
        )
    if not modalities:
        out.append(
            f"The case has no extracorporeal session; renal clearance was "
            f"{fmt(q['cl_renal']['median'])} L/h ({pct} {interval(q['cl_renal'])})."
        )
    amounts = []
    for i, u in enumerate(case.urine, 1):
        amounts.append(f"urine #{i} held {fmt(u.recovered)} mg")
    for i, s in enumerate(case.sessions, 1):
        if s.amount is not None:
            amounts.append(f"{s.modality} session #{i} removed {fmt(s.amount)} mg")
    if amounts and modalities:
        out.append(
            "By amounts alone, " + ", ".join(amounts) + "; these windows see different plasma "
            "exposure, so the clearance ratio above is the fair comparison."
        )
    if "hours_saved" in q and summary.threshold:
        h, a, b = q["hours_saved"], q["time_below_ectr"], q["time_below_no_ectr"]
        out.append(
            f"With the sessions given, the level fell below {fmt(summary.threshold)} mg/L at "
            f"{fmt(a['median'])} h ({pct} {interval(a)}); without any ECTR it would have at "
            f"{fmt(b['median'])} h ({pct} {interval(b)}): {fmt(h['median'])} h "
            f"({pct} {interval(h)}) of toxicity saved."
        )
    ex = summary.extrip
    for m, per in ex.get("modalities", {}).items():
        parts = []
        for c in per.values():
            best = max(GRADES, key=lambda g, c=c: c[g])
            parts.append(f"{c['label']}: {best} (P = {fmt(c[best])})")
        out.append(
            f"EXTRIP, most probable grade per criterion for {m}: " + "; ".join(parts) + ". The "
            f"criteria apply only when the endogenous half-life exceeds 4 h: P = "
            f"{fmt(ex['p_thalf_off_above_4h'])}."
        )
    return out


def build_report(fit, summary, figures: list[str]) -> Report:
    """Assemble the report of ``fit`` from its ``summary`` and the names of its figures."""
    case, drug = fit.case, fit.drug
    b: list[Block] = [Block("h1", f"Dialyzability report: {case.id}")]
    source = case.reference or "no reference given"
    if case.doi:
        source += f", doi:{case.doi}"
    b.append(Block("p", f"Drug: {case.drug}. Source: {source}. Clock: {case.clock}."))
    d = summary.diagnostics
    if not d.converged:
        b.append(
            Block(
                "warning",
                "The sampler did not converge (" + d.sentence() + "). Do not "
                "use these numbers; run longer or check the data.",
            )
        )
    b.append(Block("h2", "Answer"))
    b += [Block("p", s) for s in answer_sentences(summary, case, case.drug)]

    b.append(Block("h2", "Quantities"))
    pct = f"{summary.hdi_prob * 100:.0f} % HDI"
    rows = []
    for name, q in {**summary.quantities, **summary.timings}.items():
        extra = ""
        if q["unit"] == "L/h":
            lo, hi = q["hdi"]
            extra = (
                f"{fmt(q['median'] * FLOWS_ML_MIN)} ({fmt(lo * FLOWS_ML_MIN)}–"
                f"{fmt(hi * FLOWS_ML_MIN)}) mL/min"
            )
        if "p_above_1" in q:
            extra = f"P(> 1) = {fmt(q['p_above_1'])}"
        rows.append((name, q["label"], fmt(q["median"]), interval(q), q["unit"], extra))
    b.append(
        Block("table", rows=tuple(rows), header=("quantity", "meaning", "median", pct, "unit", ""))
    )

    b.append(Block("h2", "Classical estimates (model-free)"))
    rows = []
    for e in summary.classical.values():
        value = f"{fmt(e['value'])} {e['unit']}" if e["computable"] else "not computable"
        rows.append((e["label"], value, e["reason"] or "amount / AUC by lin-up/log-down"))
    if rows:
        b.append(Block("table", rows=tuple(rows), header=("estimate", "value", "how / why not")))
    else:
        b.append(Block("p", "None: the case has no urine collection or measured recovery."))

    if summary.extrip.get("modalities"):
        b.append(Block("h2", "EXTRIP dialyzability criteria"))
        rows = []
        for m, per in summary.extrip["modalities"].items():
            for c in per.values():
                rows.append((m, c["label"], *(fmt(c[g]) for g in GRADES)))
        header = ("modality", "criterion", *(f"P({g}: {GRADE_LABELS[g]})" for g in GRADES))
        b.append(Block("table", rows=tuple(rows), header=header))
        b.append(
            Block(
                "p",
                "P(endogenous half-life > 4 h) = "
                f"{fmt(summary.extrip['p_thalf_off_above_4h'])}. Grades after Lavergne V "
                "et al., Clin Toxicol 2012;50:403-413.",
            )
        )

    b.append(Block("h2", "Assumptions"))
    p = case.patient
    facts = [
        f"weight {fmt(p.weight)} kg"
        if p.weight
        else f"weight not reported: latent, prior {drug.weight.describe()}",
        f"kidney function {case.kidney_function}"
        + ("" if p.kidney_function else " (not reported; assumed)"),
        "threshold for the end of toxicity: "
        + (f"{fmt(summary.threshold)} mg/L" if summary.threshold else "none (no hours saved)"),
    ]
    b.append(Block("p", "Patient: " + "; ".join(facts) + "."))
    if summary.timings:
        b.append(
            Block(
                "p",
                "Timings the report gives only as ranges are unknowns, uniform on "
                "their range; their posterior is in the quantities table.",
            )
        )
    b.append(
        Block("table", rows=tuple(drug.prior_table()), header=("prior", "distribution", "source"))
    )

    b.append(Block("h2", "Diagnostics"))
    b.append(Block("p", d.sentence() + "."))
    b.append(Block("h2", "Figures"))
    b += [Block("figure", name, rows=(_caption(name),)) for name in figures]
    return Report(title=f"Dialyzability report: {case.id}", blocks=tuple(b))


def write_report(fit, summary, directory: str | Path, figures: list[str]) -> list[Path]:
    """Write report.md and report.html (figures embedded) into ``directory``."""
    from dialyzability.io.files import write_text_whole

    directory = Path(directory)
    report = build_report(fit, summary, figures)
    return [
        write_text_whole(directory / "report.md", report.markdown()),
        write_text_whole(directory / "report.html", report.html(directory)),
    ]


def build_pooled_report(summary: dict, figures: list[str]) -> Report:
    """The report of a pooled fit, from its summary (``population`` and ``cases`` sections)."""
    pct = f"{summary['hdi_prob'] * 100:.0f} % HDI"
    b: list[Block] = [Block("h1", f"Pooled dialyzability report: {summary['drug']}")]
    d = summary["diagnostics"]
    if not d["converged"]:
        b.append(Block("warning", "The sampler did not converge; do not use these numbers."))
    b.append(Block("h2", "Answer"))
    for name, q in summary["population"].items():
        if name.startswith("ratio_") and not name.startswith("ratio_new_"):
            _, modality, kidney = name.split("_", 2)
            new = summary["population"][f"ratio_new_{modality}_{kidney}"]
            b.append(
                Block(
                    "p",
                    f"For a typical 70-kg patient with {kidney} kidneys, {modality} "
                    f"cleared {summary['drug']} at {fmt(q['median'])} ({pct} "
                    f"{interval(q)}) times the renal clearance, P(ratio > 1) = "
                    f"{fmt(q['p_above_1'])}; for a new such patient the ratio is "
                    f"{fmt(new['median'])} ({pct} {interval(new)}).",
                )
            )
    b.append(Block("h2", "Population"))
    rows = [
        (n, fmt(q["median"]), interval(q), fmt(q.get("p_above_1")))
        for n, q in summary["population"].items()
    ]
    b.append(Block("table", rows=tuple(rows), header=("quantity", "median", pct, "P(> 1)")))
    b.append(Block("h2", "Cases (pooled, and single-case where fitted)"))
    rows = []
    for cid, c in summary["cases"].items():
        q = c["quantities"]
        key = next(
            (k for k in q if k.startswith("ratio") and not k.startswith("ratio_total")), None
        )
        single = c.get("unpooled_ratio")
        rows.append(
            (
                cid,
                c["kidney_function"],
                ", ".join(c["modalities"]) or "–",
                f"{fmt(q[key]['median'])} ({interval(q[key])})" if key else "–",
                f"{fmt(single['median'])} ({interval(single)})" if single else "–",
            )
        )
    b.append(
        Block(
            "table",
            rows=tuple(rows),
            header=(
                "case",
                "kidneys",
                "ECTR",
                f"ratio, pooled ({pct})",
                f"ratio, single case ({pct})",
            ),
        )
    )
    b.append(Block("h2", "Diagnostics"))
    b.append(
        Block(
            "p",
            f"R-hat max {d['r_hat_max']:.3f}, bulk ESS min {d['ess_bulk_min']:.0f}, "
            f"divergences {d['divergences']}.",
        )
    )
    b.append(Block("h2", "Figures"))
    b += [
        Block("figure", f, rows=("Per-case and population ratios (forest plot).",)) for f in figures
    ]
    return Report(title=f"Pooled dialyzability report: {summary['drug']}", blocks=tuple(b))
