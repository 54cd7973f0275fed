"""The toolkit's entry points: fit one case or pool many, returning a :class:`Fit`."""

from __future__ import annotations

import json

from dialyzability import __version__
from dialyzability.inference.sampling import (
    DEFAULT_SAMPLER_CONFIG,
    Sampler,
    kinetics_for,
    sample,
    sample_compiled,
    sampler_config,
)
from dialyzability.io.case import Case
from dialyzability.io.drugs import DrugModel, load_drug
from dialyzability.results.fit import Fit, _digest
from dialyzability.results.quantities import HDI_PROB


def fit(
    case: Case,
    *,
    draws: int = DEFAULT_SAMPLER_CONFIG["draws"],
    tune: int = DEFAULT_SAMPLER_CONFIG["tune"],
    chains: int = DEFAULT_SAMPLER_CONFIG["chains"],
    seed: int | None = None,
    sampler: Sampler = "auto",
    target_accept: float = DEFAULT_SAMPLER_CONFIG["target_accept"],
    progressbar: bool = False,
    drug: DrugModel | None = None,
    threshold: float | None = None,
) -> Fit:
    """Fit one case.

    Parameters
    ----------
    case
        A validated case (:func:`~dialyzability.io.case.load_case`).
    draws, tune, chains
        NUTS settings per chain.
    seed
        Random seed; one is drawn (and recorded in the fit) when not given, so every fit can be
        repeated exactly.
    sampler
        ``"auto"`` (fastest installed), ``"nutpie"``, ``"numpyro"`` or ``"pymc"``.
    target_accept
        NUTS target acceptance probability.
    progressbar
        Show the sampler's progress bar.
    drug
        Drug model; by default the one the case names.
    threshold
        Level (mg/L) taken as the end of toxicity, for the hours saved by the ECTR; by default
        the upper end of the drug's therapeutic range.
    """

    from dialyzability.design import case_events
    from dialyzability.model.build import build_model

    config = sampler_config(draws, tune, chains, seed, sampler, target_accept)
    drug = drug or load_drug(case.drug)
    config["threshold"] = threshold if threshold is not None else drug.therapeutic_high
    if config["sampler"] == "nutpie":
        idata = sample_compiled(case, drug, config, progressbar)
    else:
        model = build_model(case, drug, kinetics_for(config["sampler"])).model
        idata = sample(model, config, progressbar)
    latent_times = case_events(case)[0].latent()
    attrs = {
        "dialyzability_version": __version__,
        "hdi_prob": HDI_PROB,
        "case": json.dumps(case.raw, default=str),
        "case_source": case.source,
        "case_normalised": json.dumps(case.to_json()),
        "drug_model": drug.model_dump_json(),
        "priors": json.dumps(drug.prior_table()),
        "config": json.dumps(config),
        "latent_times": json.dumps(latent_times),
    }
    attrs["config_hash"] = _digest(attrs)
    idata.attrs.update(attrs)
    return Fit(idata, case, drug, config)
