"""A pooled fit read as a population: the ratio of a typical patient and of a new one.

For each modality m and kidney-function class k of a hierarchical fit, the population ratio of
a typical 70-kg patient is exp(mu_cl_ectr[m] − mu_cl_renal[k]) (the allometric factors cancel),
and a new patient's ratio adds the between-case spread of both clearances:
exp(mu_cl_ectr[m] − mu_cl_renal[k] + tau_cl_ectr z1 − tau_cl_renal z2), z ~ N(0, 1) per draw.
The EXTRIP criteria of the typical patient (:func:`population_extrip`) are set beside the
drug's published EXTRIP grade.
"""

from __future__ import annotations

import numpy as np

from dialyzability.design import POPULATION_SPREAD, mu_name, population_ratio_name, tau_name
from dialyzability.results.extrip import grade_probabilities
from dialyzability.results.quantities import (
    HDI_PROB,
    compute_all,
    describe,
    name_of,
    probability_above,
)


def population_draws(fit, seed: int = 0, group: str = "posterior") -> dict[str, np.ndarray]:
    """Population and predictive ratios per (modality, kidney class), and the between-case
    SDs, as arrays (chain, draw), from the fit's ``group`` (``"posterior"`` or ``"prior"``)."""
    post = getattr(fit.idata, group)
    rng = np.random.default_rng(seed)
    out = {}
    mu_r = post[mu_name("cl_renal")].values  # (chain, draw, kidney)
    tau_r = post[tau_name("cl_renal")].values
    modalities = list(fit.batch.modalities)
    classes = list(fit.batch.kidney_classes)
    for j, m in enumerate(modalities):
        mu_e = post[mu_name("cl_ectr")].values[..., j]
        tau_e = post[tau_name("cl_ectr")].values
        for k, cls in enumerate(classes):
            log_ratio = mu_e - mu_r[..., k]
            out[population_ratio_name(m, cls)] = np.exp(log_ratio)
            z = rng.normal(size=(2, *log_ratio.shape))
            out[population_ratio_name(m, cls, new=True)] = np.exp(
                log_ratio + tau_e * z[0] - tau_r * z[1]
            )
    for parameter in POPULATION_SPREAD:
        if tau_name(parameter) in post:
            out[tau_name(parameter)] = post[tau_name(parameter)].values
    return out


def pooled_summary(fit, hdi_prob: float | None = None) -> dict:
    """JSON-ready summary of a pooled fit: ``population`` and ``cases`` sections (the
    single-case quantity names, shrunk), diagnostics."""
    hdi_prob = hdi_prob or HDI_PROB
    from dialyzability.results.interpret import PRIOR_DOMINATED, verdict, width_ratio

    population = {}
    for name, draws in population_draws(fit).items():
        row = {"unit": "1", **describe(draws, hdi_prob, "log")}
        if name.startswith("ratio"):
            above = probability_above(draws, 1.0)
            row["p_above_1"], row["p_above_1_mcse"] = above["p"], above["mcse"]
        population[name] = row
    # the prior of each population quantity beside it, so a prior-dominated answer says so
    if getattr(fit.idata, "prior", None) is not None:
        for name, draws in population_draws(fit, group="prior").items():
            row = population[name]
            before = describe(draws, hdi_prob, "log")
            row["prior"] = {k: before[k] for k in ("median", "hdi", "interval")}
            row["width_ratio"] = width_ratio(row, before, "log")
            row["prior_dominated"] = (
                row["width_ratio"] is not None and row["width_ratio"] >= PRIOR_DOMINATED
            )
    diagnostics = fit.diagnostics()
    verdicts = {}
    for m in fit.batch.modalities:
        for k in fit.batch.kidney_classes:
            verdicts[f"{m}_{k}"] = verdict(
                population[population_ratio_name(m, k)],
                m,
                fit.drug.name,
                converged=diagnostics.converged,
                who=f"Typical 70-kg patient with {k} kidneys: ",
            )
    cases = {}
    for i, c in enumerate(fit.cases):
        quantities = fit.view(i).quantity_rows(hdi_prob)
        cases[c.id] = {
            "quantities": quantities,
            "kidney_function": c.kidney_function,
            "modalities": c.modalities,
        }
    return {
        "verdict": " ".join(verdicts.values()),
        "verdicts": verdicts,
        "converged": diagnostics.converged,
        "drug": fit.drug.name,
        "hdi_prob": hdi_prob,
        "n_cases": len(fit.cases),
        "population": population,
        "cases": cases,
        "diagnostics": diagnostics.to_json(),
        "drug_model": fit.drug.provenance(),
        "extrip": population_extrip(fit),
    }


def population_extrip(fit) -> dict:
    """The EXTRIP criteria (:func:`~dialyzability.results.extrip.grade_probabilities`) of a
    typical 70-kg patient of each kidney-function class, beside the drug's published grade.

    The typical patient's parameters are the population means: V = 70 · exp(mu_volume),
    CL_R = exp(mu_cl_renal[k]), CL_NR = exp(mu_cl_nonrenal), CL_ECTR = exp(mu_cl_ectr[m]).
    With two compartments, whose V2 / V and Q are each case's own under the drug model's
    priors (not pooled), the typical patient takes the prior means of V2 / V and the prior
    median of Q.

    Returns
    -------
    dict
        ``{"published": the drug model's EXTRIP block or None, "not_found": what was searched
        when the drug has none, "typical": {kidney class: grade_probabilities(...)}}``.
    """
    import xarray as xr

    drug = fit.drug
    out = {
        "published": drug.extrip.model_dump() if drug.extrip else None,
        "not_found": drug.not_found.get("extrip"),
        "typical": {},
    }
    modalities = list(fit.batch.modalities)
    if not modalities:
        return out
    post = fit.idata.posterior
    base = {
        "volume": 70.0 * np.exp(post[mu_name("volume")]),
        "cl_nonrenal": np.exp(post[mu_name("cl_nonrenal")]),
        "cl_ectr": np.exp(post[mu_name("cl_ectr")]),
    }
    if fit.structure.compartments == 2:
        p = drug.priors
        phi = p.fraction_peripheral.mean
        base["volume_central"] = base["volume"] * (1 - phi)
        base["volume_peripheral"] = base["volume"] * phi
        base["cl_intercompartmental"] = 0 * base["volume"] + p.cl_intercompartmental.median
        out["note"] = (
            f"With two compartments the typical patient's V2/V ({phi:.2f}, the prior mean) and Q "
            f"({p.cl_intercompartmental.median:g} L/h, the prior median) are the drug model's "
            "priors, not pooled estimates: each case has its own, under those priors."
        )
    mu_r = post[mu_name("cl_renal")]
    for k, cls in enumerate(fit.batch.kidney_classes):
        typical = xr.Dataset({**base, "cl_renal": np.exp(mu_r.isel(kidney=k, drop=True))})
        out["typical"][cls] = grade_probabilities(compute_all(typical, modalities), modalities)
    return out


def case_ratio(view) -> np.ndarray:
    """Draws of a case's ratio CL_ECTR/CL_R of its first modality (flat)."""
    m = view.modalities
    return np.asarray(view.quantities()[name_of("ratio", m[0], m)]).ravel()


def unpooled_ratios(fit) -> dict[str, np.ndarray]:
    """Per case with a session, the draws of its ratio (first modality) in ``fit``."""
    return {c.id: case_ratio(fit.view(i)) for i, c in enumerate(fit.cases) if c.modalities}
