"""The pointwise log-likelihood of the saved posterior (leave-one-out conditionals of the
non-factorised Student-t model, model/observations.py) against hand arithmetic, quadrature and
the marginal density; the comparison of fits by PSIS-LOO (results/compare.py) and the
``compare`` command, on posteriors made without NUTS."""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import gammaln

from dialyzability.design import LOG_LIKELIHOOD, ObservationKind, Observations
from dialyzability.model import observations as O

NU, S = 4.0, 0.5


def _kind_and_batch(monkeypatch, log_y, case, censored=None, n_cases=None):
    """One kind of observation over a batch-like object, with error prior (ν, s) = (4, 0.5)."""
    log_y = np.asarray(log_y, dtype=float)
    censored = np.zeros(len(log_y), bool) if censored is None else np.asarray(censored)
    obs = Observations(
        labels=tuple(f"level{i + 1}" for i in range(len(log_y))),
        case=np.asarray(case, dtype=int),
        where=np.arange(len(log_y)),
        value=np.exp(log_y),
        censored=censored,
    )
    kind = ObservationKind("level", "concentration", "level", "Plasma level", "mg/L", lambda b: obs)
    n_cases = int(np.max(case)) + 1 if n_cases is None else n_cases
    batch = SimpleNamespace(n_cases=n_cases, drug=SimpleNamespace(errors={"level": None}))
    monkeypatch.setattr(O, "error_prior", lambda prior: (NU, S))
    return kind, batch


def _loglik(kind, batch, pred, prior=False):
    return O.draws(kind, batch, np.atleast_2d(pred), np.random.default_rng(0), prior)[0]


def test_loo_conditional_by_hand(monkeypatch):
    """ν = 4, s = 0.5, one case, three levels at μ = 1 (log μ = 0), residuals r = 0.1, -0.2, 0.3.
    Observation 1: Σ_{j≠1} r_j² = 0.04 + 0.09 = 0.13, dof ν + n - 1 = 6,
    dof·scale² = ν s² + 0.13 = 1.13, so
    log p = lnΓ(3.5) - lnΓ(3) - ½ ln(π·1.13) - 3.5 ln(1 + 0.01/1.13) - log y_1
          = 0.5078264 - 0.6334738 - 0.0308372 - 0.1 = -0.2564845.
    Observation 2 (others 0.01 + 0.09 = 0.10, 1.10): 0.5078264 - 0.6200200 - 0.1250133 + 0.2
    = -0.0372069. Observation 3 (others 0.05, 1.05): 0.5078264 - 0.5967600 - 0.2878333 - 0.3
    = -0.6767669."""
    r = np.array([0.1, -0.2, 0.3])
    kind, batch = _kind_and_batch(monkeypatch, r, [0, 0, 0])
    got = _loglik(kind, batch, np.ones((1, 3)))
    np.testing.assert_allclose(got[0], [-0.2564845, -0.0372069, -0.6767669], atol=5e-7)


def test_loo_conditional_matches_quadrature_over_sigma(monkeypatch):
    """p(y_i | y_-i) = ∫ N(log y_i | log μ_i, σ) / y_i · p(σ² | y_-i) dσ², with
    σ² | y_-i ~ InvGamma((ν + n - 1)/2, (ν s² + Σ_{j≠i} r_j²)/2) (conjugate)."""
    log_mu = np.log([1.0, 2.0, 0.5, 1.5])
    log_y = log_mu + np.array([0.3, -0.1, 0.45, -0.6])
    kind, batch = _kind_and_batch(monkeypatch, log_y, [0, 0, 0, 0])
    got = _loglik(kind, batch, np.exp(log_mu))[0]
    r = log_y - log_mu
    for i in range(4):
        others = np.delete(r, i)
        post = stats.invgamma((NU + 3) / 2, scale=(NU * S**2 + (others**2).sum()) / 2)

        def integrand(s2, i=i, post=post):
            return stats.norm.pdf(log_y[i], log_mu[i], math.sqrt(s2)) * post.pdf(s2)

        expected = math.log(integrate.quad(integrand, 0, np.inf, limit=200)[0]) - log_y[i]
        assert got[i] == pytest.approx(expected, rel=1e-7)


def test_single_observation_is_the_marginal_t(monkeypatch):
    """n = 1: Student-t(ν, log μ, s) on log y, minus log y; per case, whatever the others'."""
    log_y = np.log([0.8, 1.3, 2.0])
    kind, batch = _kind_and_batch(monkeypatch, log_y, [0, 1, 2])
    pred = np.array([[1.0, 1.0, 1.0], [0.5, 2.0, 3.0]])
    got = _loglik(kind, batch, pred)
    expected = stats.t.logpdf(log_y, NU, np.log(pred), S) - log_y
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # a prior draw (prior=True) has the same log-likelihood: it depends on the data only
    np.testing.assert_allclose(_loglik(kind, batch, pred, prior=True), got, rtol=0)


