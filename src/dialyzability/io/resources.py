"""Where the shipped drug models and published cases live, and the user's folder of drug models.

In a wheel they are inside the package (``dialyzability/_resources``); in a source checkout or an
editable install they are the top-level ``models/`` and ``data/`` folders.

A user folder of drug models (``--models-dir`` on every command, or the environment variable
:data:`MODELS_ENV`) is searched before the shipped one (:func:`dialyzability.io.drugs.drug_file`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

#: environment variable naming a folder of user drug models
MODELS_ENV = "DIALYZABILITY_MODELS"

_USER_MODELS: ContextVar[Path | None] = ContextVar("user_models", default=None)

_PACKAGE = Path(__file__).resolve().parent.parent  # the dialyzability package


def _resource(name: str) -> Path:
    inside = _PACKAGE / "_resources" / name
    if inside.is_dir():
        return inside
    return _PACKAGE.parent.parent / name


def models_dir() -> Path:
    """Folder of the drug models (``*.toml``)."""
    return _resource("models")


def data_dir() -> Path:
    """Folder of the shipped data (``cases/`` and its README)."""
    return _resource("data")


def user_models_dir() -> Path | None:
    """The user's folder of drug models: the one set by :func:`use_models_dir` (the
    ``--models-dir`` option), else ``$DIALYZABILITY_MODELS``, else None. Not checked here."""
    folder = _USER_MODELS.get()
    if folder is not None:
        return folder
    env = os.environ.get(MODELS_ENV, "").strip()
    return Path(env).expanduser() if env else None


@contextmanager
def use_models_dir(folder: str | Path | None) -> Iterator[None]:
    """Within the block, drug models are looked up in ``folder`` before the shipped ones
    (``None``: leave the current choice, e.g. ``$DIALYZABILITY_MODELS``, in force)."""
    if folder is None:
        yield
        return
    token = _USER_MODELS.set(Path(folder).expanduser())
    try:
        yield
    finally:
        _USER_MODELS.reset(token)
