"""Run a fit: lay out the cases, sample, and write the posterior in ArviZ's layout.

One layout whichever sampler ran (DESIGN §7): ``posterior`` (every parameter, the ``pred_*``
predictions and the amounts removed, dims named and labelled), ``sample_stats``, ``prior``
(forward draws of the same variables), ``observed_data``, ``constant_data``, ``log_likelihood``
and ``posterior_predictive`` / ``prior_predictive`` (one variable per kind of observation of
:data:`~dialyzability.design.OBSERVATIONS`, one value per observation).
"""

from __future__ import annotations

import numpy as np

from dialyzability.design import LOG_LIKELIHOOD, OBSERVATIONS, RAW, Batch, make_batch
from dialyzability.io.case import Case
from dialyzability.io.drugs import DrugModel, load_drug
from dialyzability.model.observations import draws
from dialyzability.pk.structure import Structure, StructureError

#: prior draws kept in the ``prior`` group
PRIOR_DRAWS = 1000


def run(
    cases: list[Case],
    population: str,
    config: dict,
    drug: DrugModel | None = None,
    progressbar: bool = False,
):
    """Sample the model of ``cases`` under ``population`` with the settings of ``config``
    (:func:`~dialyzability.inference.sampling.sampler_config`) and return the InferenceData
    with every group of the module docstring. The batch layout is returned beside it."""
    from dialyzability.inference.sampling import (
        available_sampler,
        kinetics_for,
        sample,
        sample_compiled,
    )
    from dialyzability.model.build import check_poolable

    drug = drug or load_drug(check_poolable(list(cases)))
    batch = make_batch(list(cases), drug)
    chosen = config.get("structure") or {}  # a choice left out: the drug model's default
    structure = Structure.of(drug, chosen.get("disposition"), chosen.get("absorption"))
    config["structure"] = structure.record()
    if structure.compartments == 2 and config["sampler"] == "numpyro":
        if config.get("sampler_requested", "auto") != "auto":
            raise StructureError(
                "two compartments are sampled with nutpie or PyMC's sampler; numpyro's JAX "
                "path solves one compartment only (use --sampler nutpie or pymc)"
            )
        config["sampler"] = available_sampler("auto", two_compartments=True)
    built = None
    if config["sampler"] == "nutpie":
        idata = sample_compiled(batch, population, config, progressbar)
    else:
        from dialyzability.model.build import build_model

        built = build_model(
            batch,
            population=population,
            kinetics=kinetics_for(config["sampler"]),
            coordinates=config.get("coordinates", "log_k"),
            structure=structure,
        )
        idata = sample(built.model, config, progressbar)
    prior = cached_prior_draws(
        batch, population, config.get("coordinates", "log_k"), built, structure
    )
    return complete(idata, batch, prior, config["seed"]), batch


def prior_draws(
    batch: Batch,
    population: str,
    seed: int,
    built=None,
    coordinates: str = "log_k",
    structure: Structure | None = None,
):
    """Forward draws from the model's prior (``pm.sample_prior_predictive``) of every free
    variable and deterministic: the ``prior`` group (one chain)."""
    import pymc as pm

    from dialyzability.model.build import build_model

    if built is None:
        built = build_model(
            batch, population=population, coordinates=coordinates, structure=structure
        )
    model = built.model
    names = [v.name for v in model.free_RVs] + [v.name for v in model.deterministics]
    return pm.sample_prior_predictive(
        draws=PRIOR_DRAWS, model=model, var_names=names, random_seed=seed + 1
    ).prior


def cached_prior_draws(
    batch: Batch,
    population: str,
    coordinates: str = "log_k",
    built=None,
    structure: Structure | None = None,
):
    """:func:`prior_draws`, seeded by the model and the cases' numbers and kept in the compile
    cache (``<key>.prior.nc``, written whole): the prior of a batch depends on nothing else, so
    a refit of the same cases reads it instead of building the PyMC model again."""
    import hashlib

    import xarray as xr

    from dialyzability.inference.compiled import cache_dir, cache_key
    from dialyzability.io.files import write_whole

    digest = hashlib.sha256(cache_key(batch, population, coordinates, structure).encode())
    for name, value in sorted(batch.data.items()):
        digest.update(name.encode() + np.ascontiguousarray(value).tobytes())
    digest.update(str(PRIOR_DRAWS).encode())
    key = digest.hexdigest()
    path = cache_dir() / f"{key}.prior.nc"
    try:
        with xr.open_dataset(path) as ds:
            return ds.load()
    except (OSError, ValueError, KeyError):
        pass
    prior = prior_draws(batch, population, int(key[:8], 16), built, coordinates, structure)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_whole(path, prior.to_netcdf)
    except OSError:
        pass  # a read-only cache only costs the next fit these draws
    return prior


def _flat(ds, name):
    values = ds[name].values
    return values.reshape(-1, *values.shape[2:])


def _shaped(ds, values, dim):
    shape = (ds.sizes["chain"], ds.sizes["draw"])
    return (("chain", "draw", dim), values.reshape(*shape, -1))


def complete(idata, batch: Batch, prior, seed: int):
    """The InferenceData of the module docstring from a sampler's ``posterior`` and
    ``sample_stats`` and the ``prior`` draws."""
    import arviz as az
    import xarray as xr

    coords = batch.coords()

    def tidy(ds):
        keep = [v for v in ds.data_vars if not v.endswith("__")]  # transformed values
        ds = ds[keep]
        return ds.assign_coords({k: v for k, v in coords.items() if k in ds.dims})

    posterior, prior = tidy(idata.posterior), tidy(prior)
    rng = np.random.default_rng(seed + 2)
    observed, loglik, post_pred, prior_pred = {}, {}, {}, {}
    for kind in OBSERVATIONS:
        obs = kind.select(batch)
        if not len(obs):
            continue
        observed[kind.variable] = ((kind.name,), obs.value)
        ll, yrep = draws(kind, batch, _flat(posterior, kind.prediction), rng)
        loglik[kind.variable] = _shaped(posterior, ll, kind.name)
        post_pred[kind.variable] = _shaped(posterior, yrep, kind.name)
        _, yrep = draws(kind, batch, _flat(prior, kind.prediction), rng, prior=True)
        prior_pred[kind.variable] = _shaped(prior, yrep, kind.name)
    constant = {
        "level_below_lloq": (("level",), batch.levels.censored),
        "weight_reported": (
            ("case",),
            np.array([c.patient.weight or np.nan for c in batch.cases], dtype=float),
        ),
        "dose_total": (("case",), np.array([sum(d.amount for d in c.doses) for c in batch.cases])),
    }
    if not len(batch.levels):
        constant.pop("level_below_lloq")

    def group(variables, like=None):
        ds = xr.Dataset(variables)
        if like is not None:
            ds = ds.assign_coords(chain=like.chain, draw=like.draw)
        return ds.assign_coords({k: v for k, v in coords.items() if k in ds.dims})

    return az.InferenceData(
        posterior=posterior,
        sample_stats=idata.sample_stats,
        prior=prior,
        observed_data=group(observed),
        constant_data=group(constant),
        log_likelihood=group(loglik, posterior).assign_attrs(pointwise=LOG_LIKELIHOOD),
        posterior_predictive=group(post_pred, posterior),
        prior_predictive=group(prior_pred, prior),
    )


def sampler_coordinates(posterior) -> list[str]:
    """The sampler's own coordinates in a posterior (never reported)."""
    return [v for v in posterior.data_vars if v.endswith(RAW)]
