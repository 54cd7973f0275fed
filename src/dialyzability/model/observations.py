"""The observation registry: one entry per kind of observation (DESIGN §4).

The registry itself (:data:`~dialyzability.design.OBSERVATIONS`: each kind's observations in a
batch, the prediction it is compared with, its label, unit and error prior) is PyMC-free and
lives in :mod:`dialyzability.design`; here are each kind's density in the model (observed
variables, :func:`density`) and its pointwise log-likelihood and posterior-predictive draw
(numpy, for the saved posterior, :func:`draws`).

Error model. Observation y of kind K in case c is log-normal around its prediction μ with SD σ
(log scale), σ shared by the case's observations of that kind; σ² ~ InvGamma(ν/2, ν s²/2) with
(ν, s) from the drug model's prior (:func:`~dialyzability.io.drugs.error_prior`). For sampling
σ is integrated out: the case's residuals r = log y − log μ (n of them) are multivariate
Student-t,

    log p(r) = lnΓ((ν+n)/2) − lnΓ(ν/2) − (n/2) log(ν π s²) − ((ν+n)/2) log(1 + Σr²/(ν s²))

(Gelman A et al. Bayesian Data Analysis, 3rd ed., 2013, §14.8). A level below the LLOQ
contributes P(log C < log LLOQ) under the Student-t marginal of that level alone (censoring;
Beal SL, J Pharmacokinet Pharmacodyn 2001;28:481-504, method M3).

Saved posterior (:func:`draws`). The pointwise log-likelihood is the exact leave-one-out
conditional density of the non-factorised model (Bürkner PC, Gabry J, Vehtari A. Efficient
leave-one-out cross-validation for Bayesian non-factorized normal and Student-t models. Comput
Stat 2021;36:1243-1261): for observation i of a case and kind with n quantified observations,

    log y_i | y_−i, θ ~ Student-t(ν+n−1, log μ_i, scale² = (ν s² + Σ_{j≠i} r_j²)/(ν+n−1)),

on the scale of y (− log y_i, the Jacobian; ArviZ conventions: one value per observation). For
n = 1 it is the marginal Student-t(ν, log μ, s). These terms are what PSIS-LOO needs (its
importance ratios are 1/p(y_i | y_−i, θ), as in Bürkner et al.); their sum over a group is not
the group's joint density (that is the sum of the sequential conditionals p(y_i | y_<i, θ)), so
the log-likelihood group is for LOO, not for the model's total density. A level below the LLOQ
is an independent factor of the model: its value is its log CDF, as in the model.

The posterior-predictive draws use σ drawn per draw from its conditional posterior given that
draw's residuals, σ² | r ~ InvGamma((ν+n)/2, (ν s² + Σr²)/2) (conjugate), so that they are
exact for the augmented draw; the prior-predictive draws use σ from its prior.
"""

from __future__ import annotations

import math

import numpy as np

from dialyzability.design import Batch, ObservationKind
from dialyzability.io.drugs import error_prior


def marginal_t(log_y, mu, case: np.ndarray, n_cases: int, nu: float, scale: float):
    """Per-case multivariate Student-t log density of log-scale residuals (module docstring),
    spread over the observations: element i carries 1/n_c of its case's joint density, so the
    elements sum to the joint densities (PyTensor; ``case`` indexes each element's case)."""
    import pytensor.tensor as pt
    from scipy.special import gammaln

    n = np.bincount(case, minlength=n_cases).astype(float)
    const = gammaln((nu + n) / 2) - gammaln(nu / 2) - n / 2 * math.log(nu * math.pi * scale**2)
    r2 = pt.inc_subtensor(pt.zeros(n_cases)[case], (log_y - mu) ** 2)
    joint = const - (nu + n) / 2 * pt.log1p(r2 / (nu * scale**2))
    return (joint / np.maximum(n, 1.0))[case]


def density(kind: ObservationKind, batch: Batch, pred, data: dict) -> None:
    """Add the observed variables of ``kind`` to the model in context (see module)."""
    import pymc as pm
    import pytensor.tensor as pt

    obs = kind.select(batch)
    nu, scale = error_prior(batch.drug.errors[kind.error])
    log_mu = pt.log(pt.maximum(pred, 1e-300))
    quantified = np.flatnonzero(~obs.censored)
    if len(quantified):
        case = obs.case[quantified]

        def logp(value, mu):
            return marginal_t(value, mu, case, batch.n_cases, nu, scale)

        pm.CustomDist(
            f"obs_{kind.name}",
            log_mu[quantified],
            logp=logp,
            observed=data[f"{kind.name}_log_y"][quantified],
        )
    censored = np.flatnonzero(obs.censored)
    if len(censored):
        lloq = data[f"{kind.name}_log_y"][censored]
        pm.Censored(
            f"obs_{kind.name}_below_lloq",
            pm.StudentT.dist(nu=nu, mu=log_mu[censored], sigma=scale),
            lower=lloq,
            upper=None,
            observed=lloq,
        )


def draws(
    kind: ObservationKind, batch: Batch, pred: np.ndarray, rng: np.random.Generator, prior=False
):
    """Pointwise log-likelihood and predictive draws of ``kind``, (S, n) each, for predictions
    ``pred`` (S draws x n observations); ``prior``: σ from its prior (prior predictive).

    The log-likelihood is the leave-one-out conditional density log p(y_i | y_−i, θ) of each
    quantified observation (module docstring), the log CDF for a level below the LLOQ; it does
    not depend on ``rng``, which draws only the predictive values."""
    from scipy import stats

    obs = kind.select(batch)
    nu, scale = error_prior(batch.drug.errors[kind.error])
    log_y = np.log(obs.value)[None, :]
    log_mu = np.log(np.maximum(pred, 1e-300))
    r = log_y - log_mu
    q = ~obs.censored
    n_draws = pred.shape[0]
    # sum of squared residuals per draw and case (quantified observations only)
    n = obs.per_case(batch.n_cases, q)
    ss = np.zeros((n_draws, batch.n_cases))
    np.add.at(ss.T, obs.case[q], (r[:, q] ** 2).T)
    # leave-one-out conditional Student-t of each observation given its group's others
    loglik = np.empty_like(r)
    df = nu + n[obs.case[q]] - 1
    others = np.maximum(ss[:, obs.case[q]] - r[:, q] ** 2, 0.0)  # Σ_{j≠i} r_j²
    loo_scale = np.sqrt((nu * scale**2 + others) / df)
    loglik[:, q] = stats.t.logpdf(r[:, q] / loo_scale, df) - np.log(loo_scale) - log_y[:, q]
    # sigma per draw and case from its conditional posterior (or prior): the predictive draws
    if prior:
        ss, shape = np.zeros_like(ss), np.full(batch.n_cases, nu / 2)
    else:
        shape = (nu + n) / 2
    rate = (nu * scale**2 + ss) / 2
    sigma = np.sqrt(rate / rng.gamma(shape, 1.0, size=ss.shape))[:, obs.case]
    eps = rng.normal(size=pred.shape)
    predictive = np.exp(log_mu + sigma * eps)
    if obs.censored.any():
        c = obs.censored
        loglik[:, c] = stats.t.logcdf(r[:, c] / scale, nu)
        predictive[:, c] = np.exp(log_mu[:, c] + scale * rng.standard_t(nu, (n_draws, c.sum())))
    return loglik, predictive