def test_groups_are_separate_and_censored_levels_keep_their_cdf(monkeypatch):
    """Two cases: a case's conditionals ignore the other case's residuals; a level below the
    LLOQ is an independent factor, log P(log y < log LLOQ) under the marginal t, and is not
    among the n of its case."""
    log_y = np.array([0.1, -0.2, 0.3, 0.5, -0.4])
    case = [0, 0, 0, 1, 1]
    censored = [False, False, False, False, True]
    kind, batch = _kind_and_batch(monkeypatch, log_y, case, censored)
    got = _loglik(kind, batch, np.ones((1, 5)))[0]
    np.testing.assert_allclose(got[:3], [-0.2564845, -0.0372069, -0.6767669], atol=5e-7)
    assert got[3] == pytest.approx(stats.t.logpdf(0.5, NU, 0, S) - 0.5, rel=1e-12)  # n = 1
    assert got[4] == pytest.approx(stats.t.logcdf(-0.4 / S, NU), rel=1e-12)


def test_sum_of_loo_terms_is_not_the_joint(monkeypatch):
    """The chain rule gives the joint density of a group from its sequential conditionals
    p(y_i | y_<i) (Student-t with ν + i - 1 dof); the leave-one-out terms, which PSIS-LOO
    reads (Bürkner et al. 2021), are the conditionals on every other observation and do not
    sum to it."""
    r = np.array([0.1, -0.2, 0.3])
    kind, batch = _kind_and_batch(monkeypatch, r, [0, 0, 0])
    loo = _loglik(kind, batch, np.ones((1, 3)))[0]
    n = len(r)
    joint = (
        gammaln((NU + n) / 2)
        - gammaln(NU / 2)
        - n / 2 * math.log(NU * math.pi * S**2)
        - (NU + n) / 2 * math.log1p((r**2).sum() / (NU * S**2))
        - r.sum()
    )
    sequential = sum(
        stats.t.logpdf(r[i], NU + i, 0, math.sqrt((NU * S**2 + (r[:i] ** 2).sum()) / (NU + i)))
        - r[i]
        for i in range(n)
    )
    assert sequential == pytest.approx(joint, rel=1e-12)
    assert abs(loo.sum() - joint) > 0.05


# --- comparing fits (results/compare.py) and the compare command ---------------------------
#
# The fits are made without NUTS: "posterior" draws of the predictions scattered around the
# observed values (a fit that predicts the data well) or around values shifted away from them
# (one that predicts them badly), completed by the model's own log-likelihood and predictive
# draws (model.observations.draws); the NUTS-free founding-case fit of tests/conftest.py
# (prior draws) gives the fit folders their attributes and an example of large Pareto k.


def synthetic_fit(batch, shift: float, seed: int, spread: float = 0.05, chains=2, draws=200):
    """InferenceData of ``batch`` whose predictions are the observed values times
    exp(shift + spread·N(0, 1)), draw by draw."""
    import json

    import arviz as az
    import xarray as xr

    from dialyzability.design import OBSERVATIONS

    rng = np.random.default_rng(seed)
    coords = batch.coords()
    post, loglik, pred_y, observed = {}, {}, {}, {}
    for kind in OBSERVATIONS:
        obs = kind.select(batch)
        if not len(obs):
            continue
        noise = rng.normal(size=(chains * draws, len(obs)))
        pred = obs.value[None, :] * np.exp(shift + spread * noise)
        ll, yrep = O.draws(kind, batch, pred, rng)
        dims = ("chain", "draw", kind.name)
        post[kind.prediction] = (dims, pred.reshape(chains, draws, -1))
        loglik[kind.variable] = (dims, ll.reshape(chains, draws, -1))
        pred_y[kind.variable] = (dims, yrep.reshape(chains, draws, -1))
        observed[kind.variable] = ((kind.name,), obs.value)

    def group(variables, sampled=True):
        ds = xr.Dataset(variables)
        if sampled:
            ds = ds.assign_coords(chain=np.arange(chains), draw=np.arange(draws))
        return ds.assign_coords({k: v for k, v in coords.items() if k in ds.dims})

    censored = {"level_below_lloq": (("level",), batch.levels.censored)}
    idata = az.InferenceData(
        posterior=group(post),
        log_likelihood=group(loglik).assign_attrs(pointwise=LOG_LIKELIHOOD),
        posterior_predictive=group(pred_y),
        observed_data=group(observed, False),
        constant_data=group(censored, False),
    )
    idata.attrs["cases"] = json.dumps([c.raw for c in batch.cases], default=str)
    return idata


