"""Which fit do the data prefer: fits of the same observations compared by PSIS-LOO.

:func:`compare_fits` takes fits of one case (or one set of cases) with the same observations,
made under different structures (drug models, priors, population layers, ...), and ranks them
by their expected log pointwise predictive density (elpd) estimated by Pareto-smoothed
importance-sampling leave-one-out cross-validation (Vehtari A, Gelman A, Gabry J. Stat Comput
2017;27:1413-1432), with ArviZ's ``az.loo`` and ``az.compare`` (stacking weights, Yao Y et al.
Bayesian Anal 2018;13:917-1007).

Every observation counts: the saved posterior holds one log-likelihood variable per kind of
observation (levels, urine amounts, effluent amounts and samples); they are laid end to end
into one variable ``obs`` along the dimension ``observation``, labelled ``variable[label]``
(e.g. ``concentration[level3]``). The values are the leave-one-out conditionals
log p(y_i | y_−i, θ) of the non-factorised error model
(:mod:`dialyzability.model.observations`; Bürkner PC, Gabry J, Vehtari A. Comput Stat
2021;36:1243-1261), which are what PSIS-LOO needs for a model whose observations are not
independent given the parameters.

The verdict (:attr:`CompareResult.sentence`) reads the best fit's elpd difference to the next
best against its standard error: the data prefer the best fit when the difference is more than
:data:`SE_THRESHOLD` standard errors, else no structure is preferred. An observation whose
Pareto k exceeds :data:`PARETO_K_BAD` makes the estimate unreliable for it (its leave-one-out
density would need a refit without it); the sentence names them.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass

import numpy as np

from dialyzability.design import LOG_LIKELIHOOD

#: the best fit is preferred when its elpd exceeds the next best's by more than this many SE
SE_THRESHOLD = 2.0
#: an elpd difference below this is called small in the sentence, whatever its SE: with few
#: observations or similar models the SE is unreliable (Sivula T, Magnusson M, Vehtari A.
#: Uncertainty in Bayesian leave-one-out cross-validation based model comparison.
#: arXiv:2008.10296, 2020)
SMALL_DIFFERENCE = 4.0
#: Pareto k above which PSIS-LOO is unreliable for an observation (Vehtari et al. 2017)
PARETO_K_BAD = 0.7
#: Pareto k above which it is counted as doubtful (slower convergence of the estimate)
PARETO_K_WARN = 0.5
#: name and dimension of the one pointwise variable that the comparison reads
VARIABLE, DIMENSION = "obs", "observation"


class CompareError(ValueError):
    """Fits that cannot be compared (different cases or observations, no log-likelihood)."""


def pointwise(idata):
    """An InferenceData with one log-likelihood variable ``obs``: every
    variable of ``log_likelihood`` laid end to end along ``observation`` (labels
    ``variable[label]``), so that the elpd covers every observation."""
    import itertools

    import arviz as az
    import xarray as xr

    values, labels = [], []
    for name, da in idata.log_likelihood.data_vars.items():
        da = da.transpose("chain", "draw", ...)
        dims = da.dims[2:]
        values.append(da.values.reshape(*da.shape[:2], -1))
        coords = [
            [str(x) for x in da[d].values] if d in da.coords else range(da.sizes[d]) for d in dims
        ]
        labels += [
            f"{name}[{', '.join(map(str, ix))}]" if dims else name
            for ix in itertools.product(*coords)
        ]
    combined = xr.DataArray(
        np.concatenate(values, axis=-1),
        dims=("chain", "draw", DIMENSION),
        coords={
            "chain": idata.log_likelihood.chain.values,
            "draw": idata.log_likelihood.draw.values,
            DIMENSION: labels,
        },
    )
    return az.InferenceData(log_likelihood=xr.Dataset({VARIABLE: combined}))


def relative_eff(idata) -> float:
    """Relative efficiency of the posterior draws for PSIS, as ``az.loo`` computes it (mean
    ESS over the posterior's variables / number of draws; 1 for one chain), over the finite
    ESS values only: a variable with a NaN draw does not make it NaN."""
    import arviz as az

    if "posterior" not in idata.groups() or idata.posterior.sizes.get("chain", 1) == 1:
        return 1.0
    post = idata.posterior
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        ess = az.ess(post, method="mean")
    values = np.hstack([ess[v].values.ravel() for v in ess.data_vars] or [np.array([])])
    values = values[np.isfinite(values)]
    n = post.sizes["chain"] * post.sizes["draw"]
    return float(values.mean() / n) if values.size else 1.0


def _case_ids(idata) -> list[str] | None:
    text = idata.attrs.get("cases") if hasattr(idata, "attrs") else None
    if not text:
        return None
    try:
        return [str(raw.get("id")) for raw in json.loads(text)]
    except (TypeError, ValueError, AttributeError):
        return None


def _observations(idata) -> dict:
    """What a fit was fitted to: observed values and labels per variable, the censoring flags."""
    out = {}
    observed = idata.observed_data if "observed_data" in idata.groups() else None
    if observed is None:
        return out
    for name, da in observed.data_vars.items():
        out[name] = {
            "dims": tuple(da.dims),
            "labels": {d: [str(x) for x in da[d].values] for d in da.dims if d in da.coords},
            "values": np.asarray(da.values),
        }
    if "constant_data" in idata.groups() and "level_below_lloq" in idata.constant_data:
        out["level_below_lloq"] = {
            "dims": ("level",),
            "labels": {},
            "values": np.asarray(idata.constant_data["level_below_lloq"].values),
        }
    return out


def _difference(a: dict, b: dict) -> str | None:
    """How the observations of two fits differ (None: they are the same)."""
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"only the first has {', '.join(only_a)}")
        if only_b:
            parts.append(f"only the second has {', '.join(only_b)}")
        return "; ".join(parts)
    for name in a:
        x, y = a[name], b[name]
        if x["dims"] != y["dims"] or x["values"].shape != y["values"].shape:
            return f"{name}: {x['values'].size} observations against {y['values'].size}"
        for dim in x["labels"]:
            if x["labels"][dim] != y["labels"].get(dim):
                return (
                    f"{name}: labels {', '.join(x['labels'][dim])} against "
                    f"{', '.join(y['labels'].get(dim, []))}"
                )
        vx, vy = x["values"].ravel(), y["values"].ravel()
        same = vx == vy
        if vx.dtype.kind == "f":
            same |= np.isnan(vx) & np.isnan(vy)
        if not same.all():
            i = int(np.flatnonzero(~same)[0])
            labels = next(iter(x["labels"].values()), None)
            where = f" at {labels[i]}" if labels and len(labels) == vx.size else ""
            return f"{name}{where}: {vx[i]:g} against {vy[i]:g}"
    return None


def check_same_observations(fits: dict) -> None:
    """Raise :class:`CompareError` unless every fit is of the same case(s) with the same
    observations (observed values and labels, censoring flags) and has a log-likelihood."""
    if len(fits) < 2:
        raise CompareError(f"compare at least 2 fits, got {len(fits)}")
    names = list(fits)
    for name in names:
        if "log_likelihood" not in fits[name].groups():
            raise CompareError(f"fit {name} has no log_likelihood group")
        if fits[name].log_likelihood.attrs.get("pointwise") != LOG_LIKELIHOOD:
            raise CompareError(
                f"fit {name} was saved before its log-likelihood was the leave-one-out one "
                "that PSIS-LOO needs: fit it again to compare it"
            )
    first = names[0]
    ids, observations = _case_ids(fits[first]), _observations(fits[first])
    for name in names[1:]:
        other = _case_ids(fits[name])
        if ids is not None and other is not None and ids != other:
            raise CompareError(
                f"fits {first} and {name} are of different cases "
                f"({', '.join(ids)} against {', '.join(other)})"
            )
        why = _difference(observations, _observations(fits[name]))
        if why:
            raise CompareError(f"fits {first} and {name} have different observations: {why}")


@dataclass(frozen=True)
class CompareResult:
    """az.compare's table (``frame``: rank, elpd_loo, p_loo, elpd_diff, weight, se, dse,
    warning, scale; one row per fit, best first), the Pareto k counts of each fit and the
    sentence read from them."""

    frame: object  # pandas.DataFrame
    pareto: dict[str, dict]
    sentence: str
    method: str = "stacking"

    @property
    def names(self) -> list[str]:
        """The fits, best first."""
        return [str(x) for x in self.frame.index]

    @property
    def preferred(self) -> str | None:
        """The fit the data prefer (None when the difference is within the threshold)."""
        return _preferred(self.frame)

    def rows(self) -> list[dict]:
        out = []
        for name, row in self.frame.iterrows():
            p = self.pareto[name]
            out.append(
                {
                    "name": str(name),
                    "rank": int(row["rank"]),
                    "elpd_loo": float(row["elpd_loo"]),
                    "se": float(row["se"]),
                    "p_loo": float(row["p_loo"]),
                    "elpd_diff": float(row["elpd_diff"]),
                    "dse": float(row["dse"]),
                    "weight": float(row["weight"]),
                    "warning": bool(row["warning"]),
                    "n_observations": p["n_observations"],
                    "pareto_k_above_0_5": p["above_warn"],
                    "pareto_k_above_0_7": p["above_bad"],
                    "unreliable": list(p["unreliable"]),
                }
            )
        return out

    def to_json(self) -> dict:
        return {
            "sentence": self.sentence,
            "preferred": self.preferred,
            "ic": "loo",
            "method": self.method,
            "se_threshold": SE_THRESHOLD,
            "pareto_k_thresholds": [PARETO_K_WARN, PARETO_K_BAD],
            "fits": self.rows(),
        }

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        return cells(self.rows())

    def table(self) -> str:
        """The console table (rich, as the fit's summary table) and the sentence."""
        from rich import box
        from rich.console import Console
        from rich.table import Table

        head, body = self._cells()
        table = Table(box=box.SIMPLE_HEAD, title=f"PSIS-LOO comparison ({self.method} weights)")
        for name in head:
            justify = "left" if name in ("fit", "warning") else "right"
            table.add_column(name, justify=justify, overflow="fold")
        for row in body:
            table.add_row(*row)
        console = Console(file=io.StringIO(), width=200, color_system=None, highlight=False)
        with console.capture() as capture:
            console.print(table)
        text = "\n".join(line.rstrip() for line in capture.get().rstrip().splitlines())
        return f"{text}\n\n{self.sentence}"

    def to_markdown(self) -> str:
        """The table and the sentence for a report (Markdown)."""
        head, body = self._cells()
        right = [name not in ("fit", "warning") for name in head]
        lines = ["| " + " | ".join(head) + " |"]
        lines.append("|" + "".join("---:|" if r else "---|" for r in right))
        lines += ["| " + " | ".join(c or " " for c in row) + " |" for row in body]
        return "\n".join(lines) + f"\n\n{self.sentence}\n"


def cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and body of the comparison table from :meth:`CompareResult.rows` (or the
    ``fits`` of its JSON, as a saved fit records it)."""
    head = ["rank", "fit", "elpd_loo", "SE", "p_loo", "elpd_diff", "dSE", "weight"]
    head += [f"k > {PARETO_K_WARN}", f"k > {PARETO_K_BAD}", "warning"]
    body = [
        [
            str(r["rank"]),
            r["name"],
            f"{r['elpd_loo']:.1f}",
            f"{r['se']:.1f}",
            f"{r['p_loo']:.1f}",
            f"{r['elpd_diff']:.1f}",
            f"{r['dse']:.1f}",
            f"{r['weight']:.2f}",
            f"{r['pareto_k_above_0_5']}/{r['n_observations']}",
            f"{r['pareto_k_above_0_7']}/{r['n_observations']}",
            "yes" if r["warning"] else "",
        ]
        for r in rows
    ]
    return head, body


def _preferred(frame) -> str | None:
    second = frame.iloc[1]
    diff, dse = float(second["elpd_diff"]), float(second["dse"])
    return str(frame.index[0]) if diff > 0 and diff > SE_THRESHOLD * dse else None


def _num(x: float) -> str:
    """One decimal, or two significant digits for a number below 0.05 (an SE of 0.01 is not
    written 0.0)."""
    return f"{x:.2g}" if 0 < abs(x) < 0.05 else f"{x:.1f}"


def sentence(frame, pareto: dict[str, dict]) -> str:
    """What the table says: the preferred fit with its elpd difference to the next best and
    its SE, or that none is preferred; then the observations with Pareto k > 0.7, if any."""
    best, next_best = str(frame.index[0]), str(frame.index[1])
    diff, dse = float(frame.iloc[1]["elpd_diff"]), float(frame.iloc[1]["dse"])
    n = next(iter(pareto.values()))["n_observations"] if pareto else 0
    if _preferred(frame) is not None:
        ratio = f", {diff / dse:.1f} SE" if dse > 0 else ""
        text = (
            f"The data prefer {best}: elpd difference {_num(diff)} (SE {_num(dse)}) over "
            f"{next_best}{ratio}, from {n} observations."
        )
        if diff < SMALL_DIFFERENCE:
            text += (
                f" A difference below {SMALL_DIFFERENCE:g} is small, and its SE is itself "
                "uncertain with few observations (Sivula T, Magnusson M, Vehtari A, "
                "arXiv:2008.10296): a preference, not a proof."
            )
    else:
        text = (
            f"No structure is preferred: the elpd difference {_num(diff)} between {best} and "
            f"{next_best} is within {SE_THRESHOLD:g} SE (SE {_num(dse)})."
        )
    bad = {name: p["unreliable"] for name, p in pareto.items() if p["unreliable"]}
    if bad:
        listed = "; ".join(f"{name}: {', '.join(obs)}" for name, obs in bad.items())
        text += (
            f" The comparison is unreliable for the observations with Pareto k > "
            f"{PARETO_K_BAD:g} ({listed}): their leave-one-out densities would need refits "
            "without them."
        )
    return text


def compare_fits(fits: dict, method: str = "stacking") -> CompareResult:
    """Rank fits of the same observations by PSIS-LOO (module docstring).

    Parameters
    ----------
    fits
        Name → InferenceData with a ``log_likelihood`` group (a saved fit's ``idata``), at
        least two, all of the same case(s) with the same observations.
    method
        az.compare's weights: ``"stacking"`` (its default), ``"BB-pseudo-BMA"`` or
        ``"pseudo-BMA"``.

    Raises
    ------
    CompareError
        Fewer than two fits, or fits of different cases or observations (the message names
        the two fits and what differs).
    """
    import arviz as az

    check_same_observations(fits)
    loos, pareto = {}, {}
    for name, idata in fits.items():
        with warnings.catch_warnings():  # the Pareto k are reported by the result itself
            warnings.simplefilter("ignore", UserWarning)
            loo = az.loo(
                pointwise(idata), pointwise=True, var_name=VARIABLE, reff=relative_eff(idata)
            )
        k = np.asarray(loo.pareto_k.values)
        labels = [str(x) for x in loo.pareto_k[DIMENSION].values]
        loos[name] = loo
        pareto[name] = {
            "n_observations": int(k.size),
            "above_warn": int((k > PARETO_K_WARN).sum()),
            "above_bad": int((k > PARETO_K_BAD).sum()),
            "unreliable": tuple(lab for lab, x in zip(labels, k, strict=True) if x > PARETO_K_BAD),
            "pareto_k": dict(zip(labels, k.tolist(), strict=True)),
        }
    with warnings.catch_warnings():  # the same warnings, and ArviZ's own deprecated calls
        warnings.simplefilter("ignore")
        frame = az.compare(loos, ic="loo", method=method)
    return CompareResult(frame, pareto, sentence(frame, pareto), method)
