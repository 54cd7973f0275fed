"""The Python API: the package's top-level names (imported lazily, so that ``import
dialyzability`` imports no PyMC), typed entry points, one name per concept; draws.csv."""

import inspect
import subprocess
import sys
import typing

import numpy as np
import pytest

import dialyzability
from dialyzability import api

from .conftest import ROOT

NAMES = ["load_case", "load_cases", "fit", "pool", "Fit"]


def test_top_level_names_are_the_modules_own():
    from dialyzability.io.case import load_case, load_cases
    from dialyzability.results.fit import Fit

    for name in NAMES:
        assert name in dialyzability.__all__
        assert name in dir(dialyzability)
    assert dialyzability.load_case is load_case and dialyzability.load_cases is load_cases
    assert dialyzability.fit is api.fit and dialyzability.pool is api.pool
    assert dialyzability.Fit is Fit
    with pytest.raises(AttributeError):
        _ = dialyzability.fit_pooled
    assert not hasattr(api, "fit_pooled")  # the pooled fit has one name: pool


def _modules_after(code: str) -> set[str]:
    run = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""},
    )
    return set(run.stdout.split())


def test_import_dialyzability_imports_no_pymc():
    modules = _modules_after("import dialyzability")
    assert "pymc" not in modules and "arviz" not in modules and "pytensor" not in modules
    assert "dialyzability.api" not in modules
    # reading cases needs no PyMC either
    modules = _modules_after("from dialyzability import load_case, load_cases")
    assert "pymc" not in modules


def test_public_functions_are_typed():
    for name in ("fit", "pool", "fit_cases"):
        function = getattr(api, name)
        hints = typing.get_type_hints(function)
        params = inspect.signature(function).parameters
        assert "return" in hints, name
        assert set(params) <= set(hints), (name, set(params) - set(hints))


def test_pool_and_fit_accept_paths(monkeypatch):
    from dialyzability.io.case import load_case

    from .conftest import LEE

    seen = {}

    def fake(cases, population, **options):
        seen[population] = [c.id for c in cases]

    monkeypatch.setattr(api, "fit_cases", fake)
    api.fit(LEE)
    api.pool([load_case(LEE), ROOT / "data" / "example-tidy.csv"])
    assert seen == {
        "fixed": ["lee2020-baclofen"],
        "hierarchical": ["lee2020-baclofen", "lee2020-baclofen-csv"],
    }


# --- draws.csv -------------------------------------------------------------------------------


def _posterior(directory):
    import arviz as az

    return az.from_netcdf(directory / "posterior.nc").posterior


def test_draws_csv_of_a_fit_has_the_posteriors_draws(lee_free_dir):
    import pandas as pd

    table = pd.read_csv(lee_free_dir / "draws.csv")
    post = _posterior(lee_free_dir)
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    assert list(table.columns[:3]) == [".chain", ".iteration", ".draw"]
    assert len(table) == chains * draws
    assert table[".chain"].tolist() == np.repeat(np.arange(1, chains + 1), draws).tolist()
    assert table[".iteration"].tolist() == np.tile(np.arange(1, draws + 1), chains).tolist()
    assert table[".draw"].tolist() == list(range(1, chains * draws + 1))
    ratio = post["ratio"].isel(case=0).sel(modality="HD").values.ravel()
    np.testing.assert_array_equal(table["ratio[HD]"].to_numpy(), ratio)  # exact, draw by draw
    np.testing.assert_array_equal(
        table["cl_renal"].to_numpy(), post["cl_renal"].isel(case=0).values.ravel()
    )
    # every scalar of the case's posterior, vectors flattened as name[label]
    assert "timing[t_urine1_start]" in table.columns and "pred_level[level1]" in table.columns
    assert {"hours_saved", "thalf_off", "volume"} <= set(table.columns)


def test_draws_csv_of_a_pooled_fit_is_labelled_by_case(pooled_free_dir, free_fit):
    import pandas as pd

    table = pd.read_csv(pooled_free_dir / "draws.csv")
    post = _posterior(pooled_free_dir)
    assert len(table) == post.sizes["chain"] * post.sizes["draw"]
    for case in free_fit("pooled").cases:
        for m in case.modalities:
            values = post["ratio"].sel(case=case.id, modality=m).values.ravel()
            np.testing.assert_array_equal(table[f"ratio[{case.id},{m}]"].to_numpy(), values)
    assert any(c.startswith("mu_cl_renal[") for c in table.columns)
