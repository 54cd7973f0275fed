"""The compile cache: one compiled model per structure, with each batch's numbers as its data.

The machine code taken from the cache is called directly (as nutpie calls it) and compared with
the log density and gradient of a PyMC model freshly built for the same case.
"""

import ctypes
import os
import stat
import subprocess
import sys
import warnings

import numpy as np
import pytest

from dialyzability.design import make_batch
from dialyzability.inference import compiled
from dialyzability.io.case import parse_case
from dialyzability.io.drugs import load_drug
from dialyzability.model.build import build_model
from dialyzability.simulate import simulate_population


def _batch(*cases, drug=None):
    return make_batch(list(cases), drug or load_drug(cases[0].drug))


def _key(*cases, population="fixed"):
    return compiled.cache_key(_batch(*cases), population)


_SIGNATURE = ctypes.CFUNCTYPE(
    ctypes.c_int64,
    ctypes.c_uint64,
    ctypes.POINTER(ctypes.c_double),
    ctypes.POINTER(ctypes.c_double),
    ctypes.POINTER(ctypes.c_double),
    ctypes.c_void_p,
)


def _call(model, x):
    """(logp, gradient) of a nutpie compiled model at the unconstrained point ``x``."""
    f = _SIGNATURE(model.compiled_logp_func.address)
    x = np.ascontiguousarray(x, dtype=float)
    grad, logp = np.zeros_like(x), np.zeros(1)
    ptr = ctypes.POINTER(ctypes.c_double)
    code = f(
        len(x),
        x.ctypes.data_as(ptr),
        grad.ctypes.data_as(ptr),
        logp.ctypes.data_as(ptr),
        model.user_data.ctypes.data,
    )
    assert code == 0
    return logp[0], grad


def _fresh(case, drug, model):
    """x -> (logp, gradient) of a freshly built PyMC model of ``case``, x laid out as in the
    compiled ``model``."""
    pm_model = build_model([case], drug).model
    logp = pm_model.compile_logp(jacobian=True)
    dlogp = pm_model.compile_dlogp(jacobian=True)
    names, slices, shapes = model.shape_info

    def at(x):
        point, used = {}, 0
        for name, sl, shape in zip(names, slices, shapes, strict=True):
            if used == model.n_dim:
                break
            point[name] = x[sl].reshape(shape)
            used = sl.stop
        return float(logp(point)), np.asarray(dlogp(point))

    return at


def _variant(raw):
    """The case with every number changed: dose, level, both ranges, weight."""
    raw["doses"][0]["amount"] = "900 mg"
    raw["concentrations"][0]["value"] = "1.4 mg/L"
    raw["urine"][0]["start_h"] = [4, 9]
    raw["sessions"][0]["start_h"] = [20, 26]
    raw["patient"]["weight"] = "63 kg"
    return raw


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIALYZABILITY_CACHE", str(tmp_path))
    monkeypatch.setattr(compiled, "_MEMORY", {})
    return tmp_path


def test_same_structure_reuses_the_code_with_the_new_numbers(cache, lee_raw):
    """Lee 2020 and a variant with every number changed (dose, level, ranges, weight): one
    compilation; the cached code gives the variant's own log density and gradient."""
    drug = load_drug("baclofen")
    case = parse_case(lee_raw, "lee.toml")
    other = parse_case(_variant(lee_raw), "variant.toml")
    assert _batch(case).structure() == _batch(other).structure()
    assert _key(case) == _key(other)
    first, hit_first = compiled.compiled_model(_batch(case))
    compiled._MEMORY.clear()  # the second look-up reads the file
    second, hit_second = compiled.compiled_model(_batch(other))
    assert (hit_first, hit_second) == (False, True)
    assert len(list(cache.glob("*.nutpie"))) == 1
    rng = np.random.default_rng(5)
    fresh = [(first, _fresh(case, drug, first)), (second, _fresh(other, drug, second))]
    for _ in range(3):
        x = rng.normal(0.0, 0.7, size=second.n_dim)
        for model, at in fresh:
            logp, grad = _call(model, x)
            want, want_grad = at(x)
            assert logp == pytest.approx(want, rel=1e-10, abs=1e-10)
            np.testing.assert_allclose(grad, want_grad, rtol=1e-8, atol=1e-10)
        # and the two cases really differ at this point
        assert _call(first, x)[0] != pytest.approx(_call(second, x)[0], rel=1e-6)


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r["concentrations"].append({"time_h": 20, "value": "0.5 mg/L"}),
        lambda r: r["sessions"][0].update(start_h=16),  # a range becomes a known time
        lambda r: r["sessions"][0].update(modality="CVVH"),
        lambda r: r["patient"].pop("weight"),
        lambda r: r["concentrations"][0].update(below_lloq=True, lloq="0.1 mg/L"),
    ],
    ids=["extra level", "known start", "modality", "no weight", "censored"],
)
def test_a_different_structure_has_another_key(lee_raw, change):
    case = parse_case(lee_raw, "lee.toml")
    change(lee_raw)
    other = parse_case(lee_raw, "other.toml")
    assert _key(case) != _key(other)


