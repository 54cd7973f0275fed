"""Shared fixtures: the shipped founding case, helpers to write case files, and fits.

Two kinds of fit:

* ``lee_fit_dir``: the founding case fitted once with NUTS through the CLI (short run). Kept for
  the few end-to-end tests that need a real sampler run (outputs written, save/load round trip,
  same seed same summary, altered file refused, the layout the NUTS-free fits copy).
* NUTS-free fits (:func:`nuts_free_fit`): the model's own prior draws relabelled as a
  posterior and completed exactly as a sampler's output would be. They exercise every output
  (summary, figures, reports, EXTRIP, pooled summary, ArviZ groups) in a fraction of the time,
  with the same code paths after sampling. They are *not* posteriors of the data: no test may
  read a fitted value off them, only relations that hold for any draws.
"""

from __future__ import annotations

import copy
import os
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "data" / "cases"
LEE = CASES / "lee2020-baclofen.toml"

# the suite compiles into a cache of its own, never the user's (dialyzability.inference.compiled)
os.environ["DIALYZABILITY_CACHE"] = tempfile.mkdtemp(prefix="dialyzability-test-cache-")

#: chains x draws of a NUTS-free "posterior" (the 1000 prior draws, relabelled); the fits of
#: :func:`free_fit` other than the founding case's take half (their outputs' cost is per draw)
FREE_CHAINS, FREE_DRAWS, FEWER_DRAWS = 2, 500, 250


def _relabel(ds, chains: int, draws: int):
    """The first chains x draws draws of a (chain, draw) Dataset, laid out as ``chains``
    chains of ``draws`` draws (every other dimension and coordinate kept)."""
    import xarray as xr

    n = ds.sizes["chain"] * ds.sizes["draw"]
    if n < chains * draws:
        raise ValueError(f"{n} draws cannot fill {chains} x {draws}")
    out = {}
    for name, var in ds.data_vars.items():
        values = var.values.reshape(n, *var.shape[2:])[: chains * draws]
        out[name] = (var.dims, values.reshape(chains, draws, *var.shape[2:]))
    coords = {k: v for k, v in ds.coords.items() if k not in ("chain", "draw")}
    coords |= {"chain": np.arange(chains), "draw": np.arange(draws)}
    return xr.Dataset(out, coords=coords)


def nuts_free_fit(
    cases,
    population: str = "fixed",
    *,
    seed: int = 0,
    chains: int = FREE_CHAINS,
    draws: int = FREE_DRAWS,
    divergences: int = 0,
    threshold: float | str | None = "drug",
    structure=None,
):
    """A :class:`~dialyzability.results.fit.Fit` of ``cases`` made without NUTS.

    The cases are laid out with :func:`~dialyzability.design.make_batch`; the model's forward
    draws (:func:`~dialyzability.inference.run.prior_draws`: every parameter and deterministic,
    one chain of 1000) are relabelled as ``chains`` x ``draws`` posterior draws, given a
    ``sample_stats`` group (``diverging``: all False but the first ``divergences`` draws of the
    first chain), completed by :func:`~dialyzability.inference.run.complete` (observed and
    constant data, log-likelihood, posterior and prior predictive) and wrapped by
    :meth:`Fit.from_run` with a configuration built as :func:`dialyzability.api.fit_cases`
    builds it, under ``structure`` (a :class:`~dialyzability.pk.structure.Structure`; by
    default the drug model's). Seeded: the same arguments give the same fit.

    ``threshold`` (mg/L, the end of toxicity) is by default the drug's upper therapeutic level,
    as in a real fit; ``None`` leaves the hours saved out (they are computed, per draw, every
    time a case is read).
    """
    import arviz as az
    import xarray as xr

    from dialyzability import __version__
    from dialyzability.design import make_batch
    from dialyzability.inference.run import complete, prior_draws
    from dialyzability.inference.sampling import DEFAULT_SAMPLER_CONFIG, sampler_config
    from dialyzability.io.drugs import load_drug
    from dialyzability.results.fit import Fit

    cases = list(cases)
    drug = load_drug(cases[0].drug)
    batch = make_batch(cases, drug)
    from dialyzability.pk.structure import Structure

    structure = structure or Structure.of(drug)
    prior = prior_draws(batch, population, seed, structure=structure)
    posterior = _relabel(prior, chains, draws)
    diverging = np.zeros((chains, draws), dtype=bool)
    diverging.flat[:divergences] = True
    sample_stats = xr.Dataset(
        {"diverging": (("chain", "draw"), diverging)},
        coords={"chain": posterior.chain, "draw": posterior.draw},
    )
    sampled = az.InferenceData(posterior=posterior, sample_stats=sample_stats)
    idata = complete(sampled, batch, prior, seed)
    config = sampler_config(draws, 0, chains, seed, "auto", DEFAULT_SAMPLER_CONFIG["target_accept"])
    config["threshold"] = drug.therapeutic_high if threshold == "drug" else threshold
    config["structure"] = structure.record()
    attrs = {"dialyzability_version": __version__, "test_posterior": "prior draws, no NUTS"}
    return Fit.from_run(idata, batch.cases, drug, config, population, attrs)


def case_of(raw: dict, name: str | None = None):
    """A validated case from a case dict."""
    from dialyzability.io.case import parse_case

    return parse_case(raw, name or raw["id"])


