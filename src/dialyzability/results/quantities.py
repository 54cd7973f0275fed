"""Registry of derived quantities: each declared once with its function, unit and label.

Every output (summary table, summary.json/csv, plots, report) reads this registry, so a quantity's
name, unit and definition live in one place. Quantities marked ``per_modality`` are computed for
each extracorporeal modality of the case and named ``cl_ectr``/``ratio``/... when there is one
modality, ``cl_ectr_HD``/``ratio_HD``/... when there are several.

Interval and digits policy (one place, every output):

* the credible interval has probability :data:`HDI_PROB`, passed explicitly to ArviZ;
* for positive, skewed quantities (``scale = "log"``: ratios of clearances, clearances, volumes,
  half-lives, amounts) it is the highest-density interval of the logarithm, transformed back, so
  that it is the HDI a log axis shows and it does not depend on the unit; for bounded or signed
  quantities (percentages, fractions, clock times, hours saved) the HDI of the values;
* each number is shown to the precision of its Monte Carlo standard error (:func:`rounded`):
  the last digit shown is the first significant digit of its MCSE (Vehtari A et al. Bayesian
  Analysis 2021;16:667-718, §4 on reporting to the accuracy of the MCSE), with 2 to 4
  significant digits;
* P(ratio > 1) is given with its MCSE (the MCSE of the mean of the indicator).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dialyzability.pk.structure import macro_rates

#: the credible-interval policy: highest-density interval of this probability, everywhere
HDI_PROB = 0.95


@dataclass(frozen=True)
class Quantity:
    """A derived quantity.

    Attributes
    ----------
    name
        Key in every output.
    label
        What a clinician reads.
    unit
        Unit of the values (canonical: L/h, L, h, mg, or "1" for ratios).
    compute
        ``compute(posterior, modality)`` → DataArray with dims (chain, draw); ``posterior`` is the
        posterior Dataset of a fit, ``modality`` the modality for per-modality quantities.
    formula
        The definition, for reports.
    per_modality
        Computed once per ECTR modality.
    needs
        A variable that must be in the posterior for the quantity to exist (e.g. the draws of
        :func:`dialyzability.results.predictive.toxicity_draws`); empty when always available.
    scale
        ``"log"`` for positive, skewed quantities (interval: HDI of the log), ``"linear"`` for
        bounded or signed ones (interval: HDI of the values); see the module's policy.
    """

    name: str
    label: str
    unit: str
    compute: Callable
    formula: str
    per_modality: bool = False
    needs: str = ""
    scale: str = "log"


def _ectr(post, m):
    """CL_ECTR of modality ``m``, or of every modality (its dimension kept) for ``m=None``."""
    return post["cl_ectr"] if m is None else post["cl_ectr"].sel(modality=m, drop=True)


def _endogenous(post):
    return post["cl_renal"] + post["cl_nonrenal"]


def _two(post) -> bool:
    """Whether the posterior is of two compartments (it has Q)."""
    return "cl_intercompartmental" in post


def _rates(post, cl):
    """(α, β) (1/h) of the disposition with central clearance ``cl`` (L/h): two compartments
    by :func:`~dialyzability.pk.structure.macro_rates`; one compartment has only β = CL / V
    (α is then None)."""
    if not _two(post):
        return None, cl / post["volume"]
    v1, v2, q = post["volume_central"], post["volume_peripheral"], post["cl_intercompartmental"]
    return macro_rates(cl / v1, q / v1, q / v2)


def _terminal_half_life(post, cl):
    """ln 2 / β (h): the terminal half-life with central clearance ``cl``."""
    return math.log(2) / _rates(post, cl)[1]


def _session_start(post):
    """Shares (a1, a2) of the body burden in the central and the peripheral compartment on the
    terminal phase off ECTR, A2 / A1 = k12 / (k21 − β) (the eigenvector of β): where a session
    finds a body that has distributed (two compartments)."""
    v1, v2, q = post["volume_central"], post["volume_peripheral"], post["cl_intercompartmental"]
    k12, k21 = q / v1, q / v2
    _, beta = _rates(post, _endogenous(post))
    a1 = 1.0 / (1.0 + k12 / (k21 - beta))
    return a1, 1.0 - a1


def _apparent_half_life_on(post, m, hours: float = 6.0):
    """The half-life a session of ``hours`` shows (h): hours · ln 2 / ln(C(0) / C(hours)).

    One compartment: ln 2 · V / CL_on. Two compartments: from the terminal phase's split
    (:func:`_session_start`), A1(T) = e^(−α'T) a1 + D(α', β', T) ((α' − k10 − k12) a1 + k21 a2)
    under the on-ECTR rates (Sylvester's formula, as :func:`_removed_share`): the level's fall
    over the session, which EXTRIP's half-life criterion compares with the half-life off ECTR
    (Lavergne V et al., Clin Toxicol 2012;50:403-413), rather than the terminal β on ECTR, which
    a session never reaches.
    """
    on = _endogenous(post) + _ectr(post, m)
    if not _two(post):
        return math.log(2) * post["volume"] / on
    v1, v2, q = post["volume_central"], post["volume_peripheral"], post["cl_intercompartmental"]
    k10, k12, k21 = on / v1, q / v1, q / v2
    alpha, beta = _rates(post, on)
    a1, a2 = _session_start(post)
    d = (np.exp(-alpha * hours) - np.exp(-beta * hours)) / (beta - alpha)
    end = np.exp(-alpha * hours) * a1 + d * ((alpha - k10 - k12) * a1 + k21 * a2)
    return hours * math.log(2) / np.log(a1 / end)


def _removed_share(post, m, hours: float = 6.0):
    """Percentage of the body burden that a session of ``hours`` removes (EXTRIP's criterion),
    from a body on its terminal phase at its start (distributed between the compartments as the
    terminal phase keeps them, :func:`_session_start`).

    One compartment: 100 · CL_ECTR / CL_on · (1 − e^(−T CL_on / V)), CL_on = CL_R + CL_NR +
    CL_ECTR. Two compartments: the body starts on its terminal phase off ECTR (A2 / A1 =
    k12 / (k21 − β), the eigenvector of β), and the session removes CL_ECTR / V1 ∫₀ᵀ A1 dt of
    it under the on-ECTR rates (α', β'): with M the on-ECTR rate matrix and A(t) = e^(Mt) A(0),

        ∫₀ᵀ e^(Mt) dt = [(M + α'I)(1 − e^(−β'T))/β' − (M + β'I)(1 − e^(−α'T))/α'] / (α' − β')

    (Sylvester's formula for a 2x2 matrix with distinct eigenvalues −α', −β'; Gibaldi M,
    Perrier D. Pharmacokinetics, 2nd ed., 1982, ch. 2).
    """
    cl_e, cl = _ectr(post, m), _endogenous(post)
    on = cl + cl_e
    if not _two(post):
        return 100 * cl_e / on * (1 - np.exp(-hours * on / post["volume"]))
    v1, v2, q = post["volume_central"], post["volume_peripheral"], post["cl_intercompartmental"]
    k12, k21 = q / v1, q / v2
    a1, a2 = _session_start(post)
    alpha_on, beta_on = _rates(post, on)
    # first row of M + x I: (x − (k10 + k12), k21), k10 = CL_on / V1
    k10 = on / v1

    def first_row_integral(x_plus, decay):
        return ((x_plus - k10 - k12) * a1 + k21 * a2) * (1 - np.exp(-decay * hours)) / decay

    integral = (first_row_integral(alpha_on, beta_on) - first_row_integral(beta_on, alpha_on)) / (
        alpha_on - beta_on
    )
    return 100 * cl_e / v1 * integral


REGISTRY: tuple[Quantity, ...] = (
    Quantity(
        "cl_renal",
        "Renal clearance",
        "L/h",
        lambda p, m: p["cl_renal"],
        "CL_R; urine amount = CL_R × AUC over the collection",
    ),
    Quantity(
        "cl_nonrenal",
        "Non-renal clearance",
        "L/h",
        lambda p, m: p["cl_nonrenal"],
        "CL_NR (metabolism and other routes)",
    ),
    Quantity(
        "cl_ectr",
        "{m} clearance",
        "L/h",
        _ectr,
        "CL_ECTR; effluent amount = CL_ECTR × AUC over the session",
        per_modality=True,
    ),
    Quantity(
        "ratio",
        "{m} / renal clearance",
        "1",
        lambda p, m: _ectr(p, m) / p["cl_renal"],
        "CL_ECTR / CL_R",
        per_modality=True,
    ),
    Quantity(
        "ratio_total",
        "{m} share of total clearance during {m}",
        "1",
        lambda p, m: _ectr(p, m) / (_endogenous(p) + _ectr(p, m)),
        "CL_ECTR / (CL_R + CL_NR + CL_ECTR)",
        per_modality=True,
        scale="linear",
    ),
    Quantity(
        "volume",
        "Volume of distribution",
        "L",
        lambda p, m: p["volume"],
        "V; with two compartments the steady-state volume V1 + V2",
    ),
    Quantity(
        "blood_plasma_ratio",
        "Whole-blood / plasma concentration ratio",
        "1",
        lambda p, m: p["blood_plasma_ratio"],
        "B:P; a whole-blood level = B:P × plasma level",
        needs="blood_plasma_ratio",
    ),
    Quantity(
        "volume_central",
        "Central volume",
        "L",
        lambda p, m: p["volume_central"],
        "V1 = V (1 − φ), φ = V2 / V (two compartments; V the steady-state volume)",
        needs="cl_intercompartmental",
    ),
    Quantity(
        "volume_peripheral",
        "Peripheral volume",
        "L",
        lambda p, m: p["volume_peripheral"],
        "V2 = V φ (two compartments)",
        needs="cl_intercompartmental",
    ),
    Quantity(
        "cl_intercompartmental",
        "Intercompartmental clearance",
        "L/h",
        lambda p, m: p["cl_intercompartmental"],
        "Q: exchange between the central and peripheral compartments (two compartments)",
        needs="cl_intercompartmental",
    ),
    Quantity(
        "fraction_peripheral",
        "Peripheral share of the volume",
        "1",
        lambda p, m: p["fraction_peripheral"],
        "φ = V2 / V (two compartments)",
        needs="fraction_peripheral",
        scale="linear",
    ),
    Quantity(
        "lag",
        "Absorption lag",
        "h",
        lambda p, m: p["lag"],
        "time from an oral dose to the start of its absorption",
        needs="lag",
    ),
    Quantity(
        "ka_slow",
        "Absorption rate of the slow route",
        "1/h",
        lambda p, m: p["ka_slow"],
        "the slow route of a dual absorption (1/ka_slow = 1/ka + 1/k)",
        needs="ka_slow",
    ),
    Quantity(
        "fraction_slow",
        "Share of an oral dose absorbed slowly",
        "1",
        lambda p, m: p["fraction_slow"],
        "the fraction of F · dose taken by the slow route",
        needs="fraction_slow",
        scale="linear",
    ),
    Quantity(
        "thalf_alpha",
        "Distribution half-life off ECTR",
        "h",
        lambda p, m: math.log(2) / _rates(p, _endogenous(p))[0],
        "ln2 / α, α the larger disposition rate constant off ECTR (two compartments)",
        needs="cl_intercompartmental",
    ),
    Quantity(
        "thalf_off",
        "Half-life off ECTR",
        "h",
        lambda p, m: _terminal_half_life(p, _endogenous(p)),
        "terminal half-life ln2 / β with CL_R + CL_NR (one compartment: ln2 · V / (CL_R + CL_NR))",
    ),
    Quantity(
        "thalf_on",
        "Half-life on {m} (over a 6-h session)",
        "h",
        lambda p, m: _apparent_half_life_on(p, m, 6.0),
        "6 h · ln2 / ln(C(0) / C(6 h)) from the terminal phase's distribution (one compartment: "
        "ln2 · V / (CL_R + CL_NR + CL_ECTR))",
        per_modality=True,
    ),
    Quantity(
        "thalf_on_terminal",
        "Terminal half-life on {m}",
        "h",
        lambda p, m: _terminal_half_life(p, _endogenous(p) + _ectr(p, m)),
        "ln2 / β with CL_R + CL_NR + CL_ECTR (two compartments; reached only after a session "
        "much longer than the distribution half-life)",
        per_modality=True,
        needs="cl_intercompartmental",
    ),
    Quantity(
        "thalf_ratio",
        "Half-life on {m} / half-life off",
        "%",
        lambda p, m: (
            100 * _apparent_half_life_on(p, m, 6.0) / _terminal_half_life(p, _endogenous(p))
        ),
        "100 · t½ on (over a 6-h session) / t½ off (one compartment: 100 · (CL_R + CL_NR) / "
        "(CL_R + CL_NR + CL_ECTR))",
        per_modality=True,
        scale="linear",
    ),
    Quantity(
        "removed_6h",
        "Body burden removed by a 6-h {m} session",
        "%",
        lambda p, m: _removed_share(p, m, 6.0),
        "the share of the amount in the body at the start that the machine removes in 6 h "
        "(EXTRIP, Lavergne V et al., Clin Toxicol 2012;50:403-413): one compartment 100 · "
        "CL_ECTR / CL_on · (1 − exp(−6 h · CL_on / V)), CL_on = CL_R + CL_NR + CL_ECTR; two "
        "compartments from the terminal phase's distribution, 100 · CL_ECTR / V1 · ∫₀⁶ A1 dt",
        per_modality=True,
        scale="linear",
    ),
    Quantity(
        "removed_renal",
        "Amount removed by the kidneys over the observed course",
        "mg",
        lambda p, m: p["removed_renal"],
        "CL_R × AUC(first to last event)",
        needs="removed_renal",
    ),
    Quantity(
        "removed_ectr",
        "Amount removed by all sessions",
        "mg",
        lambda p, m: p["removed_ectr"],
        "Σ over sessions of CL_ECTR × AUC(session)",
        needs="removed_ectr",
    ),
    Quantity(
        "time_below_ectr",
        "Level below the threshold from (with the ECTR given)",
        "h",
        lambda p, m: p["time_below_ectr"],
        "last time the level exceeds the threshold, on the case clock",
        needs="time_below_ectr",
        scale="linear",
    ),
    Quantity(
        "time_below_no_ectr",
        "Level below the threshold from (without any ECTR)",
        "h",
        lambda p, m: p["time_below_no_ectr"],
        "the same with CL_ECTR = 0 in every session",
        needs="time_below_no_ectr",
        scale="linear",
    ),
    Quantity(
        "hours_saved",
        "Hours of toxicity saved by the ECTR",
        "h",
        lambda p, m: p["hours_saved"],
        "time_below_no_ectr − time_below_ectr",
        needs="hours_saved",
        scale="linear",
    ),
)

#: quantities whose values are also shown in mL/min
FLOWS_ML_MIN = 1000.0 / 60.0


def expand(modalities: list[str], available=()) -> list[tuple[str, Quantity, str | None]]:
    """(output name, quantity, modality) for a case with these modalities, in registry order.

    ``available`` names the posterior's variables; quantities whose ``needs`` is missing are
    left out.
    """
    rows = []
    for q in REGISTRY:
        if q.needs and q.needs not in available:
            continue
        if q.per_modality:
            for m in modalities:
                rows.append((name_of(q.name, m, modalities), q, m))
        else:
            rows.append((q.name, q, None))
    return rows


def name_of(name: str, modality: str | None, modalities: list[str]) -> str:
    """Output name of a quantity: ``ratio`` with one modality, ``ratio_HD`` with several."""
    return name if modality is None or len(modalities) == 1 else f"{name}_{modality}"


def compute_all(posterior, modalities: list[str]) -> dict[str, object]:
    """Every registered quantity of a posterior: output name → DataArray (chain, draw)."""
    rows = expand(modalities, set(posterior.data_vars))
    return {name: q.compute(posterior, m) for name, q, m in rows}


def stored_quantities(posterior) -> dict[str, object]:
    """The registry's quantities that a saved posterior stores beside the parameters (those
    that are not already variables), per-modality ones with their ``modality`` dimension, so
    that ``az.summary(idata, var_names=["ratio", "thalf_on"])`` reads them."""
    out = {}
    for q in REGISTRY:
        if q.name in posterior or (q.needs and q.needs not in posterior):
            continue
        if q.per_modality and "cl_ectr" not in posterior:
            continue
        out[q.name] = q.compute(posterior, None)
    return out


def label(q: Quantity, modality: str | None) -> str:
    return q.label.format(m=modality or "ECTR")


def describe(values, hdi_prob: float = HDI_PROB, scale: str = "linear") -> dict[str, object]:
    """Mean, median, SD, the credible interval of the policy and the Monte Carlo standard errors
    of the median and of the interval's ends.

    Parameters
    ----------
    values
        Draws, (chain, draw) or flat (one chain).
    hdi_prob
        Probability of the interval.
    scale
        ``"log"``: the HDI of log(values), transformed back (positive quantities); ``"linear"``:
        the HDI of the values.

    Returns
    -------
    dict
        ``mean``, ``median``, ``sd``, ``hdi`` [low, high], ``interval`` (how the interval was
        made), ``mcse`` {``median``, ``hdi`` [low, high]}. The interval ends' MCSEs are those of
        the equal-tailed quantiles of the same probability (ArviZ's quantile MCSE), a close
        approximation for an HDI end.
    """
    import arviz as az

    x = np.asarray(values, dtype=float)
    x = x.reshape(1, -1) if x.ndim < 2 else x.reshape(x.shape[0], -1)
    finite = x[np.isfinite(x)]
    log = scale == "log" and finite.size and (finite > 0).all()
    flat = np.log(finite) if log else finite
    lo, hi = az.hdi(flat, hdi_prob=hdi_prob).tolist()
    if log:
        lo, hi = math.exp(lo), math.exp(hi)
    mcse = {"median": None, "hdi": [None, None]}
    if np.isfinite(x).all() and x.std() > 0:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            tail = (1 - hdi_prob) / 2
            mcse = {
                "median": _mcse(x, method="median"),
                "hdi": [
                    _mcse(x, method="quantile", prob=tail),
                    _mcse(x, method="quantile", prob=1 - tail),
                ],
            }
    return {
        "mean": float(finite.mean()),
        "median": float(np.median(finite)),
        "sd": float(finite.std(ddof=1)),
        "hdi": [float(lo), float(hi)],
        "interval": f"HDI of log, {hdi_prob:.0%}" if log else f"HDI, {hdi_prob:.0%}",
        "mcse": mcse,
    }


def _mcse(x: np.ndarray, **kwargs) -> float:
    """ArviZ's MCSE of draws laid out (chain, draw)."""
    import arviz as az

    return float(np.asarray(az.mcse(x, **kwargs)).squeeze())


def probability_above(values, threshold: float = 1.0) -> dict[str, float]:
    """P(values > threshold) and its Monte Carlo standard error (MCSE of the mean of the
    indicator, which accounts for the draws' autocorrelation)."""

    x = np.asarray(values, dtype=float)
    x = x.reshape(1, -1) if x.ndim < 2 else x.reshape(x.shape[0], -1)
    indicator = (x > threshold).astype(float)
    p = float(indicator.mean())
    se = _mcse(indicator, method="mean") if 0 < p < 1 else 0.0
    return {"p": p, "mcse": se if np.isfinite(se) else 0.0}


def rounded(x: float | None, mcse: float | None = None, digits: int = 3) -> str:
    """``x`` as text to the precision its Monte Carlo standard error supports.

    The last digit shown is at the decade of the MCSE's first significant digit, with 2 to 4
    significant digits in all; without an MCSE, ``digits`` significant digits. E.g. 0.8234 with
    MCSE 0.012 → "0.82"; 4.937 with MCSE 0.3 → "4.9"; 21.3 with MCSE 2 → "21".
    """
    if x is None or not math.isfinite(x):
        return "–"
    if x == 0:
        return "0"
    lead = math.floor(math.log10(abs(x)))
    if mcse is not None and mcse > 0 and math.isfinite(mcse):
        sig = lead - math.floor(math.log10(mcse)) + 1
        digits = min(4, max(2, sig))
    if lead < -3 or lead > 5:  # very small or large: scientific notation
        return f"{x:.{digits - 1}e}"
    decimals = digits - 1 - lead
    if decimals > 0:
        return f"{x:.{decimals}f}"
    return f"{round(x, decimals):.0f}"


def format_p(row: dict) -> str:
    """P(ratio > 1) of a summary row with its MCSE, e.g. "0.43 ± 0.01" (its digits from the
    MCSE, :func:`rounded`)."""
    p, se = row["p_above_1"], row.get("p_above_1_mcse")
    if se:
        return f"{rounded(p, se)} ± {rounded(se, None, 1)}"
    if p in (0.0, 1.0):  # no Monte Carlo error to show: say what it rests on
        return f"{p:.2f}, {'every' if p == 1 else 'no'} draw"
    return f"{p:.2f}"