def test_free_text_does_not_change_the_key(lee_raw):
    case = parse_case(lee_raw, "lee.toml")
    lee_raw.update(id="another", reference="Someone 2030", notes="n")
    assert _key(case) == _key(parse_case(lee_raw, "x"))


def test_a_pooled_batch_is_keyed_by_its_structure_and_layer():
    """A pooled refit of the same cases under another timing assumption (a range moved) has
    the same key; another population layer, or one case more, has another."""
    raws, _, _ = simulate_population(6, seed=3)
    cases = [parse_case(r, r["id"]) for r in raws]
    key = _key(*cases, population="hierarchical")
    sparse = next(r for r in raws if r["urine"] and isinstance(r["urine"][0]["start_h"], list))
    lo, hi = sparse["urine"][0]["start_h"]
    sparse["urine"][0]["start_h"] = [lo + 0.5, hi + 1.0]
    moved = [parse_case(r, r["id"]) for r in raws]
    assert _batch(*moved).data["timing_lo"].tolist() != _batch(*cases).data["timing_lo"].tolist()
    assert _key(*moved, population="hierarchical") == key
    assert _key(*cases, population="fixed") != key
    assert _key(*cases[:-1], population="hierarchical") != key


# a small structure (one iv dose, two levels) so that the races below compile quickly
SMALL = {
    "id": "small",
    "drug": "lithium",
    "patient": {"weight": "70 kg"},
    "doses": [{"time_h": 0, "amount": "500 mg", "route": "iv"}],
    "concentrations": [
        {"time_h": 2, "value": "4 mg/L"},
        {"time_h": [10, 12], "value": "2 mg/L"},
    ],
}


def test_an_unreadable_entry_is_compiled_again(cache):
    case = parse_case(SMALL, "small.toml")
    path = cache / f"{_key(case)}.nutpie"
    path.write_bytes(b"not a cache entry")
    model, hit = compiled.compiled_model(_batch(case))
    assert not hit
    assert path.stat().st_size > 1000
    logp, _ = _call(model, np.zeros(model.n_dim))
    assert np.isfinite(logp)


