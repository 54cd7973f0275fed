"""Classical, model-free estimates of renal and extracorporeal clearance.

Clearance over a window is the amount recovered divided by the plasma AUC over the same window:

    CL_R    = Ae(urine window)      / AUC(urine window)
    CL_ECTR = recovered(session)    / AUC(session)

and, for an effluent sample with its session's effluent flow Q_E and a plasma (or serum) level
measured at the same time (within :data:`SAME_TIME_H`),

    CL_ECTR = Q_E · C_E / C_p

(the effluent clearance of a sample, mass balance over the filter; Atkinson AJ, Transl Clin
Pharmacol 2016;24:153-156; C_E / C_p is the saturation or sieving coefficient), and for an
A-V pair (a pre- and a post-filter level of one session at the same time, in one matrix)

    CL_ECTR = Q · (C_in − C_out) / C_in

with Q the session's plasma flow Q_B (1 − Hct) (the blood flow itself when the haematocrit is
not reported, which overstates it: the estimate says so) and (C_in − C_out)/C_in the filter's
extraction ratio (Atkinson 2016, the A-V method; net ultrafiltration is not accounted for),
with the AUC by the linear-up/log-down trapezoidal rule between measured levels (Gabrielsson J,
Weiner D. Pharmacokinetic and Pharmacodynamic Data Analysis, 5th ed., 2016, ch. 2; the rule PKNCA
calls "lin up/log down"). An estimate is computed only when measured levels bracket its window and
the window's times are known exactly; otherwise it is reported as not computable with the reason,
never extrapolated. When a urine collection and a session cover the same window, the ratio of the
amounts equals the ratio of the clearances, because the AUC cancels.

The curve follows PKNCA's conventions (Denney W, Duvvuri S, Buckeridge C. Simple, automatic
noncompartmental analysis: the PKNCA R package. J Pharmacokinet Pharmacodyn 2015;42(S1):S65):

* one curve per matrix: plasma, serum and whole-blood levels are never mixed. A window uses the
  matrix whose levels give its AUC, plasma first, then serum, then blood, and the estimate says
  which (:attr:`Estimate.matrix`); when none does alone, it is not computable with the reason;
* a level below the LLOQ at or before the first dose (and before the matrix's first quantified
  level) counts as 0, PKNCA's default for BLQ before the first measurable level
  (``clean.conc.blq``, ``first = "keep"``), so a window starting at the dose can be computed;
  other levels below the LLOQ are left out (PKNCA drops those in the middle; a trailing one,
  which PKNCA keeps as 0, is left out too: nothing is extrapolated to zero);
* no interpolation across a dose: a window with a dose inside it, or whose bracketing levels
  straddle a dose, is not computable (PKNCA integrates one dosing interval at a time); an iv
  bolus at the first level of a segment is too, since the level just after it is not measured
  (PKNCA would back-extrapolate C0);
* two levels at the same time in one matrix are an error of the case file
  (:mod:`dialyzability.io.case`), never silently re-sorted;
* a post-filter level is not the systemic level: it is left out of every curve and AUC, and
  of the plasma levels of the effluent clearance; a pre-filter level is the systemic level
  and counts as any other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from itertools import pairwise

from dialyzability.design import plasma_flow
from dialyzability.io.case import Case, Dose, Time

#: the matrices of levels, in the order a window's curve is looked for
MATRICES = ("plasma", "serum", "blood")
#: a level is "at the same time" as an effluent sample within this many hours (1 minute)
SAME_TIME_H = 1 / 60


@dataclass(frozen=True)
class Estimate:
    """One classical estimate, or the reason it cannot be computed."""

    name: str
    label: str
    unit: str
    value: float | None
    reason: str = ""
    auc: float | None = None
    amount: float | None = None
    window: tuple[float, float] | None = None
    #: the matrix whose levels gave the AUC ("plasma", "serum", "blood"), if any
    matrix: str | None = None
    #: how it was computed, when not amount / AUC (e.g. an effluent sample's Q_E · C_E / C_p)
    method: str = ""

    @property
    def computable(self) -> bool:
        return self.value is not None

    def to_json(self) -> dict:
        out = asdict(self)
        out["computable"] = self.computable
        return out


def segment_auc(t1: float, c1: float, t2: float, c2: float, u: float, v: float) -> float:
    """AUC over ``[u, v]`` (inside ``[t1, t2]``) of the lin-up/log-down interpolant, mg·h/L.

    Between two levels the concentration is interpolated linearly when it rises or stays level,
    and log-linearly (mono-exponentially) when it falls between two positive values.

    Examples
    --------
    >>> segment_auc(0, 10, 4, 6, 0, 4)  # rising? no: falling, log-down: (10-6)/ln(10/6)*4
    31.3261...
    """
    if v <= u:
        return 0.0
    if c2 < c1 and c2 > 0:
        lam = math.log(c1 / c2) / (t2 - t1)
        cu = c1 * math.exp(-lam * (u - t1))
        cv = c1 * math.exp(-lam * (v - t1))
        return (cu - cv) / lam
    slope = (c2 - c1) / (t2 - t1)
    cu = c1 + slope * (u - t1)
    cv = c1 + slope * (v - t1)
    return 0.5 * (cu + cv) * (v - u)


def measured_levels(case: Case, matrix: str = "plasma") -> list[tuple[float, float]]:
    """(time h, level mg/L) of one matrix's curve, sorted by time: its quantified levels at
    exactly known times, and as 0 a level below the LLOQ at or before the first dose and before
    the first quantified level (PKNCA's ``first = "keep"``). Other levels below the LLOQ,
    levels at a range of times and post-filter levels (not the systemic level) are left
    out."""
    own = [
        c
        for c in case.concentrations
        if c.matrix == matrix and not c.time_h.is_range and not c.post_filter
    ]
    levels = [(c.time_h.lo, c.value) for c in own if not c.below_lloq and c.value is not None]
    first_level = min((t for t, _ in levels), default=math.inf)
    first_dose = min((d.time_h.lo for d in case.doses), default=-math.inf)
    zeros = [
        (c.time_h.lo, 0.0)
        for c in own
        if c.below_lloq and c.time_h.lo <= first_dose and c.time_h.lo < first_level
    ]
    return sorted(levels + zeros)


def _dose_time(d: Dose | Time) -> Time:
    return d if isinstance(d, Time) else d.time_h


def window_auc(
    levels: list[tuple[float, float]],
    start: Time,
    end: Time,
    doses: Iterable[Dose | Time] = (),
) -> tuple[float | None, str]:
    """AUC (mg·h/L) over ``[start, end]`` from one matrix's levels, or None and the reason.

    ``doses`` (the case's doses, or their times) keep the curve from being interpolated
    across a dose (see the module docstring)."""
    doses = list(doses)
    timing = f"the window's timing is a range ({start} to {end})"
    if len(levels) < 2:
        few = (
            "no quantified level at a known time"
            if not levels
            else ("a single level cannot bracket the window")
        )
        return None, few + ("; " + timing if start.is_range or end.is_range else "")
    if start.is_range or end.is_range:
        return None, timing
    a, b = start.lo, end.lo
    for d in doses:
        t = _dose_time(d)
        if t.hi > a and t.lo < b:
            may = "may fall" if t.is_range else "falls"
            return None, (
                f"a dose at {t} {may} inside the window ({a:g}-{b:g} h); the AUC is not "
                "integrated across a dose"
            )
    times = [t for t, _ in levels]
    if any(t2 <= t1 for t1, t2 in pairwise(times)):
        return None, "two levels at the same time; one level per time is needed"
    if times[0] > a or times[-1] < b:
        return None, (
            f"measured levels ({times[0]:g}-{times[-1]:g} h) do not bracket the window "
            f"({a:g}-{b:g} h); no extrapolation"
        )
    auc = 0.0
    for (t1, c1), (t2, c2) in pairwise(levels):
        u, v = max(a, t1), min(b, t2)
        if v <= u:
            continue
        for d in doses:
            t = _dose_time(d)
            if t.hi > t1 and t.lo < t2:
                return None, (
                    f"the levels at {t1:g} h and {t2:g} h, which the window needs, straddle "
                    f"a dose at {t}; no interpolation across a dose"
                )
            if getattr(d, "route", "") == "iv" and t.lo <= t1 <= t.hi:
                return None, (
                    f"an iv dose at {t}: the level just after it is not measured (no "
                    "back-extrapolation of C0)"
                )
        auc += segment_auc(t1, c1, t2, c2, u, v)
    if auc <= 0:
        return None, "the AUC over the window is zero"
    return auc, ""


def window_estimate(case: Case, start: Time, end: Time) -> tuple[float | None, str, str | None]:
    """(AUC, reason, matrix) of a window: from the first matrix of :data:`MATRICES` whose levels
    alone give it; otherwise None and why, matrix by matrix when they differ."""
    systemic = [c for c in case.concentrations if not c.post_filter]
    present = [m for m in MATRICES if any(c.matrix == m for c in systemic)]
    if not present:
        auc, reason = window_auc([], start, end, case.doses)
        return auc, reason, None
    tried: dict[str, str] = {}
    for m in present:
        auc, reason = window_auc(measured_levels(case, m), start, end, case.doses)
        if auc is not None:
            return auc, "", m
        tried[m] = reason
    if len(set(tried.values())) == 1:
        reason = next(iter(tried.values()))
        return None, reason, present[0] if len(present) == 1 else None
    each = "; ".join(f"{m} levels: {r}" for m, r in tried.items())
    return None, f"no one matrix gives the curve, and matrices are not mixed ({each})", None


def _label(label: str, matrix: str | None, computable: bool) -> str:
    if computable and matrix not in (None, "plasma"):
        return f"{label} ({'whole-blood' if matrix == 'blood' else matrix} levels)"
    return label


def classical_estimates(case: Case) -> list[Estimate]:
    """Classical clearances of a case: one per urine collection and per session with recovery."""
    out: list[Estimate] = []
    for i, u in enumerate(case.urine, start=1):
        auc, reason, matrix = window_estimate(case, u.start_h, u.end)
        value = u.recovered / auc if auc else None
        out.append(
            Estimate(
                f"cl_renal_urine{i}",
                _label(f"Renal clearance, urine #{i}", matrix, bool(auc)),
                "L/h",
                value,
                "" if auc else f"not computable: {reason}",
                auc,
                u.recovered,
                _window(u.start_h, u.end),
                matrix,
            )
        )
    for i, s in enumerate(case.sessions, start=1):
        if s.amount is None:
            continue
        auc, reason, matrix = window_estimate(case, s.start_h, s.end)
        value = s.amount / auc if auc else None
        out.append(
            Estimate(
                f"cl_ectr_session{i}",
                _label(f"{s.modality} clearance, session #{i}", matrix, bool(auc)),
                "L/h",
                value,
                "" if auc else f"not computable: {reason}",
                auc,
                s.amount,
                _window(s.start_h, s.end),
                matrix,
            )
        )
    for i, s in enumerate(case.sessions, start=1):
        for k, e in enumerate(s.effluent_samples, start=1):
            out.append(_sample_estimate(case, i, s, k, e))
    for k, c in enumerate(case.concentrations, start=1):
        if c.post_filter:
            out.append(_pair_estimate(case, k, c))
    for i, u in enumerate(case.urine, start=1):
        for j, s in enumerate(case.sessions, start=1):
            window = _window(s.start_h, s.end)
            if s.amount is None or window is None or window != _window(u.start_h, u.end):
                continue
            out.append(
                Estimate(
                    f"amount_ratio_session{j}_urine{i}",
                    f"Amount ratio session #{j} / urine #{i} (= clearance ratio)",
                    "1",
                    s.amount / u.recovered,
                    amount=s.amount,
                    window=window,
                )
            )
    return out


def _sample_estimate(case: Case, i: int, session, k: int, sample) -> Estimate:
    """Q_E · C_E / C_p of effluent sample ``k`` of session ``i``, or why it is not computable."""
    name = f"cl_ectr_session{i}_sample{k}"
    label = f"{session.modality} clearance, session #{i} effluent sample #{k}"
    method = "effluent flow x effluent / plasma level at the sample's time"

    def refused(reason: str) -> Estimate:
        return Estimate(name, label, "L/h", None, f"not computable: {reason}", method=method)

    t = sample.time_h
    if t.is_range:
        return refused("the sample's time is a range")
    at = [
        c
        for c in case.concentrations
        if not c.time_h.is_range
        and not c.below_lloq
        and not c.post_filter
        and math.isclose(c.time_h.lo, t.lo, abs_tol=SAME_TIME_H)
    ]
    for matrix in ("plasma", "serum"):
        level = next((c for c in at if c.matrix == matrix), None)
        if level is not None:
            value = session.effluent_flow * sample.concentration / level.value
            return Estimate(
                name,
                _label(label, matrix, True),
                "L/h",
                value,
                window=(t.lo, t.lo),
                matrix=matrix,
                method=method,
            )
    if at:
        return refused(f"only a whole-blood level at {t.lo:g} h (a model-free estimate has no B:P)")
    return refused(f"no quantified plasma or serum level measured at {t.lo:g} h")


def _pair_estimate(case: Case, k: int, post) -> Estimate:
    """Q · (C_in − C_out) / C_in of post-filter level ``k`` (1-based) and the pre-filter level
    of its session at its time, or why it is not computable."""
    i = post.session
    session = case.sessions[i - 1]
    name = f"cl_ectr_session{i}_av_level{k}"
    label = f"{session.modality} clearance, session #{i} A-V pair at post-filter level #{k}"
    hct = case.patient.haematocrit
    method = "plasma flow x (pre - post-filter level) / pre-filter level (A-V extraction)"
    if hct is None:
        method += "; haematocrit not reported, so the blood flow is taken as the plasma flow"

    def refused(reason: str) -> Estimate:
        return Estimate(name, label, "L/h", None, f"not computable: {reason}", method=method)

    t = post.time_h
    if t.is_range:
        return refused("the post-filter level's time is a range")
    if post.below_lloq:
        return refused("the post-filter level is below the LLOQ (the extraction is unknown)")
    pre = [
        (j, c)
        for j, c in enumerate(case.concentrations, start=1)
        if c.site == "pre-filter"
        and c.session == i
        and not c.time_h.is_range
        and math.isclose(c.time_h.lo, t.lo, abs_tol=SAME_TIME_H)
    ]
    if not pre:
        return refused(f"no pre-filter level of session #{i} at {t.lo:g} h")
    same = [(j, c) for j, c in pre if c.matrix == post.matrix]
    if not same:
        return refused(
            f"the pre-filter level at {t.lo:g} h is in {pre[0][1].matrix}, the post-filter one "
            f"in {post.matrix}; matrices are not mixed"
        )
    j, c_in = same[0]
    if c_in.below_lloq:
        return refused(f"the pre-filter level #{j} is below the LLOQ")
    if post.value >= c_in.value:
        return refused(
            f"the post-filter level ({post.value:.4g} mg/L) is not below the pre-filter level "
            f"#{j} ({c_in.value:.4g} mg/L): no extraction measurable"
        )
    q = plasma_flow(case, i)
    value = q * (c_in.value - post.value) / c_in.value
    return Estimate(
        name,
        _label(label, post.matrix, True),
        "L/h",
        value,
        window=(t.lo, t.lo),
        matrix=post.matrix,
        method=method,
    )


def _window(start: Time, end: Time) -> tuple[float, float] | None:
    return None if start.is_range or end.is_range else (start.lo, end.lo)
