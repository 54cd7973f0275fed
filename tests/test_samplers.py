"""One layout of the saved posterior whichever sampler ran (DESIGN §7)."""

import numpy as np

from dialyzability.api import fit
from dialyzability.io.case import load_case
from dialyzability.results.fit import Fit

from .conftest import LEE

SHORT = {"draws": 40, "tune": 40, "chains": 2, "seed": 5}


def _layout(idata) -> dict:
    """Group -> variable -> dims, and the coordinate labels of every named dimension."""
    groups = {g: {v: idata[g][v].dims for v in idata[g].data_vars} for g in idata.groups()}
    coords = {
        d: list(np.asarray(idata.posterior[d].values))
        for d in idata.posterior.dims
        if d not in ("chain", "draw")
    }
    return {"groups": groups, "coords": coords}


def test_nutpie_and_pymc_write_the_same_layout(tmp_path):
    case = load_case(LEE)
    layouts = {}
    for sampler in ("nutpie", "pymc"):
        result = fit(case, sampler=sampler, **SHORT)
        result.save(tmp_path / sampler)
        layouts[sampler] = _layout(Fit.load(tmp_path / sampler).idata)
    nutpie, pymc = layouts["nutpie"], layouts["pymc"]
    # sample statistics are each sampler's own; every other group is the same
    for layout in (nutpie, pymc):
        layout["groups"].pop("sample_stats")
    assert nutpie == pymc
    assert {"posterior", "prior", "observed_data", "log_likelihood"} <= set(nutpie["groups"])
    assert nutpie["groups"]["posterior"]["cl_ectr"] == ("chain", "draw", "case", "modality")
