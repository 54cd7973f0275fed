"""A pooled fit read as a population: the ratio of a typical patient and of a new one.

For each modality m and kidney-function class k of a hierarchical fit, the population ratio of
a typical 70-kg patient is exp(mu_cl_ectr[m] − mu_cl_renal[k]) (the allometric factors cancel),
and a new patient's ratio adds the between-case spread of both clearances:
exp(mu_cl_ectr[m] − mu_cl_renal[k] + tau_cl_ectr z1 − tau_cl_renal z2), z ~ N(0, 1) per draw.
"""

from __future__ import annotations

import numpy as np

from dialyzability.design import POPULATION_SPREAD, mu_name, tau_name
from dialyzability.results.quantities import HDI_PROB, describe, name_of, probability_above


def population_draws(fit, seed: int = 0) -> dict[str, np.ndarray]:
    """Population and predictive ratios per (modality, kidney class), and the between-case
    SDs, as arrays (chain, draw)."""
    post = fit.idata.posterior
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
            out[f"ratio_{m}_{cls}"] = np.exp(log_ratio)
            z = rng.normal(size=(2, *log_ratio.shape))
            out[f"ratio_new_{m}_{cls}"] = np.exp(log_ratio + tau_e * z[0] - tau_r * z[1])
    for parameter in POPULATION_SPREAD:
        if tau_name(parameter) in post:
            out[tau_name(parameter)] = post[tau_name(parameter)].values
    return out


def pooled_summary(fit, hdi_prob: float | None = None) -> dict:
    """JSON-ready summary of a pooled fit: ``population`` and ``cases`` sections (the
    single-case quantity names, shrunk), diagnostics."""
    hdi_prob = hdi_prob or HDI_PROB
    from dialyzability.results.interpret import verdict

    population = {}
    for name, draws in population_draws(fit).items():
        row = {"unit": "1", **describe(draws, hdi_prob, "log")}
        if name.startswith("ratio"):
            above = probability_above(draws, 1.0)
            row["p_above_1"], row["p_above_1_mcse"] = above["p"], above["mcse"]
        population[name] = row
    diagnostics = fit.diagnostics()
    verdicts = {}
    for m in fit.batch.modalities:
        for k in fit.batch.kidney_classes:
            verdicts[f"{m}_{k}"] = verdict(
                population[f"ratio_{m}_{k}"],
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
    }


def case_ratio(view) -> np.ndarray:
    """Draws of a case's ratio CL_ECTR/CL_R of its first modality (flat)."""
    m = view.modalities
    return np.asarray(view.quantities()[name_of("ratio", m[0], m)]).ravel()


def unpooled_ratios(fit) -> dict[str, np.ndarray]:
    """Per case with a session, the draws of its ratio (first modality) in ``fit``."""
    return {c.id: case_ratio(fit.view(i)) for i, c in enumerate(fit.cases) if c.modalities}
