"""A saved fit read by ArviZ (DESIGN §7): every group with its named, labelled dimensions;
``az.loo``, ``az.plot_ppc`` and ``az.summary`` on it. On a single-case and a pooled NUTS-free
fit (tests/conftest.py), saved and loaded again; one comparison with the real CLI fit checks
that the NUTS-free fits have its layout."""

import json
import re
import warnings

import arviz as az
import numpy as np
import pytest

from dialyzability.design import OBSERVATIONS
from dialyzability.inference.run import PRIOR_DRAWS
from dialyzability.results.fit import Fit

GROUPS = (
    "posterior",
    "sample_stats",
    "observed_data",
    "constant_data",
    "log_likelihood",
    "posterior_predictive",
    "prior",
    "prior_predictive",
)
#: the sampler's own unnamed dimensions (e.g. clearance_raw_dim_0), never labelled
UNNAMED = re.compile(r"_dim_\d+$")


@pytest.fixture(scope="module", params=["single", "pooled"])
def saved(request):
    """(fit loaded from its posterior.nc, the directory it was written to)."""
    directory = request.getfixturevalue(
        "lee_free_dir" if request.param == "single" else "pooled_free_dir"
    )
    return Fit.load(directory), directory


def observed_variables(idata) -> list[str]:
    return list(idata.log_likelihood.data_vars)


def test_every_group_is_present_with_labelled_dims(saved):
    fit, _ = saved
    idata, batch = fit.idata, fit.batch
    assert set(GROUPS) <= set(idata.groups())
    coords = batch.coords()
    for group in GROUPS:
        ds = idata[group]
        for dim in ds.dims:
            if dim in ("chain", "draw") or UNNAMED.search(dim):
                continue
            assert dim in coords, f"{group}: dimension {dim} is not a named dimension"
            assert list(ds[dim].values) == coords[dim], f"{group}: {dim} mislabelled"
    post = idata.posterior
    named = {"case", "modality", "level", "urine", "session", "effluent", "latent_time", "oral"}
    assert named <= set(post.dims)
    assert post["cl_ectr"].dims == ("chain", "draw", "case", "modality")
    assert post["pred_level"].dims == ("chain", "draw", "level")
    assert post["timing"].dims == ("chain", "draw", "latent_time")
    assert list(post["case"].values) == batch.ids
    if fit.population == "hierarchical":
        assert post["mu_cl_renal"].dims == ("chain", "draw", "kidney")
        assert list(post["kidney"].values) == list(batch.kidney_classes)
    else:
        assert list(post["level"].values) == ["level1"]  # a single case's own labels
    # the prior: one chain of forward draws of the same variables
    assert idata.prior.sizes["chain"] == 1 and idata.prior.sizes["draw"] == PRIOR_DRAWS
    assert set(idata.prior.data_vars) == set(post.data_vars)
    # one observed variable per kind of observation present, the same in every group of them
    kinds = [k for k in OBSERVATIONS if len(k.select(batch))]
    variables = [k.variable for k in kinds]
    for group in ("observed_data", "log_likelihood", "posterior_predictive", "prior_predictive"):
        assert list(idata[group].data_vars) == variables
    for k in kinds:
        obs = idata.observed_data[k.variable]
        assert obs.dims == (k.name,)
        np.testing.assert_array_equal(obs.values, k.select(batch).value)
        for group in ("log_likelihood", "posterior_predictive"):
            assert idata[group][k.variable].dims == ("chain", "draw", k.name)
            assert idata[group][k.variable].shape[:2] == post["cl_renal"].shape[:2]
        assert np.all(idata.posterior_predictive[k.variable].values > 0)
    constant = idata.constant_data
    np.testing.assert_array_equal(constant["level_below_lloq"].values, batch.levels.censored)
    assert list(constant["dose_total"].values) == [
        sum(d.amount for d in c.doses) for c in fit.cases
    ]
    assert not idata.sample_stats["diverging"].values.any()


