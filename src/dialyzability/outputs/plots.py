"""Figures a clinician can read, each with a twin that returns the numbers it draws.

``levels_data``/``plot_levels`` (fit.png), ``ratio_data``/``plot_ratio`` (ratio.png),
``recoveries_data``/``plot_recoveries`` (recoveries.png), ``extrip_data``/``plot_extrip``
(extrip.png, greyed when the criteria do not apply), ``sensitivity_data``/``plot_sensitivity``
(sensitivity.png) and ``prior_posterior_data``/``plot_prior_posterior`` (prior_posterior.png).
The plot functions only read a :class:`~dialyzability.results.fit.Fit`; :func:`write_figures`
writes all of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dialyzability.design import level_name, population_ratio_name, session_name, urine_name
from dialyzability.io.files import write_whole
from dialyzability.results.extrip import APPLIES_P, GRADE_LABELS, GRADES, MIN_THALF_H
from dialyzability.results.fit import interval_text
from dialyzability.results.quantities import (
    HDI_PROB,
    describe,
    name_of,
    probability_above,
    rounded,
)

FIGSIZE = (8.0, 4.6)
DPI = 150
SESSION_COLOUR = "#d95f02"
URINE_COLOUR = "#1b9e77"
BAND_COLOUR = "#4c72b0"
GRADE_COLOURS = {"D": "#1a9850", "M": "#91cf60", "S": "#fee08b", "N": "#d73027"}
#: the grades' colours when the EXTRIP criteria do not apply
GREYS = ("#8c8c8c", "#a8a8a8", "#c4c4c4", "#dedede")
PRIOR_COLOUR = "#999999"
#: the quantities of the prior-against-posterior figure
PRIOR_POSTERIOR = ("ratio", "cl_renal", "cl_ectr", "thalf_off")


def _figure(nrows=1, ncols=1, **kw):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, figsize=kw.pop("figsize", FIGSIZE), **kw)


def _window_spans(fit) -> tuple[list[dict], list[dict]]:
    """Sessions and urine windows with their possible and posterior-median extents (h)."""
    from dialyzability.design import case_events

    events, _, _ = case_events(fit.case)
    latent = events.latent()
    values = {name: float(fit.timing(name).median()) for name in latent}
    median = events.resolve(values)  # known times, latent ones at their posterior medians
    where = {label: i for i, label in enumerate(events.labels)}

    def span(kind, i, w):
        return {
            "start_range": (w.start_h.lo, w.start_h.hi),
            "end_range": (w.end.lo, w.end.hi),
            "start": float(median[where[f"{kind}{i}_start"]]),
            "end": float(median[where[f"{kind}{i}_end"]]),
            "vague": w.start_h.is_range or w.end.is_range,
        }

    sessions = []
    for i, s in enumerate(fit.case.sessions, 1):
        sessions.append(
            {"label": f"{s.modality} #{i}", "modality": s.modality, **span("session", i, s)}
        )
    urine = [
        {"label": f"urine #{i}", **span("urine", i, u)} for i, u in enumerate(fit.case.urine, 1)
    ]
    return sessions, urine


def levels_data(fit, points: int = 300, max_draws: int = 1000) -> dict:
    """Numbers of the fitted-levels figure: posterior median and 50 %/95 % bands on a time grid,
    the observed levels (censored ones at their LLOQ), the effluent samples with their
    posterior-predictive intervals, sessions, urine windows, threshold.

    The curve is the systemic plasma level. A post-filter level (``site``) is not a point of
    it: its entry says so (``"site": "post-filter"``) and carries its own posterior-predictive
    median and interval (``"predicted"``: C_p (1 − CL_ECTR/Q) with measurement error), with
    which the figure compares it instead."""
    from dialyzability.design import case_events
    from dialyzability.results.predictive import curves

    events, _, _ = case_events(fit.case)
    lo = min(t.lo for t in events.times)
    hi = max(t.hi for t in events.times)
    pad = 0.05 * (hi - lo or 1.0)
    t = np.linspace(lo, hi + pad, points)
    c = curves(fit, t, max_draws=max_draws)
    q = np.percentile(c, [2.5, 25, 50, 75, 97.5], axis=0)
    # the curve is the plasma level: a whole-blood level is shown divided by the posterior
    # median of B:P (its plasma equivalent)
    bp = 1.0
    if "blood_plasma_ratio" in fit.draws:
        bp = float(np.median(fit.draws["blood_plasma_ratio"].values))
    observed = [
        {
            "time": c_.time_h.mid,
            "time_range": (c_.time_h.lo, c_.time_h.hi),
            "value": (c_.lloq if c_.below_lloq else c_.value) / (bp if c_.matrix == "blood" else 1),
            "censored": c_.below_lloq,
            "matrix": c_.matrix,
            "site": c_.site,
        }
        for c_ in fit.case.concentrations
    ]
    pp = fit.predictive
    for j, (o, c_) in enumerate(zip(observed, fit.case.concentrations, strict=True), 1):
        if c_.post_filter and pp is not None and "concentration" in pp:
            row = describe(pp["concentration"].sel(level=level_name(j)), HDI_PROB, "log")
            o["predicted"] = {"median": row["median"], "low": row["hdi"][0], "high": row["hdi"][1]}
    sessions, urine = _window_spans(fit)
    from dialyzability.results.interpret import effluent_samples

    samples = [
        {
            "label": r["label"],
            "time": r["time_h"],
            "value": r["measured_mg_per_L"],
            "median": r["predicted_mg_per_L"]["median"],
            "low": r["predicted_mg_per_L"]["hdi"][0],
            "high": r["predicted_mg_per_L"]["hdi"][1],
        }
        for r in effluent_samples(fit, HDI_PROB)
    ]
    return {
        "time": t,
        "effluent_samples": samples,
        "q2.5": q[0],
        "q25": q[1],
        "median": q[2],
        "q75": q[3],
        "q97.5": q[4],
        "observed": observed,
        "sessions": sessions,
        "urine": urine,
        "threshold": fit.threshold,
        "clock": fit.case.clock,
    }


def plot_levels(fit, data: dict | None = None, hdi_prob: float = HDI_PROB):
    """fit.png: levels on a log axis, posterior median and bands, sessions and urine windows."""
    from matplotlib.transforms import blended_transform_factory

    d = data or levels_data(fit)
    fig, ax = _figure()
    positive = d["q2.5"] > 0
    ax.fill_between(
        d["time"][positive],
        d["q2.5"][positive],
        d["q97.5"][positive],
        color=BAND_COLOUR,
        alpha=0.18,
        lw=0,
        label="95 % band",
    )
    ax.fill_between(
        d["time"][positive],
        d["q25"][positive],
        d["q75"][positive],
        color=BAND_COLOUR,
        alpha=0.35,
        lw=0,
        label="50 % band",
    )
    ax.plot(
        d["time"][positive],
        d["median"][positive],
        color=BAND_COLOUR,
        lw=1.8,
        label="posterior median",
    )
    post = [o for o in d["observed"] if o.get("site") == "post-filter"]
    for o in post:  # compared with its own prediction, not with the systemic curve
        if "predicted" in o:
            p = o["predicted"]
            ax.vlines(o["time"], p["low"], p["high"], color="#7570b3", lw=2, alpha=0.6)
        face = "white" if o["censored"] else "#7570b3"
        ax.plot(o["time"], o["value"], "^", mfc=face, mec="black", ms=7)
    if post:
        ax.plot(
            [],
            [],
            "^",
            mfc="#7570b3",
            mec="black",
            label=f"post-filter level (bar: predicted {HDI_PROB:.0%})",
        )
    for o in d["observed"]:
        if o.get("site") == "post-filter":
            continue
        if o["censored"]:
            ax.plot(o["time"], o["value"], "v", mfc="white", mec="black", ms=8)
        elif o.get("matrix") == "blood":
            ax.plot(o["time"], o["value"], "D", mfc="white", mec="black", ms=6)
        else:
            ax.plot(o["time"], o["value"], "o", color="black", ms=6)
        if o["time_range"][1] > o["time_range"][0]:
            ax.hlines(o["value"], *o["time_range"], color="black", lw=1)
    if any(o.get("matrix") != "blood" and o.get("site") != "post-filter" for o in d["observed"]):
        ax.plot([], [], "o", color="black", label="measured level")
    if any(o.get("matrix") == "blood" for o in d["observed"]):
        ax.plot(
            [], [], "D", mfc="white", mec="black", label="whole-blood level / B:P (post. median)"
        )
    for e in d.get("effluent_samples", []):
        ax.vlines(e["time"], e["low"], e["high"], color=SESSION_COLOUR, lw=2, alpha=0.6)
        ax.plot(e["time"], e["value"], "s", color=SESSION_COLOUR, mec="black", ms=6)
    if d.get("effluent_samples"):
        ax.plot(
            [],
            [],
            "s",
            color=SESSION_COLOUR,
            mec="black",
            label=f"effluent sample (bar: predicted {HDI_PROB:.0%})",
        )
    if any(o["censored"] for o in d["observed"]):
        ax.plot([], [], "v", mfc="white", mec="black", label="below LLOQ (at the LLOQ)")
    if d["threshold"]:
        ax.axhline(d["threshold"], color="grey", ls="--", lw=1)
        ax.annotate(
            f"threshold {d['threshold']:.3g} mg/L",
            (1.0, d["threshold"]),
            xycoords=("axes fraction", "data"),
            xytext=(-4, 3),
            textcoords="offset points",
            ha="right",
            fontsize=8,
            color="dimgrey",
        )
    ax.set_yscale("log")
    # keep the clinically relevant range in view: down to 1/100 of the lowest level or threshold
    floor = [o["value"] for o in d["observed"]] + ([d["threshold"]] if d["threshold"] else [])
    floor += [e["value"] for e in d.get("effluent_samples", [])]
    if floor:
        ax.set_ylim(bottom=max(min(floor) / 100, ax.get_ylim()[0]))
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for s in d["sessions"]:
        if s["vague"]:
            ax.axvspan(
                s["start_range"][0], s["end_range"][1], color=SESSION_COLOUR, alpha=0.07, lw=0
            )
        ax.axvspan(s["start"], s["end"], color=SESSION_COLOUR, alpha=0.28, lw=0)
        ax.text(
            0.5 * (s["start"] + s["end"]),
            0.98,
            s["label"],
            transform=top,
            ha="center",
            va="top",
            fontsize=8,
            color=SESSION_COLOUR,
            rotation=90,
        )
    for k, u in enumerate(d["urine"]):
        y = 0.03 + 0.04 * k
        ax.plot(
            [u["start_range"][0], u["end_range"][1]],
            [y, y],
            transform=top,
            color=URINE_COLOUR,
            lw=6,
            alpha=0.25,
            solid_capstyle="butt",
        )
        ax.plot(
            [u["start"], u["end"]],
            [y, y],
            transform=top,
            color=URINE_COLOUR,
            lw=6,
            solid_capstyle="butt",
        )
        ax.text(
            u["start_range"][0],
            y + 0.02,
            u["label"],
            transform=top,
            fontsize=8,
            color=URINE_COLOUR,
            va="bottom",
        )
    ax.plot(
        [],
        [],
        color=SESSION_COLOUR,
        lw=6,
        alpha=0.5,
        label="session (posterior median; pale: possible range)",
    )
    ax.plot([], [], color=URINE_COLOUR, lw=6, label="urine collection (pale: possible range)")
    ax.set_xlabel(f"Time (h; {d['clock']})")
    ax.set_ylabel("Drug concentration (mg/L)")
    ax.set_title(f"{fit.case.id}: fitted levels ({fit.case.drug})", fontsize=11)
    ax.legend(fontsize=7, loc="upper right", bbox_to_anchor=(1.0, 0.86), framealpha=0.9)
    fig.tight_layout()
    return fig


def ratio_data(fit, hdi_prob: float = HDI_PROB) -> dict:
    """Per modality: draws of CL_ECTR/CL_R, median, HDI and P(ratio > 1)."""
    q = fit.quantities()
    out = {}
    for m in fit.modalities:
        values = q[name_of("ratio", m, fit.modalities)]
        above = probability_above(values, 1.0)
        out[m] = {
            "draws": np.asarray(values).ravel(),
            **describe(values, hdi_prob, "log"),
            "p_above_1": above["p"],
            "p_above_1_mcse": above["mcse"],
        }
    return out


def plot_ratio(fit, data: dict | None = None, hdi_prob: float = HDI_PROB):
    """ratio.png: posterior of CL_ECTR/CL_R on a log axis with its interval, a line at 1,
    P(> 1)."""
    d = data or ratio_data(fit, hdi_prob)
    fig, ax = _figure()
    if not d:
        ax.text(
            0.5,
            0.5,
            "No extracorporeal session in this case",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        return fig
    colours = [BAND_COLOUR, SESSION_COLOUR, URINE_COLOUR, "purple"]
    allx = np.concatenate([v["draws"] for v in d.values()])
    bins = np.logspace(np.log10(np.percentile(allx, 0.2)), np.log10(np.percentile(allx, 99.8)), 60)
    for k, (m, v) in enumerate(d.items()):
        colour = colours[k % len(colours)]
        ax.hist(
            v["draws"],
            bins=bins,
            density=False,
            color=colour,
            alpha=0.45,
            label=f"{m}: median {rounded(v['median'], v['mcse']['median'])}, "
            f"{hdi_prob:.0%} interval {interval_text(v)}; P(>1) = "
            f"{rounded(v['p_above_1'], v['p_above_1_mcse'])}",
        )
        ymax = ax.get_ylim()[1]
        ax.hlines(ymax * (0.9 - 0.06 * k), *v["hdi"], color=colour, lw=3)
    ax.axvline(1.0, color="black", lw=1.2, ls="--")
    ax.annotate(
        "ECTR = kidneys",
        (1.0, 0.0),
        xycoords=("data", "axes fraction"),
        xytext=(4, 4),
        textcoords="offset points",
        fontsize=8,
    )
    ax.set_xscale("log")
    ax.set_xlabel("CL_ECTR / CL_R (extracorporeal over renal clearance)")
    ax.set_ylabel("Posterior draws")
    ax.set_yticks([])
    ax.set_title(f"{fit.case.id}: did the machine clear faster than the kidneys?", fontsize=11)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    fig.tight_layout()
    return fig


def recoveries_data(fit) -> list[dict]:
    """Observed amounts and their posterior-predictive 95 % intervals (with measurement
    error, the ``posterior_predictive`` group), mg; a session without a measured recovery shows
    the model's amount removed (no measurement error)."""
    pred = fit.predictive
    rows = []

    def row(label, observed, draws):
        lo, mid, hi = np.percentile(np.asarray(draws).ravel(), [2.5, 50, 97.5])
        return {"label": label, "observed": observed, "median": mid, "low": lo, "high": hi}

    for i, u in enumerate(fit.case.urine, 1):
        rows.append(row(f"urine #{i}", u.recovered, pred["urine_amount"].sel(urine=urine_name(i))))
    for i, s in enumerate(fit.case.sessions, 1):
        name = session_name(i)
        if s.amount is not None:
            draws = pred["effluent_amount"].sel(effluent=name)
        else:
            draws = fit.draws["pred_session"].sel(session=name)
        rows.append(row(f"{s.modality} #{i}", s.amount, draws))
    return rows


