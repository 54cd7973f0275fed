"""The :class:`Fit` of one case or many: posterior, cases, drug model, configuration.

A fit is read here, never built (that is :mod:`dialyzability.inference`). Every fit is checked
(max R-hat, min bulk ESS over every reported variable, number of divergences); one that fails
says so in its summary, its table and its ``summary.json``. ``Fit.save``/``Fit.load`` write and
read ``posterior.nc`` with the cases, the drug model, the priors, the configuration, the
population layer, the interval policy and the package version in its attributes, and refuse a
file whose attributes do not match their stored hash. A pooled fit is read case by case through
:meth:`Fit.view` (the same outputs as a single fit), and as a population through
:mod:`dialyzability.results.population`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from dialyzability.design import make_batch
from dialyzability.inference.gate import Diagnostics, diagnose
from dialyzability.io.case import Case, parse_case
from dialyzability.io.drugs import DrugModel
from dialyzability.io.files import write_whole
from dialyzability.results.quantities import (
    FLOWS_ML_MIN,
    HDI_PROB,
    compute_all,
    describe,
    expand,
    label,
    stored_quantities,
)


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


#: variables defined by the toxicity threshold (functions of the others, possibly constant over
#: draws): left out of the convergence gate
_THRESHOLD_VARIABLES = ("time_below_ectr", "time_below_no_ectr", "hours_saved")


@dataclass
class CaseView:
    """One case of a fit, read as a single-case fit: what the figures, the summary and the
    report of a case need. For a pooled fit its posterior is the case's, shrunk."""

    fit: Fit
    index: int

    @property
    def case(self) -> Case:
        return self.fit.cases[self.index]

    @property
    def drug(self) -> DrugModel:
        return self.fit.drug

    @property
    def config(self) -> dict:
        return self.fit.config

    @property
    def modalities(self) -> list[str]:
        return self.case.modalities

    @property
    def threshold(self) -> float | None:
        """Level (mg/L) below which the patient is taken to be out of toxicity, if known."""
        return self.fit.config.get("threshold")

    @cached_property
    def draws(self):
        """The case's posterior: per-case variables at this case, its own levels, collections
        and sessions (labels as in a single-case fit)."""
        return _case_slice(self.fit.idata.posterior, self.fit.batch, self.index)

    @cached_property
    def posterior(self):
        """:attr:`draws` with the kinetics-derived quantities (times below the threshold with
        and without ECTR) added, when the case has sessions and a threshold."""
        post = self.draws
        if self.case.sessions and self.threshold:
            from dialyzability.results.predictive import toxicity_draws

            extra = toxicity_draws(self, self.threshold)
            post = post.assign({k: (("chain", "draw"), v) for k, v in extra.items()})
        return post

    @cached_property
    def prior(self):
        """The case's prior draws (as :attr:`draws`)."""
        return _case_slice(self.fit.idata.prior, self.fit.batch, self.index)

    @cached_property
    def predictive(self):
        """The case's posterior-predictive draws of its observations."""
        return _case_slice(self.fit.idata.posterior_predictive, self.fit.batch, self.index)

    def quantities(self) -> dict[str, object]:
        """Posterior draws of every registered quantity (name → DataArray)."""
        return compute_all(self.posterior, self.modalities)

    def quantity_rows(self, hdi_prob: float = HDI_PROB, draws: dict | None = None) -> dict:
        """Every registered quantity as a summary row: label, unit, mean, median, SD, HDI, and
        for the ratio P(ratio > 1) (``draws``: :meth:`quantities`, when already computed)."""
        draws = self.quantities() if draws is None else draws
        rows = expand(self.modalities, set(self.posterior.data_vars))
        out = {}
        for (name, q, m), values in zip(rows, draws.values(), strict=True):
            row = {"label": label(q, m), "unit": q.unit, **describe(values, hdi_prob)}
            if q.name == "ratio":
                row["p_above_1"] = float((np.asarray(values) > 1).mean())
            out[name] = row
        return out

    def timing(self, name: str):
        """Draws of the case's latent timing ``name`` (as :meth:`Events.latent` names it)."""
        return self.draws["timing"].sel(latent_time=name)

    def latent_times(self) -> dict[str, object]:
        return {name: self.timing(name) for name in self.fit.batch.events[self.index].latent()}

    def diagnostics(self) -> Diagnostics:
        return self.fit.diagnostics()

    def summary(self, hdi_prob: float = HDI_PROB) -> Summary:
        """The table of every registered quantity and latent timing, with the fit's
        diagnostics.

        Parameters
        ----------
        hdi_prob
            Probability of the highest-density intervals (the policy :data:`HDI_PROB` unless
            asked otherwise).
        """
        from dialyzability.results.extrip import grade_probabilities
        from dialyzability.results.nca import classical_estimates

        draws = self.quantities()
        quantities = self.quantity_rows(hdi_prob, draws)
        timings = {}
        ranges = self.fit.batch.events[self.index].latent()
        for name, values in self.latent_times().items():
            lo, hi = ranges[name]
            what = name.removeprefix("t_").replace("_", " ")
            timings[name] = {
                "label": f"time of {what} (range {lo:g}-{hi:g} h)",
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


def _case_slice(ds, batch, i: int):
    """Case ``i`` of a posterior-like Dataset: the case dimension dropped, the case-wise
    dimensions (levels, collections, sessions, timings) cut to the case's own entries and
    labelled by their single-case names, the modalities cut to the case's."""
    if ds is None:
        return None
    out = ds.isel(case=i, drop=True) if "case" in ds.dims else ds
    if "modality" in out.dims:
        out = out.sel(modality=batch.cases[i].modalities)
    for dim in ("level", "urine", "effluent", "session", "latent_time"):
        if dim in out.dims:
            mine = np.flatnonzero(batch.case_of(dim) == i)
            labels = [str(x).split(":", 1)[-1] for x in out[dim].values[mine]]
            out = out.isel({dim: mine}).assign_coords({dim: labels})
    return out


@dataclass
class Fit:
    """A fit of N >= 1 cases of one drug: the InferenceData, the cases, the drug model, the
    sampling configuration and the population layer (``"fixed"``: each case under the drug
    model's prior; ``"hierarchical"``: pooled).

    A single-case fit reads like its one case (``fit.case``, ``fit.posterior``,
    ``fit.summary()``, ...); every fit reads case by case through :meth:`view`.
    """

    idata: object
    cases: list[Case]
    drug: DrugModel
    config: dict
    population: str = "fixed"
    _views: dict = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def batch(self):
        return make_batch(self.cases, self.drug)

    @property
    def single(self) -> bool:
        return len(self.cases) == 1

    def view(self, case: int | str = 0) -> CaseView:
        """Case ``case`` (index or id) read as a single-case fit (one view per case, so that
        what it computes, such as the times below the threshold, is computed once)."""
        if isinstance(case, str):
            case = [c.id for c in self.cases].index(case)
        if case not in self._views:
            self._views[case] = CaseView(self, case)
        return self._views[case]

    @cached_property
    def _only(self) -> CaseView:
        if not self.single:
            raise AttributeError("a fit of several cases: read one with fit.view(case)")
        return self.view(0)

    # a single-case fit reads like its case
    @property
    def case(self) -> Case:
        return self._only.case

    @property
    def modalities(self) -> list[str]:
        return self._only.modalities

    @property
    def threshold(self) -> float | None:
        return self.config.get("threshold")

    @property
    def posterior(self):
        return self._only.posterior

    @property
    def draws(self):
        return self._only.draws

    @property
    def predictive(self):
        return self._only.predictive

    def quantities(self) -> dict[str, object]:
        return self._only.quantities()

    def latent_times(self) -> dict[str, object]:
        return self._only.latent_times()

    def timing(self, name: str):
        return self._only.timing(name)

    def summary(self, hdi_prob: float = HDI_PROB) -> Summary:
        return self._only.summary(hdi_prob)

    def diagnostics(self) -> Diagnostics:
        return diagnose(self.idata.posterior, self.idata.sample_stats, _THRESHOLD_VARIABLES)

    @classmethod
    def from_run(cls, idata, cases, drug, config, population, attrs: dict) -> Fit:
        """A new fit's Fit: the registry's quantities stored beside the parameters (in
        ``posterior`` and ``prior``), the provenance in the attributes."""
        for group in ("posterior", "prior"):
            ds = getattr(idata, group)
            setattr(idata, group, ds.assign(stored_quantities(ds)))
        attrs = {
            **attrs,
            "hdi_prob": HDI_PROB,
            "cases": json.dumps([c.raw for c in cases], default=str),
            "case_sources": json.dumps([c.source for c in cases]),
            "drug_model": drug.model_dump_json(),
            "priors": json.dumps(drug.prior_table()),
            "config": json.dumps(config),
            "population": population,
        }
        attrs["config_hash"] = _digest(attrs)
        idata.attrs.update(attrs)
        return cls(idata, list(cases), drug, config, population)

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
        sources = json.loads(attrs["case_sources"])
        cases = [
            parse_case(raw, source)
            for raw, source in zip(json.loads(attrs["cases"]), sources, strict=True)
        ]
        return cls(idata, cases, drug, json.loads(attrs["config"]), attrs["population"])