@pytest.mark.parametrize("key", ["lee", "pooled"])
def test_a_new_fit_lists_each_group_once(free_fit, key):
    """Fit.from_run adds the stored quantities without listing a group twice (which would
    also write it twice into posterior.nc)."""
    groups = free_fit(key).idata.groups()
    assert sorted(groups) == sorted(GROUPS)


def test_loo_of_each_observed_variable(saved):
    fit, _ = saved
    idata = fit.idata
    for name in observed_variables(idata):
        with warnings.catch_warnings():  # prior draws: PSIS warns of large Pareto k
            warnings.simplefilter("ignore", UserWarning)
            loo = az.loo(idata, var_name=name)
        assert np.isfinite(loo.elpd_loo) and np.isfinite(loo.se)
        assert loo.n_data_points == idata.observed_data[name].size
        assert loo.n_samples == idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]


def test_plot_ppc_of_each_observed_variable(saved):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fit, _ = saved
    for name in observed_variables(fit.idata):
        with warnings.catch_warnings():  # one observation has no spread; ArviZ's own
            warnings.simplefilter("ignore", UserWarning)  # deprecated matplotlib calls
            warnings.simplefilter("ignore", DeprecationWarning)
            axes = az.plot_ppc(fit.idata, var_names=[name], num_pp_samples=50, random_seed=0)
        axes = np.atleast_1d(axes).ravel()
        try:
            assert len(axes) == 1 and name in axes[0].get_xlabel()
            assert len(axes[0].get_lines()) >= 50  # the predictive draws, observed, mean
        finally:
            plt.close("all")


def test_az_summary_has_a_row_per_case_and_modality(saved):
    fit, _ = saved
    names = ["ratio", "cl_ectr", "thalf_on"]
    table = az.summary(fit.idata, var_names=names, hdi_prob=0.95)
    ids, modalities = fit.batch.ids, fit.batch.modalities
    expected = {f"{v}[{c}, {m}]" for v in names for c in ids for m in modalities}
    assert set(table.index) == expected and len(table) == len(expected)
    assert np.all(np.isfinite(table[["mean", "sd", "hdi_2.5%", "hdi_97.5%"]].to_numpy()))
    # its ratio is the posterior's cl_ectr / cl_renal, case by case and modality by modality
    post = fit.idata.posterior
    c, m = ids[-1], modalities[-1]
    ratio = post["cl_ectr"].sel(case=c, modality=m) / post["cl_renal"].sel(case=c)
    assert table.loc[f"ratio[{c}, {m}]", "mean"] == pytest.approx(float(ratio.mean()), rel=1e-3)


def test_nuts_free_fits_have_the_layout_of_a_real_fit(lee_fit_dir, lee_free_dir):
    """The NUTS-free fit copies a real one: the same groups, variables and dimensions, and a
    summary.json with the same keys (so tests on it test what a real fit writes)."""
    real, free = Fit.load(lee_fit_dir).idata, Fit.load(lee_free_dir).idata
    assert set(real.groups()) == set(free.groups())
    for group in real.groups():
        if group == "sample_stats":  # the sampler's own statistics; the gate reads diverging
            assert "diverging" in real[group] and "diverging" in free[group]
            continue
        assert set(real[group].data_vars) == set(free[group].data_vars), group
        for name in real[group].data_vars:
            assert real[group][name].dims == free[group][name].dims, (group, name)
        same = {d: n for d, n in real[group].sizes.items() if d not in ("chain", "draw")}
        assert same == {d: n for d, n in free[group].sizes.items() if d not in ("chain", "draw")}

    def keys(obj):
        if isinstance(obj, dict):
            return {k: keys(v) for k, v in obj.items()}
        return type(obj).__name__ if not isinstance(obj, int | float) else "number"

    real_summary = json.loads((lee_fit_dir / "summary.json").read_text())
    free_summary = json.loads((lee_free_dir / "summary.json").read_text())
    assert keys(real_summary) == keys(free_summary)
