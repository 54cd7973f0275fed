"""Output files written whole or not at all.

Every output goes to a temporary file beside its target and is renamed into place only once it
is complete (``os.replace`` is atomic on one file system): a reader, or the next run, sees the
old file or the new one, never a part of either, even when the writing process is killed.

Temporary files are named ``.<stem>.tmp-<host>-<pid>-<token><suffix>`` beside the target
(``<host>`` an 8-hex-digit hash of the host name, ``<pid>`` the writing process, ``<token>``
random, so that two processes writing the same target never share one; the target's suffix is
kept). A failure (an exception) removes the temporary file. A process killed outright (SIGKILL,
power loss) cannot clean up, so its temporary file can remain; the next write of the same target
removes those left by processes of this host that are no longer running. Any file matching that
pattern is safe to delete when no dialyzability process is writing.

The rename is atomic against the death of the process; the data are not forced to disk
(``fsync``), so after a crash of the whole machine a file system may still show an empty file.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
from collections.abc import Callable
from pathlib import Path


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temporary_name(path: Path) -> Path:
    """A fresh temporary path beside ``path`` (the pattern in the module docstring)."""
    token = secrets.token_hex(4)
    return path.with_name(f".{path.stem}.tmp-{_host()}-{os.getpid()}-{token}{path.suffix}")


def _temporary(path: Path) -> re.Pattern[str]:
    """The names of temporary files of ``path``: groups ``host`` and ``pid``."""
    stem, suffix = re.escape(path.stem), re.escape(path.suffix)
    return re.compile(
        rf"^\.{stem}\.tmp-(?P<host>[0-9a-f]{{8}})-(?P<pid>\d+)-[0-9a-f]{{8}}{suffix}$"
    )


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or no way to tell: leave its file alone
    return True


def stale_temporaries(path: str | Path) -> list[Path]:
    """Temporary files of ``path`` left by processes of this host that are no longer running."""
    path = Path(path)
    pattern, host = _temporary(path), _host()
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    out = []
    for name in names:
        m = pattern.match(name)
        if m and m["host"] == host and int(m["pid"]) != os.getpid() and not _running(int(m["pid"])):
            out.append(path.parent / name)
    return sorted(out)


def _remove_stale(path: Path) -> None:
    for stale in stale_temporaries(path):
        try:
            stale.unlink()
        except OSError:
            pass  # another writer removed it first, or it is not ours to remove


def write_whole(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it to ``path``.

    The temporary name keeps the suffix, so writers that infer the format from it (matplotlib's
    ``savefig``) behave as for the target. Temporary files of the same target left by killed
    processes are removed first (see the module docstring).
    """
    path = Path(path)
    _remove_stale(path)
    tmp = temporary_name(path)
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
