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
import io
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
from dialyzability.pk.structure import Structure
from dialyzability.results.quantities import (
    FLOWS_ML_MIN,
    HDI_PROB,
    compute_all,
    describe,
    expand,
    format_p,
    label,
    name_of,
    probability_above,
    rounded,
    stored_quantities,
)


@dataclass(frozen=True)
class Summary:
    """What a fit says, as one table of numbers (JSON contract of DESIGN §7), its verdict and
    flags generated from the same rows (:mod:`~dialyzability.results.interpret`)."""

    case: str
    drug: str
    hdi_prob: float
    quantities: dict[str, dict]
    timings: dict[str, dict]
    diagnostics: Diagnostics
    classical: dict[str, dict]
    extrip: dict = field(default_factory=dict)
    threshold: float | None = None
    verdict: tuple[str, ...] = ()
    flags: tuple[dict, ...] = ()
    windows: tuple[dict, ...] = ()
    #: the structural model: its name and what the report calls it
    structure: dict = field(default_factory=dict)
    #: the comparison by PSIS-LOO with the fits of other structures (``fit --structure both``)
    comparison: dict | None = None
    #: per session: levels at its end and 2 h later (the rebound), amounts left per compartment
    sessions: tuple[dict, ...] = ()

    def to_json(self) -> dict:
        return {
            "verdict": " ".join(self.verdict),
            "converged": self.diagnostics.converged,
            "case": self.case,
            "drug": self.drug,
            "structure": self.structure,
            "comparison": self.comparison,
            "hdi_prob": self.hdi_prob,
            "flags": list(self.flags),
            "quantities": self.quantities,
            "timings": self.timings,
            "windows": list(self.windows),
            "sessions": list(self.sessions),
            "diagnostics": self.diagnostics.to_json(),
            "classical": self.classical,
            "extrip": self.extrip,
            "threshold_mg_per_L": self.threshold,
        }

    def rows(self) -> dict[str, dict]:
        """The quantities and the latent timings, in table order."""
        return {**self.quantities, **self.timings}

    def to_csv(self) -> str:
        """The rows as CSV (csv module: labels quoted as needed)."""
        import csv

        columns = [
            "name", "label", "unit", "interval", "mean", "median", "sd", "hdi_low", "hdi_high",
            "mcse_median", "prior_median", "prior_low", "prior_high", "width_ratio",
            "p_above_1", "p_above_1_mcse", "converged",
        ]  # fmt: skip
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for name, q in self.rows().items():
            prior = q.get("prior") or {}
            plo, phi = prior.get("hdi", [None, None])
            writer.writerow(
                [
                    name, q["label"], q["unit"], q.get("interval", ""), _g(q["mean"]),
                    _g(q["median"]), _g(q["sd"]), _g(q["hdi"][0]), _g(q["hdi"][1]),
                    _g(q.get("mcse", {}).get("median")), _g(prior.get("median")), _g(plo),
                    _g(phi), _g(q.get("width_ratio")), _g(q.get("p_above_1")),
                    _g(q.get("p_above_1_mcse")), self.diagnostics.converged,
                ]
            )  # fmt: skip
        return buffer.getvalue()

    def table(self) -> str:
        """The console table: verdict first, flags, the quantities with their priors, the
        windows, the diagnostics; column widths computed (rich), no label cut."""
        from rich import box
        from rich.console import Console
        from rich.table import Table

        from dialyzability.results.interpret import PRIOR_DOMINATED

        pct = f"{self.hdi_prob:.0%}"
        table = Table(box=box.SIMPLE_HEAD, title=f"Case {self.case} ({self.drug})")
        for name, justify in (
            ("quantity", "left"), ("meaning", "left"), ("median", "right"),
            (f"{pct} interval", "right"), ("unit", "left"), ("prior median", "right"),
            (f"prior {pct}", "right"), ("data narrowed to", "right"),
        ):  # fmt: skip
            table.add_column(name, justify=justify, overflow="fold")
        for name, q in self.rows().items():
            mc = q.get("mcse", {})
            prior = q.get("prior")
            table.add_row(
                name,
                q["label"],
                rounded(q["median"], mc.get("median")),
                interval_text(q),
                q["unit"],
                rounded(prior["median"]) if prior else "",
                interval_text(prior) if prior else "",
                f"{q['width_ratio']:.0%}" if q.get("width_ratio") is not None else "",
            )
            if q["unit"] == "L/h":
                f = FLOWS_ML_MIN
                scaled = {**q, "hdi": [x * f for x in q["hdi"]], "mcse": _scaled(mc, f)}
                table.add_row(
                    "",
                    "",
                    rounded(q["median"] * f, _scaled(mc, f).get("median")),
                    interval_text(scaled),
                    "mL/min",
                )
            if "p_above_1" in q:
                table.add_row("", f"P({name} > 1)", format_p(q), "", "")
        console = Console(file=io.StringIO(), width=200, color_system=None, highlight=False)
        lines = []
        if not self.diagnostics.converged:
            lines.append(
                "NOT CONVERGED: the sampler did not converge; do not use these numbers. Run "
                "longer (--draws, --tune) or check the case's data and ranges."
            )
        lines += list(self.verdict)
        if self.structure:
            lines.append(f"Structural model: {self.structure['label']}.")
        if self.comparison:
            lines.append(self.comparison["sentence"])
        if self.flags:
            lines.append("Flags:")
            lines += [f"  - {f['message']}" for f in self.flags]
        with console.capture() as capture:
            console.print(table)
            if self.windows:
                console.print(windows_table(self.windows, self.hdi_prob))
        lines.append("\n".join(line.rstrip() for line in capture.get().rstrip().splitlines()))
        dominated = [name for name, q in self.quantities.items() if q.get("prior_dominated")]
        if dominated:
            lines.append(
                f"Prior-dominated (posterior interval >= {PRIOR_DOMINATED:.0%} of the prior's "
                "width): " + ", ".join(dominated)
            )
        lines.append("")
        lines.append("Diagnostics: " + self.diagnostics.sentence())
        return "\n".join(lines)


