"""What a fit means: the verdict, how much the data narrowed the prior, and the flags a reviewer
needs. Every sentence is generated from the same rows as the tables (``summary.json``).

Thresholds (documented here, used everywhere):

* **Verdict** on the ratio CL_ECTR / CL_R: "faster" when P(ratio > 1) >= :data:`VERDICT_P`,
  "more slowly" when P(ratio > 1) <= 1 − :data:`VERDICT_P`, otherwise "inconclusive", with the
  interval of the ratio and which way the evidence leans ("about equally likely" when
  P(ratio > 1) is within :data:`EVEN_BAND` of 0.5).
* **Prior-dominated**: the posterior interval's width is at least :data:`PRIOR_DOMINATED` of the
  prior interval's width (on the log scale for positive quantities): the data narrowed the
  answer less than two-fold, so it is mostly the prior.
* **Timing at a bound**: a timing given as a range whose posterior puts at least
  :data:`TIMING_PILE` of its mass in the outer :data:`TIMING_EDGE` of the range at one end (a
  uniform prior puts 0.25 there): the data fit only if the event happened near that end.
* **Poorly predicted observation**: posterior-predictive tail probability
  P(y_rep >= y_obs) below :data:`PPC_TAIL` or above 1 − :data:`PPC_TAIL` (Gelman A et al.
  Bayesian Data Analysis, 3rd ed., 2013, §6.3).
"""

from __future__ import annotations

import math

import numpy as np

from dialyzability.results.quantities import format_p, rounded

#: P(ratio > 1) at or above which the verdict is "faster" (at or below 1 − it: "more slowly")
VERDICT_P = 0.90
#: |P(ratio > 1) − 0.5| within which faster and slower are "about equally likely"
EVEN_BAND = 0.15
#: posterior/prior interval width at or above which an answer is labelled prior-dominated
PRIOR_DOMINATED = 0.5
#: share of a timing's range, at each end, watched for posterior mass piling against a bound
TIMING_EDGE = 0.25
#: posterior share in that edge that raises the flag (a uniform prior gives TIMING_EDGE)
TIMING_PILE = 0.60
#: posterior-predictive tail probability below which (or above 1 − it) an observation is flagged
PPC_TAIL = 0.02


def width_ratio(post: dict, prior: dict | None, scale: str) -> float | None:
    """Width of the posterior interval over the prior's, on the log scale for ``scale="log"``
    (so a ratio of 0.5 means the data halved the interval's fold-range exponent)."""
    if not prior:
        return None
    (a, b), (c, d) = post["hdi"], prior["hdi"]
    if scale == "log":
        if min(a, b, c, d) <= 0:
            return None
        num, den = math.log(b / a), math.log(d / c)
    else:
        num, den = b - a, d - c
    return num / den if den > 0 else None


def narrowing_sentence(label: str, ratio: float | None) -> str:
    """How much the data narrowed a quantity, for the report and the table."""
    if ratio is None:
        return f"{label}: no prior interval to compare"
    if ratio >= PRIOR_DOMINATED:
        return (
            f"{label}: prior-dominated (the data narrowed its interval only to "
            f"{ratio:.0%} of the prior's width)"
        )
    return f"{label}: the data narrowed its interval to {ratio:.0%} of the prior's width"


def verdict(row: dict, modality: str, drug: str, *, converged: bool = True, who: str = "") -> str:
    """One sentence on whether ``modality`` cleared ``drug`` faster than the kidneys.

    Parameters
    ----------
    row
        The ratio's summary row (``median``, ``hdi``, ``p_above_1``, ``p_above_1_mcse``,
        ``mcse``, optional ``width_ratio``).
    who
        Whom the sentence is about, as a prefix, e.g. "Typical patient, normal kidneys: " in a
        pooled fit.
    """
    p = row["p_above_1"]
    se = row.get("p_above_1_mcse")
    lo, hi = row["hdi"]
    mc = row.get("mcse", {}).get("hdi", [None, None])
    between = f"between {rounded(lo, mc[0])} and {rounded(hi, mc[1])} times"
    ptext = format_p(row)
    if p >= VERDICT_P:
        text = f"{modality} cleared {drug} faster than the kidneys (P = {ptext}): {between}"
        text += " the renal clearance."
    elif p <= 1 - VERDICT_P:
        text = (
            f"{modality} cleared {drug} more slowly than the kidneys "
            f"(P = {format_p({**row, 'p_above_1': 1 - p})}): "
            f"{between} the renal clearance."
        )
    else:
        if abs(p - 0.5) <= EVEN_BAND:
            lean = "faster and slower are about equally likely"
        elif p > 0.5:
            lean = "faster is more likely than slower, but not settled"
        else:
            lean = "slower is more likely than faster, but not settled"
        text = (
            f"Inconclusive: {modality} cleared {drug} at {between} the renal clearance; "
            f"{lean} (P(faster) = {ptext})."
        )
    text = who + text
    if se and min(abs(p - VERDICT_P), abs(p - (1 - VERDICT_P))) < 2 * se:
        text += (
            f" Borderline: P(faster) is within two Monte Carlo standard errors of a threshold "
            f"({1 - VERDICT_P:.2f} or {VERDICT_P:.2f}); a longer run may change the category."
        )
    ratio = row.get("width_ratio")
    if ratio is not None and ratio >= PRIOR_DOMINATED:
        text += (
            f" The data narrowed the prior's interval of the ratio only to {ratio:.0%} of its "
            "width: this answer is mostly the prior."
        )
    if not converged:
        text = "NOT CONVERGED (do not use these numbers): " + text
    return text