def plot_recoveries(fit, data: list | None = None, hdi_prob: float = HDI_PROB):
    """recoveries.png: observed vs posterior-predictive amount per urine collection and session."""
    d = data if data is not None else recoveries_data(fit)
    fig, ax = _figure()
    if not d:
        ax.text(
            0.5,
            0.5,
            "No urine collection or session in this case",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        return fig
    y = np.arange(len(d))[::-1]
    for yy, r in zip(y, d, strict=True):
        colour = URINE_COLOUR if r["label"].startswith("urine") else SESSION_COLOUR
        ax.hlines(yy, r["low"], r["high"], color=colour, lw=4, alpha=0.6)
        ax.plot(r["median"], yy, "|", color=colour, ms=14, mew=2)
        if r["observed"] is not None:
            ax.plot(r["observed"], yy, "D", color="black", ms=6)
        else:
            ax.annotate(
                "not measured",
                (r["high"], yy),
                xytext=(6, -3),
                textcoords="offset points",
                fontsize=8,
                color="dimgrey",
            )
    ax.plot([], [], "D", color="black", label="observed")
    ax.plot([], [], color="grey", lw=4, alpha=0.6, label="predicted, 95 % (with measurement error)")
    ax.set_yticks(y, [r["label"] for r in d])
    ax.set_xscale("log")
    ax.set_xlabel("Amount of drug recovered (mg)")
    ax.set_ylim(-0.7, len(d) - 0.3)
    ax.set_title(f"{fit.case.id}: recoveries, observed and predicted", fontsize=11)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def extrip_data(fit, hdi_prob: float = HDI_PROB) -> dict:
    """The EXTRIP grade probabilities of the fit's summary."""
    return fit.summary(hdi_prob).extrip


def plot_extrip(fit, data: dict | None = None, hdi_prob: float = HDI_PROB):
    """extrip.png: P(D), P(M), P(S), P(N) for each criterion and modality, as stacked bars."""
    d = data or extrip_data(fit, hdi_prob)
    rows = [(m, c) for m, per in d["modalities"].items() for c in per.values()]
    fig, ax = _figure(figsize=(9.0, 1.8 + 0.55 * max(len(rows), 1)))
    if not rows:
        ax.text(
            0.5,
            0.5,
            "No extracorporeal session in this case",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        return fig
    applies = d.get("applies", True)
    y = np.arange(len(rows))[::-1]
    left = np.zeros(len(rows))
    for k, g in enumerate(GRADES):
        widths = np.array([c[g] for _, c in rows])
        ax.barh(
            y,
            widths,
            left=left,
            color=GRADE_COLOURS[g] if applies else GREYS[k],
            edgecolor="white",
            label=f"{g}: {GRADE_LABELS[g]}",
        )
        for yy, lft, w in zip(y, left, widths, strict=True):
            if w >= 0.08:
                ax.text(lft + w / 2, yy, f"{w:.2f}", ha="center", va="center", fontsize=8)
        left += widths
    ax.set_yticks(y, [f"{m}: {c['label']}" for m, c in rows], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("Posterior probability of each EXTRIP grade")
    p = d["p_thalf_off_above_4h"]
    if applies:
        title = (
            f"{fit.case.id}: EXTRIP dialyzability grades (the criteria apply when the endogenous "
            f"t½ > {MIN_THALF_H:g} h; here P = {p:.2f})"
        )
    else:
        title = (
            f"{fit.case.id}: EXTRIP criteria DO NOT APPLY: P(endogenous t½ > {MIN_THALF_H:g} h) "
            f"= {p:.2f} < {APPLIES_P:g}"
        )
        ax.set_facecolor("#eeeeee")
        ax.text(
            0.5,
            0.5,
            "criteria do not apply\n(endogenous half-life too short)",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=13,
            color="#444444",
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "#888888"},
        )
    fig.suptitle(title, fontsize=10)
    ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.4, -0.3), frameon=False)
    fig.tight_layout()
    return fig