def test_two_processes_compiling_at_once_both_succeed(cache):
    """Two fresh processes compile the same structure into an empty cache at the same time:
    both get a working model, one complete entry remains and no temporary file."""
    script = (
        "import sys\n"
        "from dialyzability.io.case import parse_case\n"
        "from dialyzability.design import make_batch\n"
        "from dialyzability.inference.compiled import compiled_model\n"
        "from dialyzability.io.drugs import load_drug\n"
        f"case = parse_case({SMALL!r}, 'small.toml')\n"
        "model, hit = compiled_model(make_batch([case], load_drug(case.drug)))\n"
        "print(model.n_dim, hit)\n"
    )
    env = {**os.environ, "DIALYZABILITY_CACHE": str(cache)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    n_dims = {o.split()[0] for o in outputs}
    assert len(n_dims) == 1
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 1 and files[0].endswith(".nutpie")
    # and a third process now finds it
    third = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert third.stdout.split() == [n_dims.pop(), "True"]


def test_code_bound_to_this_process_is_not_stored(cache):
    """A censored level's Student-t CDF calls scipy through an address of this process: such
    code is reused in the process but never written to the shared cache (another process
    would crash on it)."""
    raw = {
        **SMALL,
        "concentrations": [
            {"time_h": 2, "value": "4 mg/L"},
            {"time_h": 30, "below_lloq": True, "lloq": "0.1 mg/L"},
        ],
    }
    batch = _batch(parse_case(raw, "censored.toml"))
    _, hit = compiled.compiled_model(batch)
    assert not hit
    assert list(cache.iterdir()) == []
    again, hit = compiled.compiled_model(batch)
    assert hit  # from this process's memory
    logp, _ = _call(again, np.zeros(again.n_dim))
    assert np.isfinite(logp)


# ------------------------------------------------------------------ the cache lets no one in
#
# Reading an entry unpickles it (code is run), so entries of other users or in folders others
# can write are never read. These tests compile SMALL once for the module; in each test the
# compile step is a stub returning that real entry, so the model restored from it is a working
# one (its log density is called) and the tests stay fast.


@pytest.fixture(scope="module")
def small_entry():
    case = parse_case(SMALL, "small.toml")
    return compiled._compile(_batch(case), "fixed", "log_k")


@pytest.fixture
def stub_compile(small_entry, monkeypatch):
    """The compile step replaced by the module's real entry; returns the list of calls."""
    calls = []

    def compile_(batch, population, coordinates, structure=None):
        calls.append(population)
        return small_entry

    monkeypatch.setattr(compiled, "_compile", compile_)
    monkeypatch.setattr(compiled, "_MEMORY", {})
    return calls


@pytest.fixture
def no_unpickling(monkeypatch):
    """Fails the test if anything is unpickled from the cache."""

    def load(f, *args, **kwargs):
        raise AssertionError(f"unpickled {getattr(f, 'name', f)}")

    monkeypatch.setattr(compiled.pickle, "load", load)


def _small_batch():
    return _batch(parse_case(SMALL, "small.toml"))


def _works(model):
    logp, grad = _call(model, np.zeros(model.n_dim))
    return np.isfinite(logp) and np.all(np.isfinite(grad))


def _plant(folder, small_entry, mode=0o600):
    """An entry at the SMALL key, written by 'someone' (as this user; ownership is faked)."""
    path = folder / f"{compiled.cache_key(_small_batch(), 'fixed')}.nutpie"
    path.write_bytes(compiled.pickle.dumps(small_entry))
    os.chmod(path, mode)
    return path


def test_cache_folder_and_entries_are_owner_only(tmp_path, monkeypatch, stub_compile):
    """A missing cache folder is created 0o700 and its entry written 0o600, without a
    warning; the next process-level look-up reads it back."""
    folder = tmp_path / "home" / "cache"
    monkeypatch.setenv("DIALYZABILITY_CACHE", str(folder))
    with warnings.catch_warnings():
        warnings.simplefilter("error", compiled.CacheWarning)
        model, hit = compiled.compiled_model(_small_batch())
        assert not hit and _works(model)
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        (entry,) = folder.iterdir()
        assert stat.S_IMODE(entry.stat().st_mode) == 0o600
        compiled._MEMORY.clear()
        again, hit = compiled.compiled_model(_small_batch())
    assert hit and _works(again) and stub_compile == ["fixed"]


def test_entry_of_another_user_is_not_unpickled(
    tmp_path, monkeypatch, small_entry, stub_compile, no_unpickling
):
    """An entry owned by someone else (ownership faked: the open file's status says another
    uid) warns, is never unpickled, and the model is compiled; the folder being the user's
    own, the fresh entry replaces the foreign one."""
    monkeypatch.setenv("DIALYZABILITY_CACHE", str(tmp_path))
    path = _plant(tmp_path, small_entry)
    real_fstat, me = os.fstat, os.getuid()

    def fstat(fd):
        st = list(real_fstat(fd))
        st[stat.ST_UID] = me + 1
        return os.stat_result(st)

    monkeypatch.setattr(compiled.os, "fstat", fstat)
    with pytest.warns(compiled.CacheWarning, match="owned by another user") as record:
        model, hit = compiled.compiled_model(_small_batch())
    assert str(path) in str(record[0].message)
    assert not hit and _works(model) and stub_compile == ["fixed"]
    monkeypatch.setattr(compiled.os, "fstat", real_fstat)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # rewritten by this user


@pytest.mark.parametrize("mode", [0o620, 0o602], ids=["group", "others"])
def test_entry_writable_by_others_is_not_unpickled(
    tmp_path, monkeypatch, small_entry, stub_compile, no_unpickling, mode
):
    monkeypatch.setenv("DIALYZABILITY_CACHE", str(tmp_path))
    path = _plant(tmp_path, small_entry, mode)
    who = "group" if mode & 0o020 else "others"
    with pytest.warns(compiled.CacheWarning, match=f"writable by {who}") as record:
        model, hit = compiled.compiled_model(_small_batch())
    assert str(path) in str(record[0].message)
    assert not hit and _works(model) and stub_compile == ["fixed"]


def test_symlinked_entry_is_not_followed(
    tmp_path, monkeypatch, small_entry, stub_compile, no_unpickling
):
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("DIALYZABILITY_CACHE", str(folder))
    elsewhere = _plant(tmp_path, small_entry)
    (folder / elsewhere.name).symlink_to(elsewhere)
    with pytest.warns(compiled.CacheWarning, match="cannot be opened safely"):
        model, hit = compiled.compiled_model(_small_batch())
    assert not hit and _works(model)


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_folder_writable_by_others_is_neither_read_nor_written(
    tmp_path, monkeypatch, small_entry, stub_compile, no_unpickling, mode
):
    """A planted entry (0o600, this user's) in a folder others can write is never unpickled,
    the model is compiled in memory, and nothing is written into that folder."""
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, mode)
    monkeypatch.setenv("DIALYZABILITY_CACHE", str(folder))
    path = _plant(folder, small_entry)
    before = path.read_bytes(), path.stat().st_mtime_ns
    with pytest.warns(compiled.CacheWarning, match="writable by") as record:
        model, hit = compiled.compiled_model(_small_batch())
    message = str(record[0].message)
    assert str(folder) in message and f"mode {mode:o}" in message and "chmod 700" in message
    assert not hit and _works(model) and stub_compile == ["fixed"]
    assert [p.name for p in folder.iterdir()] == [path.name]
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert stat.S_IMODE(folder.stat().st_mode) == mode  # never changed


