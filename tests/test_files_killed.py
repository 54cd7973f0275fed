"""Outputs whole or not at all, even when the writer is killed.

A child process rewrites one target over and over through :mod:`dialyzability.io.files` (a
3 MB file in 64 kB chunks with ``write_whole``, or a 4 MB text with ``write_text_whole``), each
generation with its own content; the test kills it with SIGKILL after a seeded random delay and
checks that the target is one complete generation (the old content or a new one, never a mix or
a prefix) and that nothing but the writer's documented temporary names is left beside it. The
next write (the next trial's child, and a last write here) removes the temporaries of killed
writers.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dialyzability.io import files
from dialyzability.io.files import write_text_whole

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

SRC = Path(files.__file__).resolve().parents[2]
CHUNK = 1 << 16
BYTES_SIZE = 3 << 20  # 3 MB, 48 chunks
TEXT_SIZE = 4 << 20

CHILD = """
import sys, time
from dialyzability.io.files import write_text_whole, write_whole

target, mode, size, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def content(g):
    return (f"{g:08d}" * (size // 8)).encode()

def chunked(data):
    def write(tmp):
        with open(tmp, "wb") as f:
            for i in range(0, len(data), chunk):
                f.write(data[i : i + chunk])
                f.flush()
                time.sleep(0.0003)  # stretch the write so that kills land inside it
    return write

texts = [content(1).decode(), content(2).decode()] if mode == "text" else []
print("ready", flush=True)
g = 1
while True:
    if mode == "bytes":
        write_whole(target, chunked(content(g)))
        g += 1
    else:  # generations 1 and 2 in turn, made beforehand: the loop is all writing
        write_text_whole(target, texts[g - 1])
        g = 3 - g
"""


def _content(generation: int, size: int) -> bytes:
    return (f"{generation:08d}" * (size // 8)).encode()


def _generation(data: bytes, size: int) -> int:
    """The generation the target holds; fails the test unless it is one complete generation."""
    assert len(data) == size, f"partial target: {len(data)} of {size} bytes"
    generation = int(data[:8])
    assert data == _content(generation, size), "target mixes two generations"
    return generation


def _kill_trials(tmp_path, mode: str, size: int, trials: int, seed: int) -> tuple[set, int]:
    target = tmp_path / ("out.bin" if mode == "bytes" else "report.md")
    target.write_bytes(_content(0, size))  # the old complete content
    rng = random.Random(seed)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    seen, left = set(), 0
    for _ in range(trials):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(target), mode, str(size), str(CHUNK)],
            stdout=subprocess.PIPE,
            env=env,
        )
        try:
            assert child.stdout.readline() == b"ready\n"
            # the child's first write is still going on after 0.15 s (48 chunks, 0.3 ms apart,
            # plus the writes themselves); later delays land in later generations
            time.sleep(rng.uniform(0.0, 0.25))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        seen.add(_generation(target.read_bytes(), size))
        others = [p.name for p in tmp_path.iterdir() if p != target]
        pattern = files._temporary(target)
        for name in others:
            m = pattern.match(name)
            assert m, f"unexpected file beside the target: {name}"
            assert int(m["pid"]) == child.pid, f"a temporary of an earlier writer remains: {name}"
        assert len(others) <= 1
        left += len(others)
    # a write after the last kill removes the killed writer's temporary
    write_text_whole(target, "final")
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    assert target.read_text() == "final"
    return seen, left


def test_write_whole_killed_at_random_points_leaves_old_or_new(tmp_path):
    """16 kills of a chunked ``write_whole`` of 3 MB: the target is always a complete
    generation; temporaries are left by some kills (the writes were interrupted) and removed by
    the next write."""
    seen, left = _kill_trials(tmp_path, "bytes", BYTES_SIZE, trials=16, seed=20261201)
    assert left >= 1, "no kill landed inside a write: the test did not exercise the writer"
    assert len(seen) >= 2  # both the old content and new ones were observed


def test_write_text_whole_killed_at_random_points_leaves_old_or_new(tmp_path):
    """8 kills of ``write_text_whole`` of 4 MB: the target is always a complete generation and
    only documented temporaries (of the killed writer) remain until the next write."""
    seen, _ = _kill_trials(tmp_path, "text", TEXT_SIZE, trials=8, seed=7)
    assert seen