def sensitivity_data(fit) -> dict:
    """For each timing given as a range: its draws beside the draws of the (first) ratio."""
    if not fit.modalities:
        return {}
    ratio = np.asarray(fit.quantities()[name_of("ratio", fit.modalities[0], fit.modalities)])
    out = {}
    for name, values in fit.latent_times().items():
        out[name] = {"time": np.asarray(values).ravel(), "ratio": ratio.ravel()}
    return out


def plot_sensitivity(fit, data: dict | None = None, hdi_prob: float = HDI_PROB):
    """sensitivity.png: how the ratio depends on each uncertain timing (draw by draw)."""
    d = data if data is not None else sensitivity_data(fit)
    n = max(len(d), 1)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = _figure(rows, cols, figsize=(3.2 * cols + 1.0, 3.0 * rows + 0.6), squeeze=False)
    if not d:
        ax = axes[0, 0]
        ax.text(
            0.5,
            0.5,
            "No timing given as a range (or no session)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        return fig
    for ax, (name, v) in zip(axes.ravel(), d.items(), strict=False):
        ax.plot(v["time"], v["ratio"], ".", ms=2, alpha=0.25, color=BAND_COLOUR)
        ax.set_yscale("log")
        ax.axhline(1.0, color="black", ls="--", lw=1)
        ax.set_xlabel(name.removeprefix("t_").replace("_", " ") + " (h)", fontsize=9)
        ax.set_ylabel("CL_ECTR / CL_R", fontsize=9)
    for ax in axes.ravel()[len(d) :]:
        ax.set_axis_off()
    fig.suptitle(f"{fit.case.id}: ratio against each uncertain timing", fontsize=11)
    fig.tight_layout()
    return fig


def prior_posterior_data(fit, hdi_prob: float = HDI_PROB) -> dict:
    """Prior and posterior draws of the ratio, CL_R, CL_ECTR and the half-life off ECTR (the
    first modality), with the summary's rows (medians, intervals, width ratio)."""
    post = fit.quantities()
    prior = fit.view(0).prior_quantities() if fit.single else {}
    rows = fit.summary(hdi_prob).quantities
    out = {}
    for base in PRIOR_POSTERIOR:
        name = name_of(base, fit.modalities[0], fit.modalities) if fit.modalities else base
        if name not in post or name not in prior:
            continue
        out[name] = {
            "posterior": np.asarray(post[name]).ravel(),
            "prior": np.asarray(prior[name]).ravel(),
            "row": rows[name],
        }
    return out


def plot_prior_posterior(fit, data: dict | None = None, hdi_prob: float = HDI_PROB):
    """prior_posterior.png: prior (grey) and posterior (blue) densities on log axes, each panel
    saying how much the data narrowed the interval."""
    d = data if data is not None else prior_posterior_data(fit, hdi_prob)
    fig, axes = _figure(1, max(len(d), 1), figsize=(3.3 * max(len(d), 1) + 0.6, 3.4), squeeze=False)
    if not d:
        axes[0, 0].text(0.5, 0.5, "No prior draws in this fit", ha="center", va="center")
        axes[0, 0].set_axis_off()
        return fig
    for ax, (name, v) in zip(axes.ravel(), d.items(), strict=True):
        both = np.concatenate([v["prior"], v["posterior"]])
        both = both[np.isfinite(both) & (both > 0)]
        lo, hi = np.percentile(both, [0.5, 99.5])
        bins = np.logspace(np.log10(lo), np.log10(hi), 50)
        for key, colour, text in (
            ("prior", PRIOR_COLOUR, "prior"),
            ("posterior", BAND_COLOUR, "posterior"),
        ):
            x = v[key][np.isfinite(v[key]) & (v[key] > 0)]
            dens, edges = np.histogram(np.log(x), bins=np.log(bins), density=True)
            ax.stairs(dens, np.exp(edges), color=colour, lw=1.8, label=text, fill=key == "prior",
                      alpha=0.35 if key == "prior" else 1.0)  # fmt: skip
        row = v["row"]
        ax.set_xscale("log")
        ax.set_yticks([])
        if name.startswith("ratio"):
            ax.axvline(1.0, color="black", ls="--", lw=1)
        ratio = row.get("width_ratio")
        verdict = "prior-dominated" if row.get("prior_dominated") else "informed by the data"
        width = f"{ratio:.0%} of the prior's width" if ratio is not None else ""
        ax.set_title(f"{row['label']}\n{width}: {verdict}", fontsize=8.5)
        ax.set_xlabel(f"{name} ({row['unit']})" if row["unit"] != "1" else name, fontsize=9)
    axes.ravel()[0].legend(fontsize=8, frameon=False)
    fig.suptitle(f"{fit.case.id}: prior against posterior (log axes)", fontsize=11)
    fig.tight_layout()
    return fig


def plot_plan_of(fit, data=None, hdi_prob: float = HDI_PROB):
    """plan.png of a fit: :func:`plot_plan` of its plan (:meth:`CaseView.plan`, the one the
    report's table shows), or a note when the case has no session to plan for."""
    planned = data if data is not None else fit.view(0).plan(hdi_prob)
    if planned is None:
        fig, ax = _figure(figsize=(8.0, 1.6))
        text = f"{fit.case.id}: no extracorporeal session, nothing to plan for"
        ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    return plot_plan(planned)


FIGURES = {
    "fit.png": plot_levels,
    "ratio.png": plot_ratio,
    "recoveries.png": plot_recoveries,
    "extrip.png": plot_extrip,
    "sensitivity.png": plot_sensitivity,
    "prior_posterior.png": plot_prior_posterior,
    "plan.png": plot_plan_of,
}


#: the file formats a figure can be written in (matplotlib's backends), the first the default
FIGURE_FORMATS = ("png", "svg", "pdf")


def figure_names(names, formats=("png",)) -> list[str]:
    """The file names of figures ``names`` (``"fit.png"``, ...) in each of ``formats``."""
    return [Path(name).with_suffix(f".{f}").name for name in names for f in formats]


def write_figures(
    fit, directory: str | Path, formats=("png",), hdi_prob: float = HDI_PROB
) -> list[Path]:
    """Write every figure into ``directory`` in each of ``formats`` (:data:`FIGURE_FORMATS`),
    its intervals of probability ``hdi_prob``, each file whole or not at all."""
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, plot in FIGURES.items():
        fig = plot(fit, hdi_prob=hdi_prob)
        for target in figure_names([name], formats):
            paths.append(
                write_whole(directory / target, lambda tmp, fig=fig: fig.savefig(tmp, dpi=DPI))
            )
        plt.close(fig)
    return paths


def forest_data(pooled, unpooled: dict | None = None, hdi_prob: float = HDI_PROB) -> dict:
    """Rows of the forest plot: per case the pooled (and, if given, unpooled) HDI of its ratio
    (first modality), and per (modality, kidney class) the population and predictive ratios.

    ``unpooled`` maps case ids to draws of the single-case ratio.
    """
    from dialyzability.results.population import case_ratio, population_draws

    cases = []
    for i, c in enumerate(pooled.cases):
        if not c.modalities:
            continue
        draws = case_ratio(pooled.view(i))
        row = {
            "case": c.id,
            "modality": c.modalities[0],
            "pooled": describe(draws, hdi_prob, "log"),
        }
        if unpooled and c.id in unpooled:
            row["unpooled"] = describe(unpooled[c.id], hdi_prob, "log")
        cases.append(row)
    population = []
    draws = population_draws(pooled)
    for m in pooled.batch.modalities:
        for k in pooled.batch.kidney_classes:
            population.append(
                {
                    "label": f"population: {m}, {k} kidneys",
                    "mean": describe(draws[population_ratio_name(m, k)], hdi_prob, "log"),
                    "new": describe(draws[population_ratio_name(m, k, new=True)], hdi_prob, "log"),
                }
            )
    return {"cases": cases, "population": population, "hdi_prob": hdi_prob}


def plot_forest(pooled, data: dict | None = None):
    """forest.png: per-case ratios (unpooled and pooled) and the population diamond(s)."""
    d = data or forest_data(pooled)
    n = len(d["cases"]) + len(d["population"])
    fig, ax = _figure(figsize=(8.0, 2.4 + 0.32 * max(n, 1)))
    y = n - 1
    labels = []
    for row in d["cases"]:
        if "unpooled" in row:
            lo, hi = row["unpooled"]["hdi"]
            ax.hlines(y + 0.15, lo, hi, color="grey", lw=1.5)
            ax.plot(row["unpooled"]["median"], y + 0.15, "o", color="grey", ms=4)
        lo, hi = row["pooled"]["hdi"]
        ax.hlines(y - 0.1, lo, hi, color=BAND_COLOUR, lw=2.5)
        ax.plot(row["pooled"]["median"], y - 0.1, "s", color=BAND_COLOUR, ms=5)
        labels.append((y, f"{row['case']} ({row['modality']})"))
        y -= 1
    for row in d["population"]:
        lo, hi = row["new"]["hdi"]
        ax.hlines(y, lo, hi, color=SESSION_COLOUR, lw=1, ls="--")
        m_lo, m_hi = row["mean"]["hdi"]
        med = row["mean"]["median"]
        ax.fill([m_lo, med, m_hi, med], [y, y + 0.3, y, y - 0.3], color=SESSION_COLOUR)
        labels.append((y, row["label"]))
        y -= 1
    ax.axvline(1.0, color="black", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_yticks([yy for yy, _ in labels], [t for _, t in labels], fontsize=8)
    ax.set_ylim(-0.8, n - 0.2)
    ax.set_xlabel(f"CL_ECTR / CL_R ({d.get('hdi_prob', HDI_PROB):.0%} interval, HDI of log)")
    ax.plot([], [], "o-", color="grey", label="single case (unpooled)")
    ax.plot([], [], "s-", color=BAND_COLOUR, label="pooled (shrunk)")
    ax.fill([], [], color=SESSION_COLOUR, label="population, typical 70-kg patient")
    ax.plot([], [], "--", color=SESSION_COLOUR, label="new patient (predictive)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    ax.set_title(f"{pooled.drug.name}: {len(pooled.cases)} cases pooled", fontsize=11)
    fig.tight_layout()
    return fig


def plot_plan(plan):
    """plan.png: the expected fold range of the ratio's interval had each candidate measurement
    been made (:func:`~dialyzability.results.plan.plan`), best at the top, against the current
    width (vertical line); refused estimates are listed at the bottom without a bar."""
    rows = plan.rows
    n = max(len(rows), 1)
    fig, ax = _figure(figsize=(9.0, 1.6 + 0.34 * n))
    y = np.arange(len(rows))[::-1]
    current = plan.current_fold
    for yy, r in zip(y, rows, strict=True):
        if r["width_fold"] is None:
            ax.text(1.0, yy, f"  {r['status']}", va="center", fontsize=8, color="grey")
            continue
        colour = {"level": BAND_COLOUR, "effluent": SESSION_COLOUR, "urine": URINE_COLOUR}.get(
            r["kind"], "#7570b3"
        )
        ax.barh(yy, r["width_fold"] - 1.0, left=1.0, height=0.62, color=colour, alpha=0.85)
        ax.text(
            r["width_fold"],
            yy,
            f" {r['width_fold']:.3g}x ({r['narrowing']:.0%} narrower)",
            va="center",
            fontsize=7.5,
        )
    ax.axvline(current, color="black", lw=1.4, ls="--")
    ax.annotate(
        f"now {current:.3g}x",
        (current, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(3, -12),
        textcoords="offset points",
        fontsize=8,
    )
    ax.set_xscale("log")
    ax.set_xlim(1.0, current * 2.5)
    ax.set_yticks(y, [r["label"] for r in rows], fontsize=8)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel(
        f"Expected fold range (hi/lo) of the {plan.prob:.0%} interval of {plan.quantity}, "
        "had the measurement been made"
    )
    from matplotlib.patches import Patch

    handles = [
        Patch(color=colour, alpha=0.85, label=kind)
        for kind, colour in (
            ("level", BAND_COLOUR),
            ("effluent total", SESSION_COLOUR),
            ("urine amount", URINE_COLOUR),
            ("exact time", "#7570b3"),
        )
    ]
    ax.legend(handles=handles, fontsize=7, loc="lower right", frameon=False)
    ax.set_title(f"{plan.case}: what would have settled it (shorter is better)", fontsize=11)
    fig.tight_layout()
    return fig
