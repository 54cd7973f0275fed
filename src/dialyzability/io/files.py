"""Output files written whole or not at all.

Every output goes to a temporary file beside its target and is renamed into place only once it
is complete (``os.replace`` is atomic on one file system); a failure leaves the old file, if any,
and no temporary file behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_whole(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it to ``path``.

    The temporary name keeps the suffix, so writers that infer the format from it (matplotlib's
    ``savefig``) behave as for the target.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text_whole(path: str | Path, text: str) -> Path:
    """Write a UTF-8 text file whole or not at all."""
    return write_whole(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
