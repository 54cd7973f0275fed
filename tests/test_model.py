"""The model's building blocks against arithmetic, Monte Carlo and quadrature; finite gradients."""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from dialyzability.io.case import load_case, parse_case
from dialyzability.io.drugs import clearance_prior, error_prior, load_drug
from dialyzability.model.build import build_model, log_marginal_t
from dialyzability.simulate import DESIGNS, simulate_case

from .conftest import LEE


@pytest.mark.parametrize("kidney", ["normal", "impaired", "anuric"])
def test_clearance_prior_moments_match_monte_carlo(kidney):
    drug = load_drug("baclofen")
    rng = np.random.default_rng(0)
    n = 400_000
    fe = rng.beta(drug.priors.fe.alpha, drug.priors.fe.beta, n)
    log_cl = drug.priors.cl_total.mu + drug.priors.cl_total.sigma * rng.normal(size=n)
    kf = drug.kidney_function[kidney]
    log_k = kf.mu + kf.sigma * rng.normal(size=n)
    sample = np.stack([np.log(fe) + log_cl + log_k, np.log1p(-fe) + log_cl])
    mean, chol = clearance_prior(drug, kidney)
    np.testing.assert_allclose(sample.mean(axis=1), mean, atol=0.01)
    np.testing.assert_allclose(np.cov(sample), chol @ chol.T, atol=0.01)


def test_error_prior_matches_lognormal_moments():
    prior = load_drug("baclofen").errors["level"]
    nu, scale = error_prior(prior)
    # sigma^2 ~ InvGamma(nu/2, nu s^2/2): log sigma should have mean log(median), SD sigma
    sigma2 = stats.invgamma(nu / 2, scale=nu * scale**2 / 2).rvs(400_000, random_state=1)
    log_sigma = 0.5 * np.log(sigma2)
    assert log_sigma.mean() == pytest.approx(math.log(prior.median), abs=0.005)
    assert log_sigma.std() == pytest.approx(prior.sigma, abs=0.005)


def test_log_marginal_t_matches_quadrature():
    nu, scale = 4.0, 0.15
    y = np.array([0.9, 1.3, 1.05])
    mu = np.log([1.0, 1.1, 1.0])

    def integrand(s2):
        like = stats.norm.pdf(np.log(y), mu, math.sqrt(s2)).prod() / y.prod()
        return like * stats.invgamma.pdf(s2, nu / 2, scale=nu * scale**2 / 2)

    expected = math.log(integrate.quad(integrand, 0, np.inf, limit=200)[0])
    got = float(log_marginal_t(np.log(y), mu, nu, scale).eval())
    assert got == pytest.approx(expected, rel=1e-7)


def _cases():
    yield "lee", load_case(LEE)
    for kind in DESIGNS:
        raw, _ = simulate_case(kind, seed=5)
        yield kind, parse_case(raw, raw["id"])


@pytest.mark.parametrize(
    ("name", "case"), list(_cases()), ids=lambda x: x if isinstance(x, str) else ""
)
def test_initial_point_has_finite_logp_and_gradient(name, case):
    cm = build_model(case)
    model = cm.model
    point = model.initial_point()
    logp = model.compile_logp(mode="FAST_COMPILE")(point)
    grad = model.compile_dlogp(mode="FAST_COMPILE")(point)
    assert np.isfinite(logp), name
    assert np.all(np.isfinite(grad)) and np.any(grad != 0), name


def test_timings_given_as_ranges_are_latent():
    cm = build_model(load_case(LEE))
    assert cm.latent_times == {
        "t_urine1_start": (2.0, 14.0),
        "t_session1_start": (14.0, 30.0),
        "t_session2_start": (34.0, 56.0),
        "t_session3_start": (58.0, 84.0),
    }
    names = {v.name for v in cm.model.free_RVs}
    assert set(cm.latent_times) <= names
