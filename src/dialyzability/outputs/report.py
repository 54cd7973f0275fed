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
import re
from dataclasses import dataclass
from pathlib import Path

from dialyzability.design import population_ratio_name, unused_fields
from dialyzability.results.extrip import APPLIES_P, GRADE_LABELS, GRADES, MIN_THALF_H
from dialyzability.results.fit import interval_text
from dialyzability.results.interpret import PRIOR_DOMINATED, effluent_samples, narrowing_sentence
from dialyzability.results.quantities import FLOWS_ML_MIN, format_p, name_of, rounded

FIGURE_CAPTIONS = {
    "fit.png": "Measured levels with the posterior median and 50 %/95 % bands; sessions shaded "
    "(pale: the range their timing could take), urine collections as bars.",
    "ratio.png": "Posterior of CL_ECTR / CL_R; the dashed line marks equal clearances.",
    "recoveries.png": "Observed amounts against the amounts the model predicts, with "
    "measurement error.",
    "extrip.png": "Posterior probability of each EXTRIP grade, per criterion (greyed when the "
    "criteria do not apply: endogenous half-life too short).",
    "prior_posterior.png": "Prior (grey) against posterior (blue) of the ratio, the renal and "
    "extracorporeal clearances and the half-life off ECTR, on log axes; each panel says how much "
    "the data narrowed the interval.",
    "sensitivity.png": "How the ratio depends on each timing the report gave only as a range.",
    "plan.png": "What would have settled it: the expected fold range of the ratio's 95 % interval "
    "had each missing measurement been made (best at the top), against the width now.",
}


#: how the HTML report embeds a figure file, by extension
_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".pdf": "application/pdf"}


def _caption(name: str) -> str:
    """The caption of figure file ``name`` in any format (``fit.svg`` as ``fit.png``)."""
    return FIGURE_CAPTIONS.get(Path(name).with_suffix(".png").name, name)


def fmt(x: float | None, mcse: float | None = None) -> str:
    """A number to the precision of its Monte Carlo standard error (three significant digits
    without one): :func:`~dialyzability.results.quantities.rounded`, the format of every number
    in the report."""
    if x is None:
        return "–"
    return rounded(x, mcse)


def prob(p: float) -> str:
    """A probability to two decimals, "< 0.01" and "> 0.99" at the ends."""
    if p < 0.01:
        return "< 0.01"
    if p > 0.99:
        return "> 0.99"
    return f"{p:.2f}"


def _eq(text: str) -> str:
    """``= 0.43``, or ``< 0.01`` as it stands."""
    return text if text[0] in "<>" else f"= {text}"


def median(q: dict) -> str:
    """A row's median, to the precision of its MCSE."""
    return fmt(q["median"], (q.get("mcse") or {}).get("median"))


def interval(q: dict) -> str:
    """A row's interval, each end to the precision of its MCSE."""
    return interval_text(q)


def probability(q: dict) -> str:
    """P(ratio > 1) of a row with its MCSE (:func:`~dialyzability.results.quantities.format_p`)."""
    return format_p(q)


_NUMBER = re.compile(r"^[-–+±×%<>=().,\deE ]+$")


def _numeric(text: str) -> bool:
    """A table cell that holds a number (or an interval, or a number with its MCSE)."""
    return bool(text) and bool(_NUMBER.match(text)) and any(ch.isdigit() for ch in text)


