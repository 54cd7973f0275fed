"""What would have settled it: the value of the measurements a case lacks.

For each measurement a case could have had — a level at the start and at the end of each
session, each session's effluent total where it was not measured, a urine collection over each
session, the exact time of each event the report gives only as a range — :func:`plan` computes
the expected width of the ratio's interval had it been made, from the current posterior and
without refitting, and ranks them (narrowest first).

Interval. The width is that of the 95 % (:data:`~dialyzability.results.quantities.HDI_PROB`)
highest-density interval of **log ratio** (ratio = CL_ECTR / CL_R), reported as a fold range
hi/lo = exp(width). The same weighted-HDI code (:func:`weighted_hdi_width`) computes the
current width (all weights equal) and every expected one, so that they compare.

Algorithm (importance sampling over the N posterior draws θ_i, Kish L, Survey Sampling, 1965,
for the effective sample size). For a candidate with prediction μ_i at draw i:

1. S outcomes: for s = 1..S, pick a posterior draw k_s at random and draw the measurement's
   outcome y_s from the error model at that draw (its posterior-predictive distribution);
2. reweight every draw by the new measurement's likelihood, w_si = p(y_s | θ_i) / Σ_j p(y_s | θ_j)
   (the posterior after the measurement, p(θ | data, y_s) ∝ p(θ | data) p(y_s | θ));
3. the weighted HDI width of log ratio under w_s·, and its Kish ESS = 1 / Σ_i w_si²;
4. the expected width is the mean over the S outcomes (reported as a fold range); the ESS as
   its mean and minimum over outcomes, divided by N.

An estimate is refused (width None, status "too few effective draws") when the ESS is below
:data:`MIN_ESS` draws for more than a share :data:`SHORT_SHARE` (one in ten) of the outcomes:
then the reweighted posteriors rest on too few draws (their widths come out too narrow) and
only a refit can say. A few short outcomes are tolerated: they are the measurement's unlikely
values, whose weight in the mean is small.

Error model of a new level, effluent or urine amount (the model's own, so that the weights are
exactly the factor by which a refit's likelihood would change). In the model
(:mod:`dialyzability.model.observations`) a case's observations of one kind share an error SD
σ with σ² ~ InvGamma(ν/2, ν s²/2) (ν, s from the drug model's ``errors.<kind>``), integrated
out: the n residuals r = log y − log μ of the case are multivariate Student-t. Adding one
observation multiplies that joint density by the predictive density of the new residual given
the old ones, which (conjugacy) is a Student-t on log y with

    df = ν + n,   location = log μ_i,   scale² = (ν s² + Σ r_i²) / (ν + n)

where Σ r_i² is draw i's sum of squared residuals of the kind's quantified observations (n of
them; none for a kind the case lacks). Outcomes are drawn from it at draw k_s (the same as
drawing σ from its conditional posterior given the draw's residuals, then a log-normal error),
and the weights are its density at y_s: a log-normal error given σ, as in the model.

Exact time of an event given as a range: recorded to within ±``tolerance`` hours (default
:data:`TOLERANCE_H`). The outcome is the latent time t_k of a posterior draw (the truth) and
the record is the range [t_k − tolerance, t_k + tolerance]; as in a refit with that range (the
model's uniform prior on it), the weight of draw i is 1 when |t_i − t_k| <= tolerance, else 0.

What a candidate is. A level "at the end of HD session 1" is taken at that event, whatever its
time: where the session's time is a range, each draw's level is at that draw's end of the
session (the time column shows the range). A "urine amount during" a session is a collection
over the session's window (beside the case's own collections, as the model would take it). A
new level is taken as quantified: the "predicted" column (the posterior median of the value)
shows where one would fall below any assay's limit.

Only posterior draws are read (no PyMC): the predictions of new measurements come from the
closed-form kinetics of each draw (:mod:`dialyzability.results.predictive`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dialyzability.design import (
    OBSERVATIONS,
    case_events,
    event_words,
    session_name,
    urine_name,
)
from dialyzability.io.drugs import error_prior
from dialyzability.results.fit import Fit
from dialyzability.results.quantities import HDI_PROB, REGISTRY, name_of

#: outcomes simulated per candidate
OUTCOMES = 30
#: fewest effective draws (Kish) of an outcome for its reweighted width to count
MIN_ESS = 100
#: largest share of the outcomes that may fall short of MIN_ESS for an estimate to be given
SHORT_SHARE = 0.1
#: an exact time is recorded to within this many hours either side
TOLERANCE_H = 0.25
#: status of an estimate that was refused
TOO_FEW = "too few effective draws"

_KINDS = {k.name: k for k in OBSERVATIONS}
#: unit of each candidate kind's predicted value
_UNITS = {"level": "mg/L", "effluent": "mg", "urine": "mg", "time": "h"}


# --------------------------------------------------------------------------------------------
# the reweighting
# --------------------------------------------------------------------------------------------


def weighted_hdi_width(values, weights=None, prob: float = HDI_PROB) -> np.ndarray:
    """Width of the shortest interval holding ``prob`` of the weight, per row of ``weights``.

    ``values`` (N,); ``weights`` (S, N) non-negative (rows need not sum to one), or None for
    equal weights. Over the sorted values x_(1) <= ... <= x_(N) with cumulative weight W, the
    interval from x_(i) reaches the first x_(j) with W_j − W_(i−1) >= prob; the width is the
    smallest x_(j) − x_(i). Returns (S,) widths (a scalar array for ``weights`` None).
    """
    values = np.asarray(values, dtype=float)
    order = np.argsort(values)
    x = values[order]
    single = weights is None
    w = np.ones((1, len(x))) if single else np.atleast_2d(np.asarray(weights, float))[:, order]
    out = np.empty(len(w))
    for s, row in enumerate(w):
        cum = np.cumsum(row) / row.sum()
        before = cum - row / row.sum()  # weight below x_(i)
        ok = before + prob <= 1.0 + 1e-12
        start = np.flatnonzero(ok)
        end = np.searchsorted(cum, before[start] + prob - 1e-12, side="left")
        end = np.minimum(end, len(x) - 1)
        out[s] = float(np.min(x[end] - x[start]))
    return out[0] if single else out


def kish_ess(weights) -> np.ndarray:
    """Kish's effective sample size (Σw)² / Σw² per row of ``weights`` (S, N)."""
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    return w.sum(axis=1) ** 2 / (w**2).sum(axis=1)