def simulated_case(kind: str, seed: int = 0):
    """The validated synthetic case of design ``kind``
    (:func:`dialyzability.simulate.simulate_case`)."""
    from dialyzability.simulate import simulate_case

    raw, _ = simulate_case(kind, seed)
    return case_of(raw)


def _lee_dict() -> dict:
    with LEE.open("rb") as fh:
        return tomllib.load(fh)


def lee_variant(kind: str):
    """The founding case altered: ``"two_modalities"`` (session 2 by CVVH, with a recovery),
    ``"no_session"`` (no ECTR at all)."""
    raw = _lee_dict()
    if kind == "two_modalities":
        raw["id"] = "lee2020-two-modalities"
        raw["sessions"][1].update({"modality": "CVVH", "recovered": "2 mg"})
    elif kind == "no_session":
        raw["id"] = "lee2020-no-session"
        del raw["sessions"]
    else:
        raise ValueError(kind)
    return case_of(raw)


def pooled_cases():
    """A batch for pooled outputs: simulated cases of mixed designs, the founding case, an
    anuric case and the founding case with a CVVH session (two modalities, two kidney
    classes) and without any session."""
    from dialyzability.io.case import load_case
    from dialyzability.simulate import simulate_population

    raws, _, _ = simulate_population(3, seed=5)
    cases = [case_of(r) for r in raws]
    cases += [load_case(LEE), simulated_case("anuric", 7), lee_variant("two_modalities")]
    return [*cases, lee_variant("no_session")]


@pytest.fixture
def lee_raw() -> dict:
    """The founding case as a dict, to be mutated by a test."""
    return copy.deepcopy(_lee_dict())


@pytest.fixture
def write_case(tmp_path):
    """Write a dict as a TOML case file and return its path."""

    def write(raw: dict, name: str = "case.toml") -> Path:
        path = tmp_path / name
        path.write_bytes(tomli_w.dumps(raw).encode())
        return path

    return write


@pytest.fixture(scope="session")
def lee_fit_dir(tmp_path_factory):
    """The founding case fitted once with NUTS through the CLI (short run), with every output.
    So short a run may miss the bulk-ESS threshold: then ``fit`` exits with its not-converged
    status, having written every output all the same."""
    from dialyzability.cli import EXIT_NOT_CONVERGED, main

    out = tmp_path_factory.mktemp("lee-fit")
    args = ["fit", str(LEE), "--out", str(out), "--seed", "3", "--quiet"]
    args += ["--draws", "300", "--tune", "300", "--chains", "2"]
    assert main(args) in (0, EXIT_NOT_CONVERGED)
    return out


@pytest.fixture(scope="session")
def free_fit():
    """``free_fit(key)``: NUTS-free fits (:func:`nuts_free_fit`), made once per session.

    Keys: ``"lee"`` (the founding case, 2 x 500 draws; the others 2 x 250), a design of
    :data:`dialyzability.simulate.DESIGNS` (its synthetic case, seed 0), ``"two_modalities"``
    and ``"no_session"`` (:func:`lee_variant`), ``"lee_divergent"`` (the founding case with 3
    divergent draws), ``"pooled"`` (the hierarchical fit of :func:`pooled_cases`) and
    ``"unpooled"`` (the same cases side by side, fixed). The last two have no threshold: the
    pooled outputs read every case three times over, and the hours saved of a case are the
    single-case code, tested on the single-case fits.
    """
    from dialyzability.io.case import load_case
    from dialyzability.simulate import DESIGNS

    made = {}

    def make(key: str):
        if key in made:
            return made[key]
        if key == "lee":
            fit = nuts_free_fit([load_case(LEE)], seed=3)
        elif key == "lee_divergent":
            fit = nuts_free_fit([load_case(LEE)], seed=3, divergences=3)
        elif key in DESIGNS:
            fit = nuts_free_fit([simulated_case(key)], seed=11, draws=FEWER_DRAWS)
        elif key in ("two_modalities", "no_session"):
            fit = nuts_free_fit([lee_variant(key)], seed=12, draws=FEWER_DRAWS)
        elif key == "pooled":
            fit = nuts_free_fit(
                pooled_cases(), "hierarchical", seed=13, draws=FEWER_DRAWS, threshold=None
            )
        elif key == "unpooled":
            fit = nuts_free_fit(pooled_cases(), "fixed", seed=14, draws=FEWER_DRAWS, threshold=None)
        else:
            raise KeyError(key)
        made[key] = fit
        return fit

    return make


@pytest.fixture(scope="session")
def lee_free_dir(tmp_path_factory, free_fit):
    """Every output of the NUTS-free founding-case fit, written as ``dialyzability fit`` writes
    them (``cli._write_outputs``), with its ``posterior.nc`` (``Fit.save``)."""
    from dialyzability.cli import _write_outputs
    from dialyzability.results.quantities import HDI_PROB

    out = tmp_path_factory.mktemp("lee-free")
    fit = free_fit("lee")
    fit.save(out)
    _write_outputs(fit, out, HDI_PROB)
    return out


@pytest.fixture(scope="session")
def pooled_free_dir(tmp_path_factory, free_fit):
    """Every output of the NUTS-free pooled fit, written as ``dialyzability pool`` writes them
    (``cli._write_pooled``, with the unpooled fit of the same cases beside it)."""
    from dialyzability.cli import _write_pooled
    from dialyzability.results.quantities import HDI_PROB

    out = tmp_path_factory.mktemp("pooled-free")
    _write_pooled(free_fit("pooled"), out, HDI_PROB, free_fit("unpooled"))
    return out
