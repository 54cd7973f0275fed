"""Compile once: a batch's nutpie model, cached on disk by the batch's structure.

Compiling the log density and its gradient (PyTensor rewrites, then numba/LLVM) takes most of a
single fit's time; sampling takes a few seconds. Every number of the cases enters the model as
data (:attr:`~dialyzability.design.Batch.data`), so the compiled machine code depends only on the
batch's :meth:`~dialyzability.design.Batch.structure` (for each case: how many doses, levels,
collections and sessions, which times are ranges, the modalities and the kidney class), the
population layer, the drug model and the software that built it. A fit, single or pooled, looks
the code up under that key and only compiles when it is missing; a sensitivity loop (the same
cases with other timing assumptions, levels or doses) compiles once.

Where: ``$DIALYZABILITY_CACHE`` if set, else ``$XDG_CACHE_HOME/dialyzability`` (default
``~/.cache/dialyzability``). Each entry is one file, written to a temporary name and renamed
into place (atomic), so two processes that compile the same structure at once both end with a
complete entry; an unreadable entry is compiled again. Deleting the directory is always safe.

The entry holds the numba-compiled object code of nutpie's log-density and expansion functions
(the same code nutpie would build in-process), their nutpie metadata, and the unconstrained
support point; the host CPU is part of the key, since the code is compiled for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from dialyzability.design import Batch
from dialyzability.io.files import write_whole

#: bump when the layout of a cache entry changes
FORMAT = 2
#: modules whose code shapes the compiled graph (their source is part of the key)
_GRAPH_MODULES = (
    "design.py",
    "model/build.py",
    "model/observations.py",
    "pk/closed_form.py",
    "pk/kernel.py",
    "inference/compiled.py",
    "io/drugs.py",
)
_PACKAGES = ("pymc", "pytensor", "nutpie", "numba", "llvmlite", "numpy", "scipy")
_MEMORY: dict[str, object] = {}


def cache_dir() -> Path:
    """Directory of the compiled-model cache (see the module docstring)."""
    if os.environ.get("DIALYZABILITY_CACHE"):
        return Path(os.environ["DIALYZABILITY_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dialyzability"


def _host() -> dict:
    import llvmlite.binding as llvm

    return {
        "python": sys.version,
        "machine": platform.machine(),
        "cpu": llvm.get_host_cpu_name(),
        "features": llvm.get_host_cpu_features().flatten(),
    }


def _software() -> dict:
    here = Path(__file__).parent.parent
    code = hashlib.sha256()
    for name in _GRAPH_MODULES:
        code.update((here / name).read_bytes())
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"format": FORMAT, "code": code.hexdigest(), "versions": versions}


def cache_key(batch: Batch, population: str, coordinates: str = "log_k") -> str:
    """Key of a batch's compiled model: its structure, population layer and sampler
    coordinates, the drug model, the code and software that compile it, and the host CPU (hex
    SHA-256)."""
    what = {
        "structure": batch.structure(),
        "population": population,
        "coordinates": coordinates,
        "drug": json.loads(batch.drug.model_dump_json()),
        "software": _software(),
        "host": _host(),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class _Function:
    """A compiled C-callable function restored from object code (what nutpie reads:
    ``address``); holds the code library so that it stays loaded."""

    library: object
    address: int


def _serialise(cfunc) -> dict:
    return {"library": cfunc._library.serialize_using_object_code(), "name": cfunc.native_name}


def _restore_function(entry: dict) -> _Function:
    from numba.core.registry import cpu_target

    codegen = cpu_target.target_context.codegen()
    library = codegen.unserialize_library(entry["library"])
    return _Function(library, library.get_pointer_to_function(entry["name"]))


def _compile(batch: Batch, population: str, coordinates: str) -> dict:
    """Build the batch's PyMC model, compile it with nutpie and return the cache entry."""
    import nutpie

    from dialyzability.model.build import build_model

    built = build_model(batch, population=population, coordinates=coordinates)
    compiled = nutpie.compile_pymc_model(built.model, jitter_rvs=set())
    fields = {
        "shared_data": compiled.shared_data,
        "user_data": compiled.user_data,
        "n_expanded": int(compiled.n_expanded),
        "shape_info": compiled.shape_info,
        "_n_dim": int(compiled.n_dim),
        "_shapes": compiled._shapes,
        "_coords": {k: list(v) for k, v in (compiled._coords or {}).items()},
        "dims": {k: tuple(v) for k, v in (compiled.dims or {}).items()},
    }
    functions = (compiled.compiled_logp_func, compiled.compiled_expand_func)
    return {
        "format": FORMAT,
        # code holding addresses of this process (numba's "dynamic globals": scipy's special
        # functions behind a Student-t CDF, for censored levels) runs only where it was made
        "relocatable": not any(f._library.has_dynamic_globals for f in functions),
        "logp": _serialise(compiled.compiled_logp_func),
        "expand": _serialise(compiled.compiled_expand_func),
        "fields": fields,
        "support": np.asarray(compiled.initial_point_func(0), dtype=float),
    }


def _read(path: Path) -> dict | None:
    try:
        with path.open("rb") as f:
            entry = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, ValueError):
        return None
    valid = isinstance(entry, dict) and entry.get("format") == FORMAT and entry.get("relocatable")
    return entry if valid else None


def _restore(entry: dict):
    from nutpie.compile_pymc import CompiledPyMCModel

    support = entry["support"]

    def initial_point(seed):
        # nutpie's default: the support point with U(-1, 1) jitter on every free variable
        rng = np.random.default_rng(None if seed is None else int(seed))
        return support + rng.uniform(-1.0, 1.0, size=support.shape)

    return CompiledPyMCModel(
        compiled_logp_func=_restore_function(entry["logp"]),
        compiled_expand_func=_restore_function(entry["expand"]),
        initial_point_func=initial_point,
        logp_func=None,
        expand_func=None,
        **entry["fields"],
    )


def compiled_model(
    batch: Batch, population: str = "fixed", coordinates: str = "log_k"
) -> tuple[object, bool]:
    """The batch's compiled nutpie model with the cases' numbers as its data.

    Returns
    -------
    (model, hit)
        A ``nutpie`` compiled model ready for ``nutpie.sample``, and whether it came from the
        cache (False: compiled now, and stored on disk unless its code holds addresses of this
        process, as a model with censored levels does; such code is reused within the process
        only).
    """
    key = cache_key(batch, population, coordinates)
    hit = True
    model = _MEMORY.get(key)
    if model is None:
        path = cache_dir() / f"{key}.nutpie"
        entry = _read(path)
        if entry is None:
            hit = False
            entry = _compile(batch, population, coordinates)
            try:
                if entry["relocatable"]:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write_whole(path, lambda tmp: tmp.write_bytes(pickle.dumps(entry)))
            except OSError:
                pass  # a read-only cache only costs the next fit a compilation
        model = _MEMORY[key] = _restore(entry)
    data = batch.data
    return model.with_data(**{k: v for k, v in data.items() if k in model.shared_data}), hit