def reweighted_widths(target, loglik, prob: float = HDI_PROB) -> tuple[np.ndarray, np.ndarray]:
    """(widths, ESS), each (S,): the weighted HDI width of ``target`` (N,) under the weights
    exp(loglik) of each of S outcomes (``loglik`` (S, N), the new measurement's log-likelihood
    at every draw), and their Kish effective sample sizes."""
    loglik = np.atleast_2d(np.asarray(loglik, dtype=float))
    top = np.max(np.where(np.isfinite(loglik), loglik, -np.inf), axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    w = np.exp(loglik - top)
    empty = w.sum(axis=1) <= 0
    w[empty] = 1.0  # no draw agrees with the outcome: ESS is then set to 0 below
    widths = weighted_hdi_width(target, w, prob)
    ess = np.where(empty, 0.0, kish_ess(w))
    return widths, ess


@dataclass(frozen=True)
class StudentT:
    """The predictive error model of a new observation on the log scale (module docstring):
    Student-t with ``df`` degrees of freedom, location log μ_i and scale ``scale``_i per draw."""

    log_mu: np.ndarray  # (N,)
    scale: np.ndarray  # (N,)
    df: float

    def simulate(self, draws: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Outcomes (log y) at the posterior draws ``draws`` (indices)."""
        return self.log_mu[draws] + self.scale[draws] * rng.standard_t(self.df, len(draws))

    def loglik(self, log_y: np.ndarray) -> np.ndarray:
        """(S, N): the log density of each outcome at every draw."""
        from scipy import stats

        return stats.t.logpdf(log_y[:, None], self.df, self.log_mu[None, :], self.scale[None, :])


@dataclass(frozen=True)
class Window:
    """The record of an exact time: a window of ±``tolerance`` hours around the truth."""

    times: np.ndarray  # (N,) the latent time at each draw
    tolerance: float

    def simulate(self, draws: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.times[draws]

    def loglik(self, recorded: np.ndarray) -> np.ndarray:
        inside = np.abs(self.times[None, :] - recorded[:, None]) <= self.tolerance
        return np.where(inside, 0.0, -np.inf)


def expected_width(
    target, error, outcomes: int = OUTCOMES, rng=None, prob: float = HDI_PROB
) -> dict[str, object]:
    """Expected HDI width of ``target`` (N draws) after one new measurement whose error model
    ``error`` (:class:`StudentT`, :class:`Window` or any object with ``simulate(draws, rng)``
    and ``loglik(outcomes)``) gives its outcomes and likelihood (module docstring, steps 1-4).

    Returns ``width`` (the mean over outcomes, on the scale of ``target``), ``widths`` (S,),
    ``ess`` (S,) and ``outcomes`` (the simulated values)."""
    rng = np.random.default_rng(rng)
    target = np.asarray(target, dtype=float)
    draws = rng.integers(0, len(target), outcomes)
    simulated = error.simulate(draws, rng)
    widths, ess = reweighted_widths(target, error.loglik(simulated), prob)
    return {"width": float(widths.mean()), "widths": widths, "ess": ess, "outcomes": simulated}


# --------------------------------------------------------------------------------------------
# the candidates of a case
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A measurement the case could have had.

    ``kind``: ``"level"`` (a plasma level at ``event``), ``"effluent"`` (the effluent total of
    session ``session``), ``"urine"`` (a urine collection over ``window``) or ``"time"`` (the
    exact time of the latent timing ``timing``). ``event``, ``window`` index the case's events
    and windows (:func:`~dialyzability.design.case_events`); ``session`` is 0-based.
    """

    label: str
    kind: str
    time: str
    event: int = -1
    window: int = -1
    session: int = -1
    timing: str = ""


def _span(t) -> str:
    return f"{t.lo:g} h" if not t.is_range else f"{t.lo:g}-{t.hi:g} h"


def _window_text(start, end) -> str:
    if not start.is_range and not end.is_range:
        return f"{start.lo:g}-{end.lo:g} h"
    return f"within {start.lo:g}-{end.hi:g} h"


def timing_label(timing, case) -> str:
    """What a clinician reads for a latent timing (a :class:`~dialyzability.design.Timing`):
    "exact start of HD session 1", "exact time of level 2", "exact duration of urine collection
    1", "exact time of level 3 after the end of HD session 2"."""
    words = event_words(timing.event, case)
    if timing.kind == "offset":
        return f"exact time of {words.removeprefix('the ')} after {event_words(timing.base, case)}"
    if timing.kind == "duration":
        return f"exact duration of {event_words(timing.base, case).removeprefix('the start of ')}"
    if words.startswith("the "):  # the start of HD session 1 -> exact start of HD session 1
        return "exact " + words.removeprefix("the ")
    return f"exact time of {words}"


def candidates(case) -> list[Candidate]:
    """Every measurement the case lacks (module docstring), in the order of the case."""
    events, _, index = case_events(case)
    where = {label: i for i, label in enumerate(events.labels)}
    out: list[Candidate] = []
    for j, s in enumerate(case.sessions):
        number = j + 1
        name = f"{s.modality} session {number}"
        for edge in ("start", "end"):
            e = where[f"{session_name(number)}_{edge}"]
            out.append(
                Candidate(f"level at the {edge} of {name}", "level", _span(events.times[e]), e)
            )
        span = _window_text(s.start_h, s.end)
        w = index["sessions"][j]
        if s.amount is None:
            out.append(
                Candidate(f"effluent total of {name}", "effluent", span, window=w, session=j)
            )
        out.append(Candidate(f"urine amount during {name}", "urine", span, window=w))
    for j, u in enumerate(case.urine):  # a collection without its amount (none in a valid case)
        if u.recovered is None:
            w = index["urine"][j]
            out.append(
                Candidate(
                    f"urine amount {urine_name(j + 1)}",
                    "urine",
                    _window_text(u.start_h, u.end),
                    window=w,
                )
            )
    described = events.timings()
    for name, (lo, hi) in events.latent().items():
        label = timing_label(described[name], case)
        out.append(Candidate(label, "time", f"{lo:g}-{hi:g} h", timing=name))
    return out


# --------------------------------------------------------------------------------------------
# the predictions of the candidates at every draw
# --------------------------------------------------------------------------------------------


def _flat(post, name) -> np.ndarray:
    values = post[name].values
    return values.reshape(-1, *values.shape[2:])


def predictions(view, chosen: list[Candidate]) -> dict[str, np.ndarray]:
    """Per candidate (by label) its prediction at every posterior draw: the level (mg/L), the
    amount (mg) or the latent time (h), in the flattened (chain, draw) order."""
    from dialyzability.results.predictive import solutions

    post = view.draws
    n = post.sizes["chain"] * post.sizes["draw"]
    out = {c.label: np.empty(n) for c in chosen if c.kind != "time"}
    cl_renal = _flat(post, "cl_renal")
    cl_ectr = _flat(post, "cl_ectr") if "cl_ectr" in post else np.zeros((n, 1))
    modalities = list(view.modalities)
    if out:
        for d, rows, sol in solutions(view):
            at = d.index[rows]
            for c in chosen:
                if c.kind == "level":
                    t = d.times[rows, c.event][:, None]
                    out[c.label][at] = sol.at(t)[:, 0]
                elif c.kind == "effluent":
                    m = modalities.index(view.case.sessions[c.session].modality)
                    out[c.label][at] = cl_ectr[at, m] * sol.auc[:, c.window]
                elif c.kind == "urine":
                    out[c.label][at] = cl_renal[at] * sol.auc[:, c.window]
    for c in chosen:
        if c.kind == "time":
            out[c.label] = view.timing(c.timing).values.reshape(-1)
    return out


def _residuals(view, kind: str) -> tuple[np.ndarray, int]:
    """Per draw the sum of squared log residuals of the case's quantified observations of
    ``kind``, and how many there are."""
    k = _KINDS[kind]
    post = view.draws
    n_draws = post.sizes["chain"] * post.sizes["draw"]
    obs = k.select(view.fit.batch)
    mine = obs.case == view.index
    q = ~obs.censored[mine]
    if not q.any() or k.prediction not in post:
        return np.zeros(n_draws), 0
    pred = _flat(post, k.prediction)[:, q]
    r = np.log(obs.value[mine][q])[None, :] - np.log(np.maximum(pred, 1e-300))
    return (r**2).sum(axis=1), int(q.sum())


def error_model(view, kind: str, predicted: np.ndarray) -> StudentT:
    """The Student-t predictive of a new observation of ``kind`` predicted at ``predicted``
    (module docstring), with the drug model's ``errors.<kind>`` prior and the case's residuals
    of that kind at each draw."""
    nu, scale = error_prior(view.drug.errors[_KINDS[kind].error])
    ss, n = _residuals(view, kind)
    return StudentT(
        log_mu=np.log(np.maximum(predicted, 1e-300)),
        scale=np.sqrt((nu * scale**2 + ss) / (nu + n)),
        df=nu + n,
    )


# --------------------------------------------------------------------------------------------
# the plan
# --------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """The ranked table of candidate measurements (:func:`plan`)."""

    case: str
    quantity: str
    prob: float
    draws: int
    outcomes: int
    tolerance: float
    min_ess: int
    current: float  # width of the HDI of log ratio, now
    rows: list[dict] = field(default_factory=list)

    @property
    def current_fold(self) -> float:
        return math.exp(self.current)

    def to_json(self) -> dict:
        return {
            "case": self.case,
            "quantity": self.quantity,
            "interval": f"{self.prob:.0%} HDI of log {self.quantity}; widths as fold ranges hi/lo",
            "current_fold": self.current_fold,
            "current_log_width": self.current,
            "draws": self.draws,
            "outcomes": self.outcomes,
            "tolerance_h": self.tolerance,
            "min_ess": self.min_ess,
            "rows": self.rows,
        }

    def table(self) -> str:
        """The rows as a text table, columns as wide as their widest entry."""
        head = ["#", "candidate measurement", "kind", "time", "predicted", "expected", "now"]
        head += ["narrowing"]
        head += ["ESS/N mean", "ESS/N min", "status"]
        body = []
        for i, r in enumerate(self.rows, 1):
            fold = "-" if r["width_fold"] is None else f"{r['width_fold']:.3g}x"
            narrow = "-" if r["narrowing"] is None else f"{r['narrowing']:.0%}"
            body.append(
                [
                    str(i),
                    r["label"],
                    r["kind"],
                    r["time"],
                    f"{r['predicted_median']:.3g} {r['unit']}",
                    fold,
                    f"{r['current_fold']:.3g}x",
                    narrow,
                    f"{r['ess_mean'] / self.draws:.3f}",
                    f"{r['ess_min'] / self.draws:.3f}",
                    r["status"],
                ]
            )
        widths = [max(len(row[j]) for row in [head, *body]) for j in range(len(head))]
        right = {0, 4, 5, 6, 7, 8, 9}

        def line(cells):
            return "  ".join(
                c.rjust(w) if j in right else c.ljust(w)
                for j, (c, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()

        title = (
            f"What would have settled it: case {self.case}, {self.prob:.0%} HDI of "
            f"{self.quantity} now {self.current_fold:.3g}-fold (hi/lo)"
        )
        rule = "-" * len(line(head))
        notes = (
            f"Expected fold range hi/lo of the {self.prob:.0%} HDI of log {self.quantity} had the "
            f"measurement been made: mean over {self.outcomes} simulated outcomes, posterior "
            f"reweighted ({self.draws} draws). Predicted: posterior median of the value. Exact "
            f"times to within +/-{self.tolerance:g} h. Refused when more than "
            f"{SHORT_SHARE:.0%} of the outcomes have fewer than {self.min_ess} effective draws."
        )
        return "\n".join([title, rule, line(head), rule, *map(line, body), rule, notes])


def plan(
    fit,
    outcomes: int = OUTCOMES,
    seed: int | None = 0,
    tolerance: float = TOLERANCE_H,
    min_ess: int = MIN_ESS,
    modality: str | None = None,
    extra: list[Candidate] | None = None,
    only: Callable[[Candidate], bool] | None = None,
    prob: float = HDI_PROB,
) -> Plan:
    """Rank the measurements a case lacks by the expected width of its ratio's interval.

    Parameters
    ----------
    fit
        A single-case :class:`~dialyzability.results.fit.Fit`, or one case of a fit
        (:meth:`Fit.view`).
    outcomes
        Outcomes S simulated per candidate.
    seed
        Seed of the outcomes (the same seed gives the same plan).
    tolerance
        Hours either side within which an exact time is recorded.
    min_ess
        Fewest effective draws of an outcome; an estimate is refused when more than
        :data:`SHORT_SHARE` of the outcomes fall short.
    modality
        The ratio of this modality (default: the case's first).
    extra
        Candidates added to those of :func:`candidates` (e.g. a repeat of a measurement).
    only
        Keep the candidates for which this is true.
    prob
        Probability of the interval.
    """
    view = fit.view(0) if isinstance(fit, Fit) else fit
    case = view.case
    if not view.modalities:
        raise ValueError(f"case {case.id} has no extracorporeal session: no ratio to plan for")
    modality = modality or view.modalities[0]
    ratio = next(q for q in REGISTRY if q.name == "ratio")
    target = np.log(np.asarray(ratio.compute(view.draws, modality)).reshape(-1))
    chosen = [*candidates(case), *(extra or [])]
    if only is not None:
        chosen = [c for c in chosen if only(c)]
    predicted = predictions(view, chosen)
    current = float(weighted_hdi_width(target, None, prob))
    rng = np.random.default_rng(seed)
    rows = []
    for c in chosen:
        if c.kind == "time":
            error = Window(predicted[c.label], tolerance)
        else:
            error = error_model(view, c.kind, predicted[c.label])
        got = expected_width(target, error, outcomes, rng, prob)
        ess = got["ess"]
        ok = bool(np.mean(ess < min_ess) <= SHORT_SHARE)
        width = got["width"] if ok else None
        rows.append(
            {
                "label": c.label,
                "kind": c.kind,
                "time": c.time,
                "width_fold": math.exp(width) if ok else None,
                "log_width": width,
                "current_fold": math.exp(current),
                "narrowing": 1.0 - width / current if ok else None,
                "ess_mean": float(ess.mean()),
                "ess_min": float(ess.min()),
                "status": "ok" if ok else TOO_FEW,
                "predicted_median": float(np.median(predicted[c.label])),
                "unit": _UNITS[c.kind],
                "ess_short": float(np.mean(ess < min_ess)),
            }
        )
    rows.sort(key=lambda r: (r["log_width"] is None, r["log_width"] or 0.0))
    return Plan(
        case=case.id,
        quantity=name_of("ratio", modality, view.modalities),
        prob=prob,
        draws=len(target),
        outcomes=outcomes,
        tolerance=tolerance,
        min_ess=min_ess,
        current=current,
        rows=rows,
    )