@pytest.fixture(scope="module")
def rich_batch():
    from dialyzability.design import make_batch
    from dialyzability.io.drugs import load_drug

    from .conftest import simulated_case

    case = simulated_case("rich")
    return make_batch([case], load_drug(case.drug))


def test_the_fit_that_predicts_the_data_is_preferred(rich_batch):
    from dialyzability.results.compare import SE_THRESHOLD, compare_fits

    good, bad = synthetic_fit(rich_batch, 0.0, 1), synthetic_fit(rich_batch, 1.0, 2)
    result = compare_fits({"bad": bad, "good": good})
    assert result.names == ["good", "bad"] and result.preferred == "good"
    row = result.frame.loc["bad"]
    assert row["elpd_diff"] > SE_THRESHOLD * row["dse"] > 0
    assert result.sentence.startswith(
        f"The data prefer good: elpd difference {row['elpd_diff']:.1f} (SE {row['dse']:.1f}) "
        f"over bad, {row['elpd_diff'] / row['dse']:.1f} SE, from 7 observations."
    )
    assert "small" not in result.sentence  # a difference of more than 4
    assert "unreliable" not in result.sentence
    # every observation counts: 5 levels, a urine and an effluent amount
    for r in result.rows():
        assert r["n_observations"] == 7 and r["pareto_k_above_0_7"] == 0
    pointwise = result.pareto["good"]["pareto_k"]
    assert list(pointwise)[:2] == ["concentration[level1]", "concentration[level2]"]
    assert list(pointwise)[-2:] == ["urine_amount[urine1]", "effluent_amount[session1]"]
    # the table, its Markdown and JSON say the same
    text = result.table()
    assert "good" in text and result.sentence in text and "k > 0.7" in text
    md = result.to_markdown()
    assert md.startswith("| rank | fit | elpd_loo |") and result.sentence in md
    data = result.to_json()
    assert data["preferred"] == "good" and [f["name"] for f in data["fits"]] == ["good", "bad"]
    assert data["fits"][1]["elpd_diff"] == pytest.approx(row["elpd_diff"])


def test_elpd_covers_every_kind_of_observation(rich_batch):
    """The elpd of the combined variable is the sum of the kinds' own elpds."""
    import arviz as az

    from dialyzability.results.compare import compare_fits

    fit = synthetic_fit(rich_batch, 0.0, 3)
    result = compare_fits({"a": fit, "b": synthetic_fit(rich_batch, 0.0, 4)})
    with warnings.catch_warnings():  # one observation of a kind: ArviZ warns of its sum
        warnings.simplefilter("ignore", UserWarning)
        kinds = sum(az.loo(fit, var_name=v).elpd_loo for v in fit.log_likelihood.data_vars)
    assert result.frame.loc["a", "elpd_loo"] == pytest.approx(kinds, rel=1e-6)


def test_identical_fits_prefer_no_structure(rich_batch):
    from dialyzability.results.compare import compare_fits

    fit = synthetic_fit(rich_batch, 0.0, 1)
    result = compare_fits({"one": fit, "two": fit.copy()})
    assert result.preferred is None
    assert result.sentence.startswith("No structure is preferred: the elpd difference 0.0")
    assert "within 2 SE" in result.sentence


def test_fits_of_other_observations_are_refused(rich_batch, free_fit):
    import json

    from dialyzability.results.compare import CompareError, compare_fits

    fit = synthetic_fit(rich_batch, 0.0, 1)
    other = fit.copy()
    values = other.observed_data["concentration"].values.copy()
    values[2] *= 1.5
    other.observed_data["concentration"] = (("level",), values)
    with pytest.raises(CompareError, match=r"fits a and b have different observations: "):
        compare_fits({"a": fit, "b": other})
    with pytest.raises(CompareError, match=r"concentration at level3: "):
        compare_fits({"a": fit, "b": other})
    # another case (its attributes), another set of observations, one fit only
    renamed = fit.copy()
    raws = json.loads(renamed.attrs["cases"])
    raws[0]["id"] = "someone-else"
    renamed.attrs["cases"] = json.dumps(raws)
    with pytest.raises(CompareError, match=r"different cases \(sim-rich-0 against someone-else"):
        compare_fits({"a": fit, "b": renamed})
    lee = free_fit("lee")
    with pytest.raises(CompareError, match="fits rich and lee are of different cases"):
        compare_fits({"rich": fit, "lee": lee.idata})
    anonymous = synthetic_fit(lee.batch, 0.0, 1)  # no case ids: the observations still differ
    del anonymous.attrs["cases"]
    with pytest.raises(CompareError, match="concentration: 5 observations against 1"):
        compare_fits({"rich": fit, "lee": anonymous})
    with pytest.raises(CompareError, match="at least 2"):
        compare_fits({"a": fit})


