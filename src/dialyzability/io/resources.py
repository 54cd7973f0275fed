"""Where the shipped drug models and published cases live.

In a wheel they are inside the package (``dialyzability/_resources``); in a source checkout or an
editable install they are the top-level ``models/`` and ``data/`` folders.
"""

from __future__ import annotations

from pathlib import Path

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
