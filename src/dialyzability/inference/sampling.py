"""Sampler choice and sampling: NUTS through nutpie (compiled, cached), numpyro or PyMC."""

from __future__ import annotations

from typing import Literal

import numpy as np

from dialyzability.design import Batch
from dialyzability.pk.structure import Structure

Sampler = Literal["auto", "nutpie", "numpyro", "pymc"]
SAMPLERS: tuple[str, ...] = Sampler.__args__

DEFAULT_SAMPLER_CONFIG = {"draws": 1000, "tune": 1000, "chains": 4, "target_accept": 0.9}


def available_sampler(requested: str = "auto", two_compartments: bool = False) -> str:
    """The NUTS backend to use: the requested one, or for ``auto`` the fastest installed
    (nutpie, then numpyro, then PyMC's own; numpyro's JAX path solves one compartment only, so
    it is skipped for ``two_compartments``)."""
    if requested not in SAMPLERS:
        raise ValueError(f"unknown sampler {requested!r}; choose one of {', '.join(SAMPLERS)}")
    import importlib.util

    if requested == "auto":
        for name in ("nutpie", "numpyro"):
            if name == "numpyro" and two_compartments:
                continue
            if importlib.util.find_spec(name) is not None:
                return name
        return "pymc"
    if requested != "pymc" and importlib.util.find_spec(requested) is None:
        raise ValueError(
            f"sampler {requested!r} is not installed (pip install 'dialyzability[fast]')"
        )
    return requested


def sampler_config(
    draws: int, tune: int, chains: int, seed: int | None, sampler: str, target_accept: float
) -> dict:
    """The sampling settings of a fit, with the backend resolved and a seed drawn (and so
    recorded) when none is given, so that every fit can be repeated exactly."""
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31 - 1))
    return {
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "seed": seed,
        "sampler_requested": sampler,
        "sampler": available_sampler(sampler),
        "target_accept": target_accept,
    }


def kinetics_for(sampler: str) -> str:
    """How a model should write its kinetics for a backend: as PyTensor expressions for PyMC's
    JAX path (numpyro), else as the compiled kernel (:mod:`dialyzability.pk.kernel`)."""
    return "graph" if sampler == "numpyro" else "kernel"


def sample(model, config: dict, progressbar: bool = False):
    """NUTS on ``model`` with the draws, tune, chains, seed, sampler and target_accept of
    ``config``; returns the InferenceData."""
    import pymc as pm

    kwargs = {"nuts_sampler": config["sampler"]}
    if config["sampler"] == "pymc":
        kwargs["compute_convergence_checks"] = False  # the gate below checks every fit
    if config["sampler"] == "numpyro":
        # JAX's persistent compilation cache, beside the compiled models
        import jax

        from dialyzability.inference.compiled import cache_dir

        jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    with model:
        return pm.sample(
            draws=config["draws"],
            tune=config["tune"],
            chains=config["chains"],
            random_seed=config["seed"],
            target_accept=config["target_accept"],
            progressbar=progressbar,
            **kwargs,
        )


def sample_compiled(batch: Batch, population: str, config: dict, progressbar: bool = False):
    """nutpie's NUTS on the batch's compiled model, taken from the compile cache when the
    batch's structure has been compiled before (:mod:`dialyzability.inference.compiled`);
    returns the InferenceData (posterior and sample statistics, no warm-up draws)."""
    import os

    import nutpie

    from dialyzability.inference.compiled import compiled_model

    model, _ = compiled_model(
        batch,
        population,
        config.get("coordinates", "log_k"),
        Structure.from_record(config.get("structure")),
    )
    return nutpie.sample(
        model,
        draws=config["draws"],
        tune=config["tune"],
        chains=config["chains"],
        cores=min(config["chains"], os.cpu_count() or 1),
        seed=config["seed"],
        target_accept=config["target_accept"],
        progress_bar=progressbar,
        save_warmup=False,
    )