@dataclass(frozen=True)
class Block:
    kind: str  # "h1", "h2", "p", "verdict", "warning", "flag", "table", "figure"
    text: str = ""
    rows: tuple = ()
    header: tuple = ()

    def right_aligned(self) -> list[bool]:
        """Per column of a table: every non-empty cell a number (right-aligned)."""
        columns = list(zip(*self.rows, strict=False)) if self.rows else []
        out = []
        for j in range(len(self.header)):
            cells = (
                [str(c) for c in columns[j] if str(c) not in ("", "–")] if j < len(columns) else []
            )
            out.append(bool(cells) and all(_numeric(c) for c in cells))
        return out


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
            elif b.kind == "verdict":
                out.append(f"**{b.text}**")
            elif b.kind == "flag":
                out.append(f"- {b.text}")
            elif b.kind == "table":
                right = b.right_aligned()
                out.append("| " + " | ".join(b.header) + " |")
                out.append("|" + "".join("---:|" if r else "---|" for r in right))
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
                right = b.right_aligned()
                cls = ["" if not r else ' class="num"' for r in right]
                head = "".join(f"<th{c}>{esc(h)}</th>" for h, c in zip(b.header, cls, strict=True))
                rows = "".join(
                    "<tr>"
                    + "".join(f"<td{c}>{esc(str(x))}</td>" for x, c in zip(row, cls, strict=False))
                    + "</tr>"
                    for row in b.rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif b.kind == "verdict":
                body.append(f'<p class="verdict">{esc(b.text)}</p>')
            elif b.kind == "flag":
                body.append(f'<p class="flag">{esc(b.text)}</p>')
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
            ".num{text-align:right;font-variant-numeric:tabular-nums}"
            ".verdict{font-size:1.15rem;font-weight:600;border-left:4px solid #2c6e9b;"
            "padding-left:0.75rem}.flag{background:#fff4d6;border-left:4px solid #d39e00;"
            "padding:0.25rem 0.5rem;margin:0.25rem 0}"
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
    """The report's sentences, each number from ``summary`` to the precision of its MCSE."""
    q = summary.quantities
    pct = f"{summary.hdi_prob * 100:.0f} % interval"
    modalities = case.modalities
    out = []
    for m in modalities:
        key, ectr = name_of("ratio", m, modalities), name_of("cl_ectr", m, modalities)
        r = q[key]
        out.append(
            f"{m} cleared {drug} at {median(r)} ({pct} {interval(r)}) times the renal "
            f"clearance; the probability that it cleared faster than the kidneys, "
            f"P(ratio > 1), is {probability(r)}."
        )
        c = q[ectr]
        out.append(
            f"{m} clearance was {median(c)} L/h ({pct} {interval(c)}), i.e. "
            f"{fmt(c['median'] * FLOWS_ML_MIN)} mL/min, against a renal clearance of "
            f"{median(q['cl_renal'])} L/h ({pct} {interval(q['cl_renal'])})."
        )
    if not modalities:
        out.append(
            f"The case has no extracorporeal session; renal clearance was "
            f"{median(q['cl_renal'])} L/h ({pct} {interval(q['cl_renal'])})."
        )
    amounts = []
    for i, u in enumerate(case.urine, 1):
        if u.recovered is not None:
            amounts.append(f"urine #{i} held {u.recovered:.4g} mg")
    for i, s in enumerate(case.sessions, 1):
        if s.amount is not None:
            amounts.append(f"{s.modality} session #{i} removed {s.amount:.4g} mg")
    if amounts and modalities:
        out.append(
            "By amounts alone, " + ", ".join(amounts) + "; these windows see different plasma "
            "exposure, so the clearance ratio above is the fair comparison."
        )
    if "hours_saved" in q and summary.threshold:
        h, a, b = q["hours_saved"], q["time_below_ectr"], q["time_below_no_ectr"]
        out.append(
            f"With the sessions given, the level fell below {summary.threshold:g} mg/L at "
            f"{median(a)} h ({pct} {interval(a)}); without any ECTR it would have at "
            f"{median(b)} h ({pct} {interval(b)}): {median(h)} h "
            f"({pct} {interval(h)}) of toxicity saved."
        )
    return out


def extrip_sentences(extrip: dict) -> list[str]:
    """What the EXTRIP criteria say, and first whether they apply at all."""
    if not extrip.get("modalities"):
        return []
    p = extrip["p_thalf_off_above_4h"]
    if not extrip.get("applies", True):
        return [
            f"The EXTRIP criteria do not apply to this case: they grade drugs whose endogenous "
            f"half-life exceeds {MIN_THALF_H:g} h, and P(half-life off ECTR > {MIN_THALF_H:g} h) "
            f"{_eq(prob(p))} (below {APPLIES_P:g}). The grade probabilities below are shown for "
            "completeness only."
        ]
    out = []
    for m, per in extrip["modalities"].items():
        parts = []
        for c in per.values():
            best = max(GRADES, key=lambda g, c=c: c[g])
            parts.append(f"{c['label']}: {best} (P {_eq(prob(c[best]))})")
        out.append(f"EXTRIP, most probable grade per criterion for {m}: " + "; ".join(parts) + ".")
    out.append(
        f"The criteria apply when the endogenous half-life exceeds {MIN_THALF_H:g} h: "
        f"P {_eq(prob(p))}."
    )
    return out


def _prior_rows(summary) -> tuple:
    rows = []
    for name, q in summary.quantities.items():
        prior = q.get("prior")
        if not prior:
            continue
        rows.append(
            (
                name,
                q["label"],
                f"{fmt(prior['median'])} ({interval_text(prior)})",
                f"{median(q)} ({interval(q)})",
                q["unit"],
                f"{q['width_ratio']:.0%}" if q.get("width_ratio") is not None else "–",
                "prior-dominated" if q.get("prior_dominated") else "informed by the data",
            )
        )
    return tuple(rows)


def plan_blocks(fit, hdi_prob: float) -> list[Block]:
    """The section "What would have settled it": the ranked table of the case's plan
    (:meth:`~dialyzability.results.fit.CaseView.plan`, the one plan.png draws)."""
    planned = fit.view(0).plan(hdi_prob)
    if planned is None:  # no session: no ratio to narrow
        return []
    b = [Block("h2", "What would have settled it")]
    best = next((r for r in planned.rows if r["width_fold"] is not None), None)
    text = (
        f"The {planned.prob:.0%} interval of the ratio spans {planned.current_fold:.3g}-fold now "
        "(high over low end, on the log scale). Had each measurement below been made, the "
        "interval would have been expected to span (posterior draws reweighted by the simulated "
        "measurement, without refitting):"
    )
    if best:
        text += f" the most informative is {best['label']} ({best['time']})."
    b.append(Block("p", text))
    rows = tuple(
        (
            str(i),
            r["label"],
            r["time"],
            "–" if r["width_fold"] is None else f"{r['width_fold']:.3g}-fold",
            "–" if r["narrowing"] is None else f"{r['narrowing']:.0%}",
            f"{r['ess_mean'] / planned.draws:.2f}",
            r["status"],
        )
        for i, r in enumerate(planned.rows, 1)
    )
    header = ("#", "measurement", "when", "expected interval", "narrowing", "ESS/N", "status")
    b.append(Block("table", rows=rows, header=header))
    return b


def session_blocks(sessions: list[dict], pct: str) -> list[Block]:
    """The table of levels at the end of each session and 2 h later (the rebound), with the
    amounts left per compartment."""
    two = any("peripheral_at_end_mg" in s for s in sessions)
    rows = []
    for s in sessions:
        change = s["change_pct"]
        row = (
            s["label"],
            median(s["level_at_end_mg_per_L"]),
            median(s["level_after_mg_per_L"]),
            f"{median(change)} ({interval(change)})",
            prob(s["p_rebound"]),
            f"{median(s['central_at_end_mg'])} ({interval(s['central_at_end_mg'])})",
        )
        if two:
            p = s["peripheral_at_end_mg"]
            row += (f"{median(p)} ({interval(p)})",)
        rows.append(row)
    hours = f"{sessions[0]['hours_after']:g} h"
    header = (
        "session",
        "level at its end (mg/L)",
        f"level {hours} later (mg/L)",
        f"change, % ({pct})",
        "P(rebound)",
        "central amount at its end (mg)",
    )
    if two:
        header += ("peripheral amount at its end (mg)",)
    return [
        Block("h2", "After each session: rebound and what is left"),
        Block("table", rows=tuple(rows), header=header),
        Block(
            "p",
            f"The change is the predicted level {hours} after the end of the session against the "
            "level at its end: a rebound when it rises (redistribution from a peripheral pool, "
            "or absorption still going on). A one-compartment model cannot show a "
            "redistribution rebound.",
        ),
    ]


def comparison_blocks(comparison: dict) -> list[Block]:
    """The comparison of structural models by PSIS-LOO (``fit --structure both``)."""
    from dialyzability.results.compare import cells

    header, rows = cells(comparison["fits"])
    return [
        Block("h2", "Structural models compared (PSIS-LOO)"),
        Block("p", comparison["sentence"]),
        Block("table", rows=tuple(rows), header=tuple(header)),
    ]


def build_report(fit, summary, figures: list[str]) -> Report:
    """Assemble the report of ``fit`` from its ``summary`` and the names of its figures: the
    verdict first, then the flags, the answer, the prior against the posterior, the amounts per
    window, the classical estimates, EXTRIP, the assumptions and the diagnostics."""
    case, drug = fit.case, fit.drug
    b: list[Block] = [Block("h1", f"Dialyzability report: {case.id}")]
    d = summary.diagnostics
    if not d.converged:
        b.append(
            Block(
                "warning",
                "NOT CONVERGED. The sampler did not converge (" + d.sentence() + "). Do not "
                "use these numbers; run longer or check the data.",
            )
        )
    b += [Block("verdict", s) for s in summary.verdict]
    source = case.reference or "no reference given"
    if case.doi:
        source += f", doi:{case.doi}"
    b.append(Block("p", f"Drug: {case.drug}. Source: {source}. Clock: {case.clock}."))
    if summary.structure:
        b.append(Block("p", f"Structural model: {summary.structure['label']}."))
    b += drug_model_note(drug.provenance())
    if summary.flags:
        b.append(Block("h2", "Flags for the reviewer"))
        b += [
            Block("flag", f["message"][0].upper() + f["message"][1:] + ".") for f in summary.flags
        ]
    b.append(Block("h2", "Answer"))
    b += [Block("p", s) for s in answer_sentences(summary, case, case.drug)]

    b.append(Block("h2", "Quantities"))
    pct = f"{summary.hdi_prob * 100:.0f} % interval"
    rows = []
    for name, q in summary.rows().items():
        extra = ""
        if q["unit"] == "L/h":
            lo, hi = q["hdi"]
            extra = (
                f"{fmt(q['median'] * FLOWS_ML_MIN)} ({fmt(lo * FLOWS_ML_MIN)}–"
                f"{fmt(hi * FLOWS_ML_MIN)}) mL/min"
            )
        if "p_above_1" in q:
            extra = f"P(> 1) = {probability(q)}"
        rows.append((name, q["label"], median(q), interval(q), q["unit"], extra))
    b.append(
        Block("table", rows=tuple(rows), header=("quantity", "meaning", "median", pct, "unit", ""))
    )
    b.append(
        Block(
            "p",
            "Intervals: "
            + "; ".join(
                sorted(
                    {f"{q['interval']} ({q['scale']} scale)" for q in summary.quantities.values()}
                )
            )
            + ". Positive quantities (ratios, clearances, volumes, half-lives, amounts) take the "
            "highest-density interval of their logarithm, percentages and times that of their "
            "values; each number is given to the precision of its Monte Carlo standard error.",
        )
    )

    prior_rows = _prior_rows(summary)
    if prior_rows:
        b.append(Block("h2", "Prior against posterior: what the data added"))
        b.append(
            Block(
                "table",
                rows=prior_rows,
                header=(
                    "quantity",
                    "meaning",
                    f"prior median ({pct})",
                    f"posterior median ({pct})",
                    "unit",
                    "posterior width / prior width",
                    "",
                ),
            )
        )
        lines = [
            narrowing_sentence(name, q.get("width_ratio"))
            for name, q in summary.quantities.items()
            if q.get("prior")
        ]
        b.append(
            Block(
                "p",
                "Widths on the log scale for positive quantities. "
                + "; ".join(lines)
                + f". A quantity whose posterior interval keeps {PRIOR_DOMINATED:.0%} or more of "
                "its prior width is prior-dominated: the data say little about it.",
            )
        )

    if summary.windows:
        b.append(Block("h2", "Amounts per window: collected against modelled"))
        rows = tuple(
            (
                w["label"],
                "not measured" if w["collected_mg"] is None else f"{w['collected_mg']:.4g}",
                median(w["modelled_mg"]),
                interval(w["modelled_mg"]),
            )
            for w in summary.windows
        )
        b.append(
            Block(
                "table",
                rows=rows,
                header=("window", "collected (mg)", "modelled (mg)", f"modelled {pct} (mg)"),
            )
        )

    if summary.sessions:
        b += session_blocks(summary.sessions, pct)
    if summary.comparison:
        b += comparison_blocks(summary.comparison)

    samples = effluent_samples(fit, summary.hdi_prob)
    if samples:
        b.append(Block("h2", "Effluent samples: measured against modelled"))
        rows = tuple(
            (
                r["label"],
                f"{r['time_h']:.4g}",
                f"{r['measured_mg_per_L']:.4g}",
                median(r["predicted_mg_per_L"]),
                interval(r["predicted_mg_per_L"]),
                f"{r['effluent_flow_L_per_h']:.4g}",
                f"{median(r['sieving'])} ({interval(r['sieving'])})",
            )
            for r in samples
        )
        b.append(
            Block(
                "table",
                rows=rows,
                header=(
                    "sample",
                    "time (h)",
                    "measured (mg/L)",
                    "modelled (mg/L)",
                    f"modelled {pct} (mg/L)",
                    "effluent flow (L/h)",
                    "CL_ECTR / Q_E",
                ),
            )
        )
        b.append(
            Block(
                "p",
                "An effluent sample is modelled as C_E = CL_ECTR × C_plasma(t) / Q_E, the "
                "drug cleared from plasma appearing in the effluent flow Q_E (dialysate + "
                "ultrafiltrate) of its session (mass balance over the filter; CL_ECTR / Q_E is "
                "the saturation or sieving coefficient; Atkinson AJ, Transl Clin Pharmacol "
                "2016;24:153-156). Modelled values include measurement error.",
            )
        )

    b += plan_blocks(fit, summary.hdi_prob)

    b.append(Block("h2", "Classical estimates (model-free)"))
    rows = []
    for e in summary.classical.values():
        value = f"{fmt(e['value'])} {e['unit']}" if e["computable"] else "not computable"
        how = e.get("method") or "amount / AUC by lin-up/log-down"
        rows.append((e["label"], value, e["reason"] or how))
    if rows:
        b.append(Block("table", rows=tuple(rows), header=("estimate", "value", "how / why not")))
    else:
        b.append(Block("p", "None: the case has no urine collection or measured recovery."))

    if summary.extrip.get("modalities"):
        b.append(Block("h2", "EXTRIP dialyzability criteria"))
        b += [Block("p", s) for s in extrip_sentences(summary.extrip)]
        rows = []
        for m, per in summary.extrip["modalities"].items():
            for c in per.values():
                rows.append((m, c["label"], *(prob(c[g]) for g in GRADES)))
        header = ("modality", "criterion", *(f"P({g}: {GRADE_LABELS[g]})" for g in GRADES))
        b.append(Block("table", rows=tuple(rows), header=header))
        b.append(Block("p", "Grades after Lavergne V et al., Clin Toxicol 2012;50:403-413."))

    b.append(Block("h2", "Assumptions"))
    p = case.patient
    facts = [
        f"weight {fmt(p.weight)} kg"
        if p.weight
        else f"weight not reported: latent, prior {drug.weight.describe()}",
        f"kidney function {case.kidney_function}"
        + ("" if p.kidney_function else " (not reported; assumed)"),
        "threshold for the end of toxicity: "
        + (f"{summary.threshold:g} mg/L" if summary.threshold else "none (no hours saved)"),
    ]
    b.append(Block("p", "Patient: " + "; ".join(facts) + "."))
    matrices = {c.matrix for c in case.concentrations}
    sites = {c.site for c in case.concentrations} - {None}
    if matrices - {"plasma"} or sites:
        said = []
        if "serum" in matrices:
            said.append("serum levels are treated as plasma levels (the same concentration)")
        if "blood" in matrices:
            said.append(
                "whole-blood levels are modelled as B:P × the plasma level, with the "
                "blood-to-plasma ratio B:P a parameter under the prior "
                f"{drug.priors.blood_plasma_ratio.describe()} (table below)"
            )
        if "pre-filter" in sites:
            said.append("pre-filter (arterial line) levels are the systemic level")
        if "post-filter" in sites:
            said.append(
                "post-filter (venous line) levels are modelled as C_p × (1 − CL_ECTR/Q), Q the "
                "session's plasma flow Q_B × (1 − haematocrit) (the blood flow itself when the "
                "haematocrit is not reported); net ultrafiltration across the filter is not "
                "modelled, and the figure compares each with its own prediction, not with the "
                "systemic curve"
            )
        b.append(Block("p", "Levels: " + "; ".join(said) + "."))
    bounds = [
        f"{s.modality} session {i}: {s.blood_flow * (1 - (p.haematocrit or 0)):.3g} L/h"
        for i, s in enumerate(case.sessions, 1)
        if s.blood_flow is not None
    ]
    if bounds:
        hct = (
            f"haematocrit {p.haematocrit:g}"
            if p.haematocrit
            else "haematocrit not reported, so the bound is the blood flow itself"
        )
        b.append(
            Block(
                "p",
                "Flows: CL_ECTR cannot exceed the plasma flow Q_B × (1 − haematocrit) through "
                f"the filter ({hct}; " + "; ".join(bounds) + "). It is modelled as "
                "Q (1 − e^(−K/Q)), K under the drug's ECTR prior (Renkin 1959; Michaels 1966); "
                "a modality bound by the smallest flow of its sessions.",
            )
        )
    unused = unused_fields(case)
    if unused:
        b.append(Block("p", "Not used by the model: " + "; ".join(unused) + "."))
    if summary.timings:
        b.append(
            Block(
                "p",
                "Timings the report gives only as ranges are unknowns, uniform on "
                "their range; their posterior is in the quantities table.",
            )
        )
    b.append(
        Block(
            "table",
            rows=tuple(drug.prior_table(skip=fit.structure.unused)),
            header=("prior", "distribution", "source"),
        )
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


def drug_model_note(provenance: str | None) -> list[Block]:
    """A paragraph naming the user's drug-model file (and the shipped one it overrides), from
    :meth:`~dialyzability.io.drugs.DrugModel.provenance`; none for a shipped model."""
    if not provenance or provenance.startswith("drug model: the shipped"):
        return []
    return [Block("p", provenance[0].upper() + provenance[1:] + ".")]


def pooled_extrip_blocks(summary: dict) -> list[Block]:
    """The pooled report's EXTRIP section: for each modality and kidney class the population
    ratio and the EXTRIP criteria of a typical patient, beside the drug's published grade."""
    ex = summary.get("extrip")
    if not ex:
        return []
    drug, pct = summary["drug"], f"{summary['hdi_prob'] * 100:.0f} % interval"
    b = [Block("h2", "EXTRIP: this pool beside the published grade")]
    pub = ex["published"]
    letter = None
    if pub:
        parts = []
        if pub.get("dialyzability"):
            letter = next(g for g, t in GRADE_LABELS.items() if t == pub["dialyzability"])
            parts.append(f"{pub['dialyzability']} ({letter})")
        if pub.get("evidence"):
            parts.append(f"level of evidence {pub['evidence']}")
        if pub.get("recommendation"):
            parts.append(f"recommendation: {pub['recommendation']}")
        what = ", ".join(parts) or "graded"
        b.append(
            Block("p", f"Published EXTRIP grading of {drug}: {what}. Source: {pub['source']}.")
        )
    else:
        why = f" ({ex['not_found']})" if ex.get("not_found") else ""
        b.append(Block("p", f"The drug model gives no published EXTRIP grade for {drug}{why}."))
    rows = []
    for kidney, per_class in ex["typical"].items():
        for m, per in per_class["modalities"].items():
            q = summary["population"].get(population_ratio_name(m, kidney))
            parts = []
            for c in per.values():
                best = max(GRADES, key=lambda g, c=c: c[g])
                parts.append(f"{best} (P {_eq(prob(c[best]))})")
                rows.append((m, kidney, c["label"], *(prob(c[g]) for g in GRADES)))
            text = f"{m}, typical 70-kg patient with {kidney} kidneys: "
            if q:
                text += (
                    f"population ratio {median(q)} ({pct} {interval(q)}), "
                    f"P(ratio > 1) = {probability(q)}; "
                )
            text += "most probable grade per criterion (in the table's order): " + ", ".join(parts)
            if letter:
                text += f"; P(published grade {letter}) per criterion: " + ", ".join(
                    prob(c[letter]) for c in per.values()
                )
            b.append(
                Block(
                    "p",
                    text + f". P(endogenous half-life > 4 h) "
                    f"{_eq(prob(per_class['p_thalf_off_above_4h']))}"
                    + (
                        ""
                        if per_class.get("applies", True)
                        else ": the EXTRIP criteria do not apply to such a patient"
                    )
                    + ".",
                )
            )
    if rows:
        header = ("modality", "kidneys", "criterion", *(f"P({g})" for g in GRADES))
        b.append(Block("table", rows=tuple(rows), header=header))
    if ex.get("note"):
        b.append(Block("p", ex["note"]))
    return b


def build_pooled_report(summary: dict, figures: list[str]) -> Report:
    """The report of a pooled fit, from its summary (``population`` and ``cases`` sections)."""
    pct = f"{summary['hdi_prob'] * 100:.0f} % interval"
    b: list[Block] = [Block("h1", f"Pooled dialyzability report: {summary['drug']}")]
    d = summary["diagnostics"]
    if not d["converged"]:
        b.append(
            Block(
                "warning", "NOT CONVERGED. The sampler did not converge; do not use these numbers."
            )
        )
    b += [Block("verdict", s) for s in summary.get("verdicts", {}).values()]
    b += drug_model_note(summary.get("drug_model"))
    b.append(Block("h2", "Answer"))
    for name, q in summary["population"].items():
        if name.startswith("ratio_") and not name.startswith("ratio_new_"):
            _, modality, kidney = name.split("_", 2)
            new = summary["population"][f"ratio_new_{modality}_{kidney}"]
            b.append(
                Block(
                    "p",
                    f"For a typical 70-kg patient with {kidney} kidneys, {modality} "
                    f"cleared {summary['drug']} at {median(q)} ({pct} "
                    f"{interval(q)}) times the renal clearance, P(ratio > 1) = "
                    f"{probability(q)}; for a new such patient the ratio is "
                    f"{median(new)} ({pct} {interval(new)}).",
                )
            )
    b += pooled_extrip_blocks(summary)
    b.append(Block("h2", "Population"))
    rows = [
        (n, median(q), interval(q), probability(q) if "p_above_1" in q else "–")
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
                f"{median(q[key])} ({interval(q[key])})" if key else "–",
                f"{median(single)} ({interval(single)})" if single else "–",
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
