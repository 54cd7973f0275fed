"""EXTRIP dialyzability criteria as posterior probabilities of each grade.

The EXTRIP workgroup grades a poison's dialyzability by four criteria, each with grades
D (dialyzable), M (moderately), S (slightly) and N (not dialyzable) (Lavergne V, Nolin TD,
Hoffman RS, et al. The EXTRIP (EXtracorporeal TReatments In Poisoning) workgroup: guideline
methodology. Clin Toxicol 2012;50(5):403-413, doi:10.3109/15563650.2012.683436, table 3):

====================================== ====== ========= ========= ======
criterion                                D       M         S        N
====================================== ====== ========= ========= ======
% of body burden removed in 6 h          > 30   > 10-30   ≥ 3-10    < 3
CL_ECTR / CL_total during ECTR, %        > 75   > 50-75   ≥ 25-50   < 25
t½ on ECTR / t½ off ECTR, %              < 25   > 25-50   ≥ 50-75   > 75
removal by ECTR / total removal, %       > 75   > 50-75   ≥ 25-50   < 25
====================================== ====== ========= ========= ======

Each criterion is applied to every posterior draw, so P(grade) is the share of draws in that
grade and the four probabilities of a criterion sum to 1. The criteria apply only when the
endogenous half-life exceeds 4 h; P(t½ off > 4 h) is reported beside them.

Limitation: in a one-compartment model the last three criteria are the same number seen three
ways (t½ on/t½ off = 1 − CL_ECTR/CL_total, and the removal share during a session equals the
clearance share), so they agree draw by draw; they differ in practice only through the
measurement error of the data EXTRIP grades from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dialyzability.results.quantities import name_of

GRADES = ("D", "M", "S", "N")
GRADE_LABELS = {
    "D": "dialyzable",
    "M": "moderately dialyzable",
    "S": "slightly dialyzable",
    "N": "not dialyzable",
}
#: EXTRIP applies its criteria when the endogenous half-life exceeds this (h)
MIN_THALF_H = 4.0
#: the criteria are said to apply when P(t½ off > MIN_THALF_H) is at least this
APPLIES_P = 0.5


@dataclass(frozen=True)
class Criterion:
    """One EXTRIP criterion: a registered quantity (in %) and its three cut-points."""

    name: str
    label: str
    quantity: str
    factor: float
    cuts: tuple[float, float, float]
    higher_is_better: bool

    def grades(self, values) -> np.ndarray:
        """The grade (index into GRADES) of each value."""
        x = np.asarray(values, dtype=float) * self.factor
        d, m, s = self.cuts
        if self.higher_is_better:  # D > d; M > m; S >= s; else N
            return np.select([x > d, x > m, x >= s], [0, 1, 2], 3)
        # t½ ratio: D < d; M <= m; S <= s; else N
        return np.select([x < d, x <= m, x <= s], [0, 1, 2], 3)


CRITERIA: tuple[Criterion, ...] = (
    Criterion(
        "removed_6h",
        "Body burden removed in a 6-h session (%)",
        "removed_6h",
        1.0,
        (30, 10, 3),
        True,
    ),
    Criterion(
        "clearance_share",
        "CL_ECTR / CL_total during ECTR (%)",
        "ratio_total",
        100.0,
        (75, 50, 25),
        True,
    ),
    Criterion(
        "thalf_ratio",
        "Half-life on ECTR / half-life off (%)",
        "thalf_ratio",
        1.0,
        (25, 50, 75),
        False,
    ),
    Criterion(
        "removal_share",
        "Removal by ECTR / total removal during ECTR (%)",
        "ratio_total",
        100.0,
        (75, 50, 25),
        True,
    ),
)


def grade_probabilities(quantities: dict, modalities: list[str]) -> dict:
    """P(D), P(M), P(S), P(N) per criterion and modality, and P(t½ off > 4 h).

    Parameters
    ----------
    quantities
        Posterior draws of the registered quantities (:func:`quantities.compute_all`).
    modalities
        The case's modalities.

    Returns
    -------
    dict
        ``{"p_thalf_off_above_4h": p, "applies": p >= APPLIES_P, "modalities": {m: {criterion:
        {"label", "D", "M", "S", "N"}}}}``; empty modalities when the case has no session.
    """
    thalf = np.asarray(quantities["thalf_off"]).ravel()
    p = float((thalf > MIN_THALF_H).mean())
    out = {"p_thalf_off_above_4h": p, "applies": p >= APPLIES_P, "modalities": {}}
    for m in modalities:
        per = {}
        for c in CRITERIA:
            g = c.grades(np.asarray(quantities[name_of(c.quantity, m, modalities)]).ravel())
            per[c.name] = {
                "label": c.label,
                **{k: float((g == i).mean()) for i, k in enumerate(GRADES)},
            }
        out["modalities"][m] = per
    return out