def test_folder_of_another_user_is_neither_read_nor_written(
    tmp_path, monkeypatch, small_entry, stub_compile, no_unpickling
):
    """Ownership faked through ``os.getuid``: the folder (and its 0o700 mode) belongs to
    someone else, so nothing in it is read and nothing is written."""
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("DIALYZABILITY_CACHE", str(folder))
    path = _plant(folder, small_entry)
    uid = os.getuid()
    monkeypatch.setattr(compiled.os, "getuid", lambda: uid + 1)
    with pytest.warns(compiled.CacheWarning, match="owned by another user") as record:
        model, hit = compiled.compiled_model(_small_batch())
    assert str(folder) in str(record[0].message)
    assert not hit and _works(model)
    assert [p.name for p in folder.iterdir()] == [path.name]


def test_uncreatable_cache_folder_falls_back_to_memory(tmp_path, monkeypatch, stub_compile):
    """The cache path runs through a regular file, so the folder cannot be created: a warning,
    the model compiled in memory, and within the process the next look-up is a hit."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    folder = blocker / "cache"
    monkeypatch.setenv("DIALYZABILITY_CACHE", str(folder))
    with pytest.warns(compiled.CacheWarning, match="cannot create the compile cache folder") as rec:
        model, hit = compiled.compiled_model(_small_batch())
    assert str(folder) in str(rec[0].message)
    assert not hit and _works(model)
    assert compiled.compiled_model(_small_batch())[1]  # from memory
    assert blocker.read_text() == "" and stub_compile == ["fixed"]


def test_unwritable_cache_folder_falls_back_to_memory(tmp_path, monkeypatch, stub_compile):
    """A read-only cache folder (0o500): the entry cannot be written, a warning, the fit goes
    on. (Run as root, permissions do not bind, so the write is made to fail as it would.)"""
    folder = tmp_path / "readonly"
    folder.mkdir(mode=0o700)
    os.chmod(folder, 0o500)
    monkeypatch.setenv("DIALYZABILITY_CACHE", str(folder))
    if os.geteuid() == 0:

        def refuse(path, write):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(compiled, "write_whole", refuse)
    try:
        with pytest.warns(compiled.CacheWarning, match="cannot write the compile cache entry"):
            model, hit = compiled.compiled_model(_small_batch())
        assert not hit and _works(model)
        assert list(folder.iterdir()) == []
    finally:
        os.chmod(folder, 0o700)
