"""Sampling, the convergence gate, and the :class:`Fit` object (posterior + case + config).

:func:`fit` builds the case's model, samples it with the chosen NUTS backend, and returns a
:class:`Fit`. Every fit is checked (max R-hat, min bulk ESS over the reported quantities and
timings, number of divergences); one that fails says so in its summary, its table and its
``summary.json``. ``Fit.save``/``Fit.load`` write and read ``posterior.nc`` with the case, the drug
model, the priors, the configuration, the interval policy and the package version in its
attributes, and refuse a file whose attributes do not match their stored hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from dialyzability import __version__
from dialyzability.io.case import Case, parse_case
from dialyzability.io.drugs import DrugModel, load_drug
from dialyzability.inference.gate import Diagnostics
from dialyzability.io.files import write_whole
from dialyzability.results.quantities import FLOWS_ML_MIN, HDI_PROB, compute_all, describe, expand, label

@dataclass(frozen=True)
class Summary:
    """What a fit says, as one table of numbers (JSON contract of DESIGN §7)."""

    case: str
    drug: str
    hdi_prob: float
    quantities: dict[str, dict]
    timings: dict[str, dict]
    diagnostics: Diagnostics
    classical: dict[str, dict]
    extrip: dict = field(default_factory=dict)
    threshold: float | None = None

    def to_json(self) -> dict:
        return {
            "case": self.case,
            "drug": self.drug,
            "hdi_prob": self.hdi_prob,
            "quantities": self.quantities,
            "timings": self.timings,
            "diagnostics": self.diagnostics.to_json(),
            "classical": self.classical,
            "extrip": self.extrip,
            "threshold_mg_per_L": self.threshold,
        }

    def to_csv(self) -> str:
        lines = ["name,label,unit,mean,median,sd,hdi_low,hdi_high"]
        for name, q in {**self.quantities, **self.timings}.items():
            text = q["label"].replace('"', "'")
            lines.append(
                f'{name},"{text}",{q["unit"]},{q["mean"]:.6g},{q["median"]:.6g},{q["sd"]:.6g},'
                f"{q['hdi'][0]:.6g},{q['hdi'][1]:.6g}"
            )
        return "\n".join(lines) + "\n"

    def table(self) -> str:
        pct = f"{self.hdi_prob:.0%}"
        head = f"{'quantity':<12} {'':<44} {'median':>9}  {pct + ' HDI':<21} unit"
        lines = [f"Case {self.case} ({self.drug})", head, "-" * len(head)]
        for name, q in {**self.quantities, **self.timings}.items():
            lo, hi = q["hdi"]
            lines.append(
                f"{name:<12} {q['label'][:44]:<44} {q['median']:>9.4g}  "
                f"{f'[{lo:.4g}, {hi:.4g}]':<21} {q['unit']}"
            )
            if q["unit"] == "L/h":
                f = FLOWS_ML_MIN
                lines.append(
                    f"{'':<12} {'':<44} {q['median'] * f:>9.4g}  "
                    f"{f'[{lo * f:.4g}, {hi * f:.4g}]':<21} mL/min"
                )
            if "p_above_1" in q:
                lines.append(f"{'':<12} {'P(' + name + ' > 1)':<44} {q['p_above_1']:>9.3f}")
        lines.append("")
        lines.append("Diagnostics: " + self.diagnostics.sentence())
        if not self.diagnostics.converged:
            lines.append(
                "WARNING: the sampler did not converge; do not use these numbers. Run longer "
                "(--draws, --tune) or check the case's data and ranges."
            )
        return "\n".join(lines)


def _digest(attrs: dict) -> str:
    text = json.dumps({k: attrs[k] for k in sorted(attrs) if k != "config_hash"}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Fit:
    """A fitted case: the posterior (ArviZ InferenceData), the case, the drug model, the config."""

    idata: object
    case: Case
    drug: DrugModel
    config: dict

    @property
    def modalities(self) -> list[str]:
        return self.case.modalities

    @property
    def threshold(self) -> float | None:
        """Level (mg/L) below which the patient is taken to be out of toxicity, if known."""
        return self.config.get("threshold")

    @cached_property
    def posterior(self):
        """The posterior with the draws of the kinetics-derived quantities (times below the
        threshold with and without ECTR) added, when the case has sessions and a threshold."""
        post = self.idata.posterior
        if self.case.sessions and self.threshold:
            from dialyzability.results.predictive import toxicity_draws

            extra = toxicity_draws(self, self.threshold)
            post = post.assign({k: (("chain", "draw"), v) for k, v in extra.items()})
        return post

    def quantities(self) -> dict[str, object]:
        """Posterior draws of every registered quantity (name → DataArray)."""
        return compute_all(self.posterior, self.modalities)

    def latent_times(self) -> dict[str, object]:
        post = self.idata.posterior
        names = json.loads(self.idata.attrs.get("latent_times", "{}"))
        return {name: post[name] for name in names}

    def diagnostics(self) -> Diagnostics:
        import arviz as az
        import xarray as xr

        # quantities that the threshold defines (times below it) are functions of the others
        # and may be constant over draws; they are left out of the gate
        skip = {"time_below_ectr", "time_below_no_ectr", "hours_saved"}
        q = {k: v for k, v in self.quantities().items() if k not in skip}
        ds = xr.Dataset({**q, **self.latent_times()})
        rhat = az.rhat(ds)
        ess = az.ess(ds, method="bulk")
        r = {k: float(rhat[k]) for k in ds.data_vars if np.isfinite(float(rhat[k]))}
        e = {k: float(ess[k]) for k in ds.data_vars if np.isfinite(float(ess[k]))}
        worst = max(r, key=lambda k: r[k])
        divergences = int(self.idata.sample_stats["diverging"].sum())
        return Diagnostics(max(r.values()), min(e.values()), divergences, worst)

    def summary(self, hdi_prob: float = HDI_PROB) -> Summary:
        """The table of every registered quantity and latent timing, with diagnostics.

        Parameters
        ----------
        hdi_prob
            Probability of the highest-density intervals (the policy :data:`HDI_PROB` unless
            asked otherwise).
        """
        from dialyzability.results.extrip import grade_probabilities
        from dialyzability.results.nca import classical_estimates

        quantities = {}
        draws = self.quantities()
        rows = expand(self.modalities, set(self.posterior.data_vars))
        for (name, q, m), values in zip(rows, draws.values(), strict=True):
            row = {"label": label(q, m), "unit": q.unit, **describe(values, hdi_prob)}
            if q.name == "ratio":
                row["p_above_1"] = float((np.asarray(values) > 1).mean())
            quantities[name] = row
        timings = {}
        ranges = json.loads(self.idata.attrs.get("latent_times", "{}"))
        for name, values in self.latent_times().items():
            lo, hi = ranges.get(name, [None, None])
            what = name.removeprefix("t_").replace("_", " ")
            timings[name] = {
                "label": f"time of {what} (range {lo:g}-{hi:g} h)"
                if lo is not None
                else f"time of {what}",
                "unit": "h",
                **describe(values, hdi_prob),
            }
        return Summary(
            case=self.case.id,
            drug=self.drug.name,
            hdi_prob=hdi_prob,
            quantities=quantities,
            timings=timings,
            diagnostics=self.diagnostics(),
            classical={e.name: e.to_json() for e in classical_estimates(self.case)},
            extrip=grade_probabilities(draws, self.modalities),
            threshold=self.threshold,
        )

    def save(self, directory: str | Path) -> Path:
        """Write ``posterior.nc`` (whole or not at all) into ``directory``; returns its path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        return write_whole(directory / "posterior.nc", self.idata.to_netcdf)

    @classmethod
    def load(cls, directory: str | Path) -> Fit:
        """Read a fit written by :meth:`save`; refuses a file whose provenance does not match."""
        import arviz as az

        path = Path(directory)
        path = path / "posterior.nc" if path.is_dir() else path
        idata = az.from_netcdf(path)
        attrs = dict(idata.attrs)
        if attrs.get("config_hash") != _digest(attrs):
            raise ValueError(
                f"{path}: its attributes do not match their hash (altered, or not a fit)"
            )
        drug = DrugModel.model_validate_json(attrs["drug_model"])
        case = parse_case(json.loads(attrs["case"]), attrs.get("case_source", str(path)))
        return cls(idata, case, drug, json.loads(attrs["config"]))


