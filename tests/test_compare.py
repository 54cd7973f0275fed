"""The pointwise log-likelihood of the saved posterior (leave-one-out conditionals of the
non-factorised Student-t model, model/observations.py) against hand arithmetic, quadrature and
the marginal density; the comparison of fits by PSIS-LOO (results/compare.py) and the
``compare`` command, on posteriors made without NUTS."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import gammaln

from dialyzability.design import ObservationKind, Observations
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