def _g(x) -> str:
    return "" if x is None else f"{x:.6g}"


def _scaled(mcse: dict, factor: float) -> dict:
    if not mcse or mcse.get("median") is None:
        return {}
    return {"median": mcse["median"] * factor, "hdi": [x * factor for x in mcse["hdi"]]}


def interval_text(q: dict) -> str:
    """``low–high`` of a row, each end to the precision of its MCSE."""
    lo, hi = q["hdi"]
    mc = (q.get("mcse") or {}).get("hdi") or [None, None]
    return f"{rounded(lo, mc[0])}–{rounded(hi, mc[1])}"


def windows_table(windows, hdi_prob: float):
    """Rich table of the amounts per urine collection and session: collected against modelled."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, title="Amounts per window: collected against modelled")
    table.add_column("window")
    table.add_column("collected (mg)", justify="right")
    table.add_column("modelled median (mg)", justify="right")
    table.add_column(f"modelled {hdi_prob:.0%} (mg)", justify="right")
    for w in windows:
        m = w["modelled_mg"]
        collected = "not measured" if w["collected_mg"] is None else f"{w['collected_mg']:.4g}"
        table.add_row(
            w["label"], collected, rounded(m["median"], m["mcse"]["median"]), interval_text(m)
        )
    return table


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
    def structure(self) -> Structure:
        return self.fit.structure

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

    @cached_property
    def observed(self):
        """The case's observed data (levels, urine and effluent amounts), labelled as in a
        single-case fit."""
        return _case_slice(
            getattr(self.fit.idata, "observed_data", None), self.fit.batch, self.index
        )

    def censored(self, dim: str) -> np.ndarray:
        """Per observation of ``dim`` (a kind of :data:`~dialyzability.design.OBSERVATIONS`):
        below the LLOQ (levels only)."""
        n = len(self.predictive[dim]) if dim in self.predictive.dims else 0
        if dim != "level" or "level_below_lloq" not in self.fit.idata.constant_data:
            return np.zeros(n, dtype=bool)
        flags = self.fit.idata.constant_data["level_below_lloq"].values
        return flags[self.fit.batch.case_of("level") == self.index]

    def prior_quantities(self) -> dict[str, object]:
        """Prior draws of every registered quantity the prior group holds the inputs of."""
        return compute_all(self.prior, self.modalities) if self.prior is not None else {}

    def quantity_rows(self, hdi_prob: float = HDI_PROB, draws: dict | None = None) -> dict:
        """Every registered quantity as a summary row: label, unit, mean, median, SD, the
        interval of the policy (:mod:`~dialyzability.results.quantities`) with the Monte Carlo
        errors, the prior's median and interval beside it with the ratio of their widths, and
        for the ratio P(ratio > 1) with its MCSE (``draws``: :meth:`quantities`, when already
        computed)."""
        from dialyzability.results.interpret import PRIOR_DOMINATED, width_ratio

        draws = self.quantities() if draws is None else draws
        prior = self.prior_quantities()
        rows = expand(self.modalities, set(self.posterior.data_vars))
        out = {}
        for (name, q, m), values in zip(rows, draws.values(), strict=True):
            row = {
                "label": label(q, m),
                "unit": q.unit,
                "scale": q.scale,
                **describe(values, hdi_prob, q.scale),
            }
            if name in prior:
                before = describe(prior[name], hdi_prob, q.scale)
                row["prior"] = {k: before[k] for k in ("median", "hdi", "interval")}
                row["width_ratio"] = width_ratio(row, before, q.scale)
                row["prior_dominated"] = (
                    row["width_ratio"] is not None and row["width_ratio"] >= PRIOR_DOMINATED
                )
            if q.name == "ratio":
                above = probability_above(values, 1.0)
                row["p_above_1"], row["p_above_1_mcse"] = above["p"], above["mcse"]
            out[name] = row
        return out

    def plan(self, hdi_prob: float = HDI_PROB):
        """What would have settled it (:func:`~dialyzability.results.plan.plan`, seeded), made
        once per interval probability; None for a case without a session."""
        key = ("plan", hdi_prob)
        if key not in self.__dict__:
            from dialyzability.results.plan import plan

            self.__dict__[key] = plan(self, prob=hdi_prob) if self.modalities else None
        return self.__dict__[key]

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

        Made once per probability (like :attr:`posterior`, which it reads): the console table,
        the reports and the figures that show its numbers all read the same one.
        """
        key = ("summary", hdi_prob)
        if key not in self.__dict__:
            self.__dict__[key] = self._summary(hdi_prob)
        return self.__dict__[key]

    def _summary(self, hdi_prob: float) -> Summary:
        from dialyzability.results.extrip import grade_probabilities
        from dialyzability.results.interpret import (
            prediction_flags,
            session_rows,
            timing_flags,
            windows,
        )
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
        diagnostics = self.diagnostics()
        return Summary(
            case=self.case.id,
            drug=self.drug.name,
            hdi_prob=hdi_prob,
            quantities=quantities,
            timings=timings,
            diagnostics=diagnostics,
            classical={e.name: e.to_json() for e in classical_estimates(self.case)},
            extrip=grade_probabilities(draws, self.modalities),
            threshold=self.threshold,
            verdict=tuple(self.verdicts(quantities, diagnostics.converged)),
            flags=tuple(timing_flags(self) + prediction_flags(self)),
            windows=tuple(windows(self, hdi_prob)),
            structure={
                "name": self.fit.structure.name,
                "label": self.fit.structure.label_for(
                    any(d.route == "oral" for d in self.case.doses)
                ),
            },
            comparison=self.fit.comparison,
            sessions=tuple(session_rows(self, hdi_prob)),
        )

    def verdicts(self, quantities: dict, converged: bool) -> list[str]:
        """One verdict sentence per modality (see :func:`interpret.verdict`)."""
        from dialyzability.results.interpret import verdict

        if not self.modalities:
            text = "The case has no extracorporeal session: there is no ratio to estimate."
            return [text if converged else "NOT CONVERGED (do not use these numbers): " + text]
        return [
            verdict(
                quantities[name_of("ratio", m, self.modalities)],
                m,
                self.drug.name,
                converged=converged,
            )
            for m in self.modalities
        ]


