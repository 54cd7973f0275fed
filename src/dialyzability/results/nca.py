"""Classical, model-free estimates of renal and extracorporeal clearance.

Clearance over a window is the amount recovered divided by the plasma AUC over the same window:

    CL_R    = Ae(urine window)      / AUC(urine window)
    CL_ECTR = recovered(session)    / AUC(session)

with the AUC by the linear-up/log-down trapezoidal rule between measured levels (Gabrielsson J,
Weiner D. Pharmacokinetic and Pharmacodynamic Data Analysis, 5th ed., 2016, ch. 2; the rule PKNCA
calls "lin up/log down"). An estimate is computed only when measured levels bracket its window and
the window's times are known exactly; otherwise it is reported as not computable with the reason,
never extrapolated. When a urine collection and a session cover the same window, the ratio of the
amounts equals the ratio of the clearances, because the AUC cancels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from itertools import pairwise

from dialyzability.io.case import Case, Time


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


def measured_levels(case: Case) -> list[tuple[float, float]]:
    """(time h, level mg/L) of the quantified levels at exactly known times, sorted by time."""
    return sorted(
        (c.time_h.lo, c.value)
        for c in case.concentrations
        if not c.below_lloq and c.value is not None and not c.time_h.is_range
    )


def window_auc(
    levels: list[tuple[float, float]], start: Time, end: Time
) -> tuple[float | None, str]:
    """AUC (mg·h/L) over ``[start, end]`` from measured levels, or None and the reason."""
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
    times = [t for t, _ in levels]
    if times[0] > a or times[-1] < b:
        return None, (
            f"measured levels ({times[0]:g}-{times[-1]:g} h) do not bracket the window "
            f"({a:g}-{b:g} h); no extrapolation"
        )
    auc = 0.0
    for (t1, c1), (t2, c2) in pairwise(levels):
        if t2 > t1:
            auc += segment_auc(t1, c1, t2, c2, max(a, t1), min(b, t2))
    if auc <= 0:
        return None, "the AUC over the window is zero"
    return auc, ""


def classical_estimates(case: Case) -> list[Estimate]:
    """Classical clearances of a case: one per urine collection and per session with recovery."""
    levels = measured_levels(case)
    out: list[Estimate] = []
    for i, u in enumerate(case.urine, start=1):
        auc, reason = window_auc(levels, u.start_h, u.end)
        value = u.recovered / auc if auc else None
        out.append(
            Estimate(
                f"cl_renal_urine{i}",
                f"Renal clearance, urine #{i}",
                "L/h",
                value,
                "" if auc else f"not computable: {reason}",
                auc,
                u.recovered,
                _window(u.start_h, u.end),
            )
        )
    for i, s in enumerate(case.sessions, start=1):
        if s.amount is None:
            continue
        auc, reason = window_auc(levels, s.start_h, s.end)
        value = s.amount / auc if auc else None
        out.append(
            Estimate(
                f"cl_ectr_session{i}",
                f"{s.modality} clearance, session #{i}",
                "L/h",
                value,
                "" if auc else f"not computable: {reason}",
                auc,
                s.amount,
                _window(s.start_h, s.end),
            )
        )
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


def _window(start: Time, end: Time) -> tuple[float, float] | None:
    return None if start.is_range or end.is_range else (start.lo, end.lo)