def test_large_pareto_k_names_the_observations(free_fit):
    """Prior draws relabelled as a posterior (the NUTS-free fit) are far from a leave-one-out
    posterior: PSIS is unreliable, and the sentence says for which observations."""
    from dialyzability.results.compare import compare_fits

    lee = free_fit("lee")
    result = compare_fits({"prior-draws": lee.idata, "close": synthetic_fit(lee.batch, 0.0, 5)})
    bad = result.pareto["prior-draws"]["unreliable"]
    assert bad and result.pareto["prior-draws"]["above_bad"] == len(bad)
    assert "The comparison is unreliable" in result.sentence
    assert f"prior-draws: {', '.join(bad)}" in result.sentence
    assert result.names[0] == "close"


@pytest.fixture(scope="module")
def fit_folders(tmp_path_factory, free_fit):
    """Fit folders (posterior.nc, as ``Fit.save`` writes it) of the founding case: ``good``
    and ``bad`` (synthetic fits with the NUTS-free fit's attributes), ``other`` (another
    level recorded), ``corrupt`` (not a netCDF file)."""
    from dialyzability.results.fit import Fit

    lee = free_fit("lee")
    root = tmp_path_factory.mktemp("compare")

    def save(name, idata):
        idata.attrs.update(lee.idata.attrs)
        Fit(idata, lee.cases, lee.drug, lee.config, lee.population).save(root / name)
        return root / name

    good = synthetic_fit(lee.batch, 0.0, 6)
    other = good.copy()
    other.observed_data["concentration"] = (("level",), [0.9])
    folders = {
        "good": save("good", good),
        "bad": save("bad", synthetic_fit(lee.batch, 2.0, 7)),
        "other": save("other", other),
    }
    (root / "corrupt").mkdir()
    (root / "corrupt" / "posterior.nc").write_bytes(b"not a netCDF file")
    folders["corrupt"] = root / "corrupt"
    return folders


def test_compare_command(fit_folders, capsys):
    import json

    from dialyzability.cli import main

    good, bad = str(fit_folders["good"]), str(fit_folders["bad"])
    assert main(["compare", bad, good]) == 0
    out = capsys.readouterr().out
    assert "PSIS-LOO comparison" in out and "The data prefer good:" in out
    assert main(["compare", good, bad, "--json", "--names", "close,shifted"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["preferred"] == "close" and [f["name"] for f in data["fits"]] == [
        "close",
        "shifted",
    ]


@pytest.mark.parametrize(
    ("which", "message"),
    [
        (["good"], "compare at least 2 fit folders, got 1"),
        (["good", "missing"], "missing: no such fit folder"),
        (["good", "corrupt"], "cannot be read as a fit"),
        (["good", "other"], "fits good and other have different observations"),
    ],
)
def test_compare_command_errors_in_one_line(fit_folders, tmp_path, capsys, which, message):
    from dialyzability.cli import main

    paths = [str(fit_folders.get(w, tmp_path / w)) for w in which]
    assert main(["compare", *paths]) == 1
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and not captured.out


def test_compare_command_names_must_match_the_folders(fit_folders, capsys):
    from dialyzability.cli import main

    args = ["compare", str(fit_folders["good"]), str(fit_folders["bad"]), "--names", "a"]
    assert main(args) == 1
    assert "--names: 2 distinct names needed" in capsys.readouterr().err


def test_relative_efficiency_ignores_a_variable_with_nan_draws(rich_batch):
    import arviz as az

    from dialyzability.results.compare import relative_eff

    fit = synthetic_fit(rich_batch, 0.0, 1)
    expected = relative_eff(fit)
    values = fit.posterior["pred_level"].values
    n = values.shape[0] * values.shape[1]
    ess = az.ess(fit.posterior, method="mean")
    assert expected == pytest.approx(np.hstack([ess[v].values.ravel() for v in ess]).mean() / n)
    broken = fit.posterior["pred_urine"].values.copy()
    broken[0, 0] = np.nan
    fit.posterior["never_below"] = (("chain", "draw", "urine"), broken)
    assert np.isfinite(relative_eff(fit)) and 0 < relative_eff(fit) < 2


def test_a_fit_with_the_older_log_likelihood_is_refused(free_fit):
    from dialyzability.results.compare import CompareError, compare_fits

    lee = free_fit("lee")
    old = lee.idata.copy()
    old.log_likelihood.attrs.pop("pointwise")
    with pytest.raises(CompareError, match="saved before its log-likelihood"):
        compare_fits({"new": lee.idata, "old": old})