def _case_slice(ds, batch, i: int):
    """Case ``i`` of a posterior-like Dataset: the case dimension dropped, the case-wise
    dimensions (levels, collections, sessions, timings) cut to the case's own entries and
    labelled by their single-case names, the modalities cut to the case's."""
    if ds is None:
        return None
    out = ds.isel(case=i, drop=True) if "case" in ds.dims else ds
    if "modality" in out.dims:
        out = out.sel(modality=batch.cases[i].modalities)
    for dim in ("level", "urine", "effluent", "effluent_sample", "session", "latent_time"):
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

    @property
    def structure(self) -> Structure:
        """The structural model of the fit (one compartment, first-order absorption for a fit
        that recorded none)."""
        return Structure.from_record(self.config.get("structure"))

    @property
    def comparison(self) -> dict | None:
        """The comparison with fits of other structures (:meth:`attach_comparison`), if any."""
        text = self.idata.attrs.get("comparison")
        return json.loads(text) if text else None

    def attach_comparison(self, comparison: dict) -> None:
        """Record the comparison of this fit with fits of other structures (the JSON of
        :class:`~dialyzability.results.compare.Comparison`) in its attributes, so that
        ``report`` shows it again; the attributes' hash is renewed."""
        self.idata.attrs["comparison"] = json.dumps(comparison)
        self.idata.attrs["config_hash"] = _digest(dict(self.idata.attrs))
        self._views.clear()

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
        drug = DrugModel.from_saved(attrs["drug_model"])
        sources = json.loads(attrs["case_sources"])
        cases = [
            parse_case(raw, source)
            for raw, source in zip(json.loads(attrs["cases"]), sources, strict=True)
        ]
        return cls(idata, cases, drug, json.loads(attrs["config"]), attrs["population"])
