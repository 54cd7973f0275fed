import os
import subprocess
import sys

import pytest

from dialyzability.io.files import write_text_whole, write_whole


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "summary.json"
    write_text_whole(target, "old")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_whole(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_temporary_keeps_the_suffix(tmp_path):
    seen = []
    write_whole(tmp_path / "fit.png", lambda tmp: (seen.append(tmp.suffix), tmp.write_bytes(b"x")))
    assert seen == [".png"] and (tmp_path / "fit.png").read_bytes() == b"x"


def test_each_write_has_its_own_recognisable_temporary(tmp_path):
    """Two writers of one target never share a temporary; the name is the documented one."""
    from dialyzability.io import files

    target = tmp_path / "fit.draws.csv"
    names = []
    for _ in range(2):
        write_whole(target, lambda tmp: (names.append(tmp.name), tmp.write_text("x")))
    assert names[0] != names[1]
    for name in names:
        m = files._temporary(target).match(name)
        assert m and int(m["pid"]) == os.getpid() and name.endswith(".csv")


def test_temporaries_of_dead_writers_are_removed_by_the_next_write(tmp_path):
    """A temporary left by a killed process of this host is removed by the next write of the
    same target; one of a running process, of another host or of another target is kept."""
    from dialyzability.io import files

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    target = tmp_path / "summary.json"
    host = files._host()
    other_host = "0" * 8 if host != "0" * 8 else "1" * 8
    stale = tmp_path / f".summary.tmp-{host}-{dead.pid}-0123abcd.json"
    alive = tmp_path / f".summary.tmp-{host}-{os.getppid()}-0123abcd.json"
    remote = tmp_path / f".summary.tmp-{other_host}-{dead.pid}-0123abcd.json"
    other = tmp_path / f".report.tmp-{host}-{dead.pid}-0123abcd.json"
    for p in (stale, alive, remote, other):
        p.write_text("half")
    assert files.stale_temporaries(target) == [stale]
    write_text_whole(target, "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (target, alive, remote, other)
    )