def timing_flags(view) -> list[dict]:
    """Latent timings whose posterior piles against a bound of their range (see module)."""
    events = view.fit.batch.events[view.index]
    ranges = events.latent()
    described = events.timings()
    flags = []
    for name, values in view.latent_times().items():
        lo, hi = ranges[name]
        width = hi - lo
        if width <= 0:
            continue
        t = np.asarray(values).ravel()
        low_share = float((t <= lo + TIMING_EDGE * width).mean())
        high_share = float((t >= hi - TIMING_EDGE * width).mean())
        if max(low_share, high_share) < TIMING_PILE:
            continue
        upper = high_share >= low_share
        bound = hi if upper else lo
        share = high_share if upper else low_share
        flags.append(
            {
                "kind": "timing_at_bound",
                "name": name,
                "bound": bound,
                "share": share,
                "message": _timing_sentence(
                    view.case, described[name], bound, upper, lo, hi, share
                ),
            }
        )
    return flags


def _timing_sentence(case, timing, bound, upper, lo, hi, share) -> str:
    """Why a timing piles against a bound, in the words of the case (``timing``: a
    :class:`~dialyzability.design.Timing`)."""
    from dialyzability.design import event_parts, event_words

    end = "upper" if upper else "lower"
    tail = (
        f"(the {end} end of its range {lo:g}-{hi:g} h: {share:.0%} of the posterior lies in "
        f"the {end} {TIMING_EDGE:.0%} of the range; check the report's timing)"
    )
    if timing.kind == "offset":
        return (
            f"the data fit only if {event_words(timing.event, case)} was about {bound:g} h after "
            f"{event_words(timing.base, case)} {tail}"
        )
    noun, number, part = event_parts(timing.event)
    if timing.kind == "duration":
        part, at = "duration", f"about {bound:g} h"
    else:
        at = f"near {bound:g} h"
    verb = {"start": "began", "end": "ended", "duration": "lasted"}.get(part, "happened")
    window = None
    if noun == "urine" and 0 < number <= len(case.urine):
        u = case.urine[number - 1]
        window = ("urine collection", u.recovered, "in urine collection", "collection")
    elif noun == "session" and 0 < number <= len(case.sessions):
        s = case.sessions[number - 1]
        window = (
            f"{s.modality} session",
            s.amount,
            f"in the effluent of {s.modality} session",
            "session",
        )
    if window is not None:
        what, amount, where, short = window
        if amount is not None:
            return (
                f"the {amount:.4g} mg {where} {number} fits only if the {short} {verb} {at} {tail}"
            )
        return f"the levels fit only if {what} {number} {verb} {at} {tail}"
    if noun == "level":
        return f"level {number} fits only if it was drawn {at} {tail}"
    if noun == "dose":
        return f"the data fit only if dose {number} was taken {at} {tail}"
    return f"the data fit only if {event_words(timing.event, case)} was {at} {tail}"


_KIND_LABEL = {
    "level": "level",
    "urine": "urine amount",
    "effluent": "effluent amount",
    "effluent_sample": "effluent concentration",
}


def prediction_flags(view) -> list[dict]:
    """Observations the model predicts poorly: posterior-predictive tail probability
    P(y_rep >= y_obs) < PPC_TAIL or > 1 − PPC_TAIL."""
    pp = view.predictive
    observed = view.observed
    if pp is None or observed is None:
        return []
    flags = []
    for var in pp.data_vars:
        if var not in observed:
            continue
        (dim,) = [d for d in pp[var].dims if d not in ("chain", "draw")]
        censored = view.censored(dim)
        for j, label in enumerate(pp[dim].values):
            if censored[j]:
                continue
            y = float(observed[var].values[j])
            rep = np.asarray(pp[var].values[..., j]).ravel()
            p = float((rep >= y).mean())
            if PPC_TAIL <= p <= 1 - PPC_TAIL:
                continue
            side = "higher" if p < PPC_TAIL else "lower"
            flags.append(
                {
                    "kind": "poorly_predicted",
                    "name": str(label),
                    "observed": y,
                    "p_rep_above": p,
                    "message": (
                        f"{_KIND_LABEL.get(dim, dim)} {label} ({y:.4g}) is {side} than the "
                        f"model predicts (P(predicted >= observed) = {p:.3f})"
                    ),
                }
            )
    return flags


