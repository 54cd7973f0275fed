"""The toolkit's entry points: fit one case, or pool many, each returning a :class:`Fit`;
read a saved fit back (:func:`load_fit`).

Also importable from the package itself: ``from dialyzability import load_case, load_cases,
fit, pool, Fit``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dialyzability import __version__
from dialyzability.inference.run import run
from dialyzability.inference.sampling import DEFAULT_SAMPLER_CONFIG, Sampler, sampler_config
from dialyzability.io.case import Case, CaseError, load_case, load_cases
from dialyzability.io.drugs import DrugModel
from dialyzability.io.resources import use_models_dir
from dialyzability.results.fit import Fit

__all__ = ["Fit", "fit", "fit_cases", "load_case", "load_cases", "pool"]

_D = DEFAULT_SAMPLER_CONFIG


def fit_cases(
    cases: list[Case],
    population: str = "fixed",
    *,
    draws: int = _D["draws"],
    tune: int = _D["tune"],
    chains: int = _D["chains"],
    seed: int | None = None,
    sampler: Sampler = "auto",
    target_accept: float = _D["target_accept"],
    progressbar: bool = False,
    drug: DrugModel | None = None,
    threshold: float | None = None,
    coordinates: str = "log_k",
    models_dir: str | Path | None = None,
    structure: str | None = None,
    absorption: str | None = None,
) -> Fit:
    """Fit N >= 1 cases of one drug under a population layer.

    Parameters
    ----------
    cases
        Validated cases (:func:`~dialyzability.io.case.load_case`), all of one drug.
    population
        ``"fixed"``: each case under the drug model's prior (a single-case fit, or cases
        side by side, unpooled); ``"hierarchical"``: pooled (DESIGN §5).
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
        Drug model; by default the one the cases name.
    threshold
        Level (mg/L) taken as the end of toxicity, for the hours saved by the ECTR; by default
        the upper end of the drug's therapeutic range.
    coordinates
        The sampler's coordinates of the clearance pair
        (:func:`~dialyzability.model.build.build_model`; the default is the measured choice).
    models_dir
        A folder of user drug models searched before the shipped ones (by default the one of
        ``--models-dir`` or ``$DIALYZABILITY_MODELS``, if any). Cases naming a user drug must be
        loaded with the same folder in force
        (:func:`~dialyzability.io.resources.use_models_dir`).
    structure, absorption
        The structural model (:class:`~dialyzability.pk.structure.Structure`): disposition
        ``"one-compartment"`` or ``"two-compartment"``, absorption ``"first-order"``,
        ``"lag"`` or ``"dual"``; each by default the drug model's (``[structure]`` of its file).
    """
    config = sampler_config(draws, tune, chains, seed, sampler, target_accept)
    config["coordinates"] = coordinates
    config["structure"] = {"disposition": structure, "absorption": absorption}
    with use_models_dir(models_dir):
        idata, batch = run(list(cases), population, config, drug, progressbar)
    config["threshold"] = threshold if threshold is not None else batch.drug.therapeutic_high
    config |= drug_provenance(batch.drug)
    attrs = {"dialyzability_version": __version__}
    return Fit.from_run(idata, batch.cases, batch.drug, config, population, attrs)


def fit(case: Case | str | Path, **options: Any) -> Fit:
    """Fit one case: a :class:`Case`, or the path of a case file (TOML, or a tidy CSV of one
    case). Options as :func:`fit_cases`."""
    if not isinstance(case, Case):
        case = load_case(case)
    return fit_cases([case], "fixed", **options)


def pool(cases: Iterable[Case | str | Path], **options: Any) -> Fit:
    """The pooled fit: the hierarchical model of ``cases`` (one drug; :class:`Case` objects or
    paths of case files, tidy CSV files or folders, read by :func:`load_cases`). Options as
    :func:`fit_cases`."""
    batch: list[Case] = []
    for c in cases:
        batch += [c] if isinstance(c, Case) else load_cases(c)
    return fit_cases(batch, "hierarchical", **options)


def drug_provenance(drug: DrugModel) -> dict:
    """What a fit's configuration records of its drug model: the file, and the user folder
    that a loaded fit needs to read its cases again (None for the shipped models)."""
    folder = None
    if drug.user or drug.defaults:
        folder = str(Path(drug.path if drug.user else drug.defaults).parent)
    return {"drug_file": drug.path, "models_dir": folder}


def recorded_models_dir(path: str | Path) -> str | None:
    """The user folder of drug models that the fit saved at ``path`` recorded, if any."""
    import xarray as xr

    path = Path(path)
    path = path / "posterior.nc" if path.is_dir() else path
    with xr.open_dataset(path) as root:  # the InferenceData's attributes only
        return json.loads(root.attrs.get("config", "{}")).get("models_dir")


def load_fit(directory: str | Path, models_dir: str | Path | None = None) -> Fit:
    """Read a fit saved by :meth:`Fit.save`.

    Its cases name their drug; a user drug is looked up in ``models_dir``, else the active
    folder (``--models-dir``, ``$DIALYZABILITY_MODELS``), else the folder the fit recorded.

    Raises
    ------
    CaseError
        If the cases' drug model is found in none of them (the message names the folder the fit
        was made with).
    """
    with use_models_dir(models_dir):
        try:
            return Fit.load(directory)
        except CaseError as exc:
            if exc.field != "drug":
                raise
            recorded = recorded_models_dir(directory)
            if not recorded or not Path(recorded).is_dir():
                hint = f"; the fit was made with the drug models in {recorded}" if recorded else ""
                raise CaseError(
                    exc.path, f"{exc.reason}{hint}: give that folder with --models-dir", "", "drug"
                ) from None
        with use_models_dir(recorded):
            return Fit.load(directory)
