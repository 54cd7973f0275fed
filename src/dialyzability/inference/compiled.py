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
into place (atomic, :mod:`dialyzability.io.files`), so two processes that compile the same
structure at once both end with a complete entry; an unreadable entry is compiled again.
Deleting the directory is always safe.

Reading an entry unpickles it, and unpickling can run code, so the cache trusts only what the
user could have written: the folder is created owner-only (0o700) and entries are written
owner-only (0o600); a folder owned by another user or writable by group or others is neither
read nor written, and an entry owned by another user, writable by group or others, or not a
regular file is not read (each with a :class:`CacheWarning` naming the path and why; the model
is compiled again). A folder that cannot be created or written only costs time: a warning, and
the model is compiled in memory. An existing folder's permissions are never changed; fix an
unsafe one with ``chmod 700`` (and remove entries you did not write), or point
``$DIALYZABILITY_CACHE`` elsewhere. Where the system has no user ids (Windows) only the entry
being a regular file is checked.

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
import stat
import sys
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from dialyzability.design import Batch
from dialyzability.io.files import write_whole
from dialyzability.pk.structure import Structure

#: bump when the layout of a cache entry changes
FORMAT = 2
#: modules whose code shapes the compiled graph (their source is part of the key)
_GRAPH_MODULES = (
    "design.py",
    "model/build.py",
    "model/observations.py",
    "pk/closed_form.py",
    "pk/kernel.py",
    "pk/two_compartment.py",
    "pk/structure.py",
    "inference/compiled.py",
    "io/drugs.py",
)
_PACKAGES = ("pymc", "pytensor", "nutpie", "numba", "llvmlite", "numpy", "scipy")
_MEMORY: dict[str, object] = {}
#: permissions of the cache folder and of its entries
FOLDER_MODE, ENTRY_MODE = 0o700, 0o600


class CacheWarning(UserWarning):
    """The compile cache was not used (unsafe or unavailable); the fit goes on, compiling."""


def _warn(message: str) -> None:
    warnings.warn(message, CacheWarning, stacklevel=4)


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


def cache_key(
    batch: Batch, population: str, coordinates: str = "log_k", structure: Structure | None = None
) -> str:
    """Key of a batch's compiled model: its layout, structural model, population layer and
    sampler coordinates, the drug model, the code and software that compile it, and the host
    CPU (hex SHA-256)."""
    what = {
        "structure": batch.structure(),
        "model": (structure or Structure.of(batch.drug)).record(),
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


def _compile(
    batch: Batch, population: str, coordinates: str, structure: Structure | None = None
) -> dict:
    """Build the batch's PyMC model (under ``structure``, by default the drug model's),
    compile it with nutpie and return the cache entry."""
    import nutpie

    from dialyzability.model.build import build_model

    built = build_model(batch, population=population, coordinates=coordinates, structure=structure)
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


def _uid() -> int | None:
    """The current user's id; None where the system has none (Windows)."""
    getuid = getattr(os, "getuid", None)
    return getuid() if getuid is not None else None


def _untrusted(st: os.stat_result) -> str:
    """Why a file or folder with status ``st`` may hold someone else's code (``""`` if not)."""
    uid = _uid()
    if uid is None:
        return ""
    if st.st_uid != uid:
        return f"it is owned by another user (uid {st.st_uid}; you are {uid})"
    who = [w for bit, w in ((stat.S_IWGRP, "group"), (stat.S_IWOTH, "others")) if st.st_mode & bit]
    if who:
        return f"it is writable by {' and '.join(who)} (mode {stat.S_IMODE(st.st_mode):o})"
    return ""


def _open_folder(folder: Path) -> bool:
    """Whether the cache folder can be used: created owner-only if missing, and trusted.
    Warns (and returns False) when it cannot be created or is not to be trusted."""
    try:
        folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        st = folder.stat()
    except OSError as exc:
        _warn(
            f"cannot create the compile cache folder {folder} ({exc.strerror or exc}); the "
            "model is compiled in memory and the next fit compiles it again"
        )
        return False
    why = _untrusted(st)
    if why:
        _warn(
            f"not using the compile cache folder {folder}: {why}, so its entries (compiled "
            "code, run when read) could have been put there by someone else; the model is "
            f"compiled in memory. Make it yours only (chmod 700 {folder}) or set "
            "DIALYZABILITY_CACHE to a folder of your own"
        )
        return False
    return True


def _read(path: Path) -> dict | None:
    """The entry at ``path``, or None when missing, unreadable or not to be trusted (then with
    a warning): its owner and permissions are checked on the open file before unpickling."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        _warn(
            f"not reading the compile cache entry {path}: it cannot be opened safely "
            f"({exc.strerror or exc}; a symbolic link is not followed); the model is compiled "
            "again"
        )
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        why = _untrusted(st) if stat.S_ISREG(st.st_mode) else "it is not a regular file"
        if why:
            _warn(
                f"not reading the compile cache entry {path}: {why}; a cache entry is code "
                "run when read, so the model is compiled again"
            )
            return None
        try:
            entry = pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, ValueError):
            return None
    valid = isinstance(entry, dict) and entry.get("format") == FORMAT and entry.get("relocatable")
    return entry if valid else None


def _store(path: Path, entry: dict) -> None:
    """Write an entry owner-only, whole or not at all; a failure only warns."""
    data = pickle.dumps(entry)

    def write(tmp: Path) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, ENTRY_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    try:
        write_whole(path, write)
    except OSError as exc:
        _warn(
            f"cannot write the compile cache entry {path} ({exc.strerror or exc}); the model "
            "is kept in memory and the next process compiles it again"
        )


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
    batch: Batch,
    population: str = "fixed",
    coordinates: str = "log_k",
    structure: Structure | None = None,
) -> tuple[object, bool]:
    """The batch's compiled nutpie model with the cases' numbers as its data.

    Returns
    -------
    (model, hit)
        A ``nutpie`` compiled model ready for ``nutpie.sample``, and whether it came from the
        cache (False: compiled now, and stored on disk unless its code holds addresses of this
        process, as a model with censored levels does, or the cache folder is unsafe or
        unwritable; such code is reused within the process only).

    Warns
    -----
    CacheWarning
        When the cache folder or an entry is not to be trusted, or the folder cannot be
        created or written (the fit goes on; see the module docstring).
    """
    structure = structure or Structure.of(batch.drug)
    key = cache_key(batch, population, coordinates, structure)
    hit = True
    model = _MEMORY.get(key)
    if model is None:
        folder = cache_dir()
        usable = _open_folder(folder)
        path = folder / f"{key}.nutpie"
        entry = _read(path) if usable else None
        if entry is None:
            hit = False
            entry = _compile(batch, population, coordinates, structure)
            if usable and entry["relocatable"]:
                _store(path, entry)
        model = _MEMORY[key] = _restore(entry)
    data = batch.data
    return model.with_data(**{k: v for k, v in data.items() if k in model.shared_data}), hit