def windows(view, hdi_prob: float) -> list[dict]:
    """Per urine collection and session: the amount the model says left the body through it,
    beside the amount collected (when measured)."""
    from dialyzability.results.quantities import describe

    draws = view.draws
    out = []
    case = view.case
    for dim, pred, items, what in (
        ("urine", "pred_urine", case.urine, "urine collection"),
        ("session", "pred_session", case.sessions, "session"),
    ):
        if pred not in draws:
            continue
        for j, label in enumerate(draws[dim].values):
            item = items[j]
            collected = item.recovered if dim == "urine" else item.amount
            row = describe(draws[pred].isel({dim: j}), hdi_prob, "log")
            name = f"{what} {j + 1}" + (f" ({item.modality})" if dim == "session" else "")
            out.append(
                {
                    "name": str(label),
                    "label": name,
                    "collected_mg": collected,
                    "modelled_mg": {k: row[k] for k in ("median", "hdi", "mcse")},
                }
            )
    return out


def effluent_samples(view, hdi_prob: float) -> list[dict]:
    """Per effluent sample of the case: its time, the measured concentration (mg/L) and the
    posterior-predictive one (with measurement error; median and interval), and the
    saturation or sieving coefficient CL_ECTR / Q_E the fit gives its session."""
    from dialyzability.design import effluent_sample_name
    from dialyzability.results.quantities import describe

    pp, draws = view.predictive, view.draws
    if pp is None or "effluent_concentration" not in pp:
        return []
    out = []
    for i, s in enumerate(view.case.sessions, 1):
        for k, e in enumerate(s.effluent_samples, 1):
            name = effluent_sample_name(i, k)
            row = describe(pp["effluent_concentration"].sel(effluent_sample=name), hdi_prob, "log")
            cl = draws["cl_ectr"].sel(modality=s.modality)
            sieving = describe(cl / s.effluent_flow, hdi_prob, "log")
            out.append(
                {
                    "name": name,
                    "label": f"{s.modality} session {i}, sample {k}",
                    "time_h": e.time_h.mid,
                    "measured_mg_per_L": e.concentration,
                    "predicted_mg_per_L": {k_: row[k_] for k_ in ("median", "hdi", "mcse")},
                    "effluent_flow_L_per_h": s.effluent_flow,
                    "sieving": {k_: sieving[k_] for k_ in ("median", "hdi", "mcse")},
                }
            )
    return out


#: hours after the end of a session at which the rebound is read (EXTRIP's and the issue's
#: convention: the level 2 h after the end against the level at the end)
REBOUND_AFTER_H = 2.0


def session_rows(view, hdi_prob: float) -> list[dict]:
    """Per session: the predicted level at its end and :data:`REBOUND_AFTER_H` later, the
    change between them (%, a rebound when positive: redistribution from a peripheral pool, or
    absorption still going on), and the amounts left in the body at its end, per compartment
    (mg; the peripheral one for two compartments only)."""
    from dialyzability.design import case_events
    from dialyzability.results.predictive import solutions
    from dialyzability.results.quantities import describe

    case = view.case
    if not case.sessions:
        return []
    _, design, _ = case_events(case)
    n = view.draws.sizes["chain"] * view.draws.sizes["draw"]
    shape = (view.draws.sizes["chain"], view.draws.sizes["draw"])
    ends = np.empty((len(case.sessions), 2, n))
    amounts = np.empty((len(case.sessions), 2, n))
    for d, rows, sol in solutions(view):
        at = d.index[rows]
        for i, event in enumerate(design.session_end):
            end = d.times[rows, event][:, None]
            levels = sol.at(np.concatenate([end, end + REBOUND_AFTER_H], axis=1))
            ends[i][:, at] = levels.T
            amounts[i][:, at] = np.stack(sol.amounts_at(end), axis=0)[:, :, 0]
    two = view.fit.structure.compartments == 2
    out = []
    from xarray import DataArray

    for i, s in enumerate(case.sessions):

        def q(values, scale="log"):
            row = describe(
                DataArray(values.reshape(shape), dims=("chain", "draw")), hdi_prob, scale
            )
            return {k: row[k] for k in ("median", "hdi", "mcse")}

        change = 100 * (ends[i, 1] / np.maximum(ends[i, 0], 1e-300) - 1)
        row = {
            "name": f"session{i + 1}",
            "label": f"{s.modality} session {i + 1}",
            "level_at_end_mg_per_L": q(ends[i, 0]),
            "level_after_mg_per_L": q(ends[i, 1]),
            "hours_after": REBOUND_AFTER_H,
            "change_pct": q(change, "linear"),
            "p_rebound": float(np.mean(change > 0)),
            "central_at_end_mg": q(amounts[i, 0]),
        }
        if two:
            row["peripheral_at_end_mg"] = q(amounts[i, 1])
        out.append(row)
    return out
