"""The model's building blocks against arithmetic, Monte Carlo and quadrature; finite gradients;
the prior of a single case and of a population against the drug model's."""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from dialyzability.io.case import load_case, parse_case
from dialyzability.io.drugs import clearance_prior, error_prior, load_drug
from dialyzability.model.build import build_model
from dialyzability.model.observations import marginal_t
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
    # the shares of one case's three observations sum to its joint density (on log y, so the
    # Jacobian -sum(log y) of the change of variable is added here)
    shares = marginal_t(np.log(y), mu, np.zeros(3, dtype=int), 1, nu, scale).eval()
    assert shares.sum() - np.log(y).sum() == pytest.approx(expected, rel=1e-7)
    # two cases: each case's shares sum to its own joint density
    both = marginal_t(
        np.log([*y, *y[:2]]), np.concatenate([mu, mu[:2]]), np.array([0, 0, 0, 1, 1]), 2, nu, scale
    ).eval()
    assert both[:3].sum() == pytest.approx(shares.sum(), rel=1e-12)
    assert both[3] == pytest.approx(both[4])


def _cases():
    yield "lee", load_case(LEE)
    for kind in DESIGNS:
        raw, _ = simulate_case(kind, seed=5)
        yield kind, parse_case(raw, raw["id"])


@pytest.mark.parametrize(
    ("name", "case"), list(_cases()), ids=lambda x: x if isinstance(x, str) else ""
)
def test_initial_point_has_finite_logp_and_gradient(name, case):
    cm = build_model([case])
    model = cm.model
    point = model.initial_point()
    logp = model.compile_logp(mode="FAST_COMPILE")(point)
    grad = model.compile_dlogp(mode="FAST_COMPILE")(point)
    assert np.isfinite(logp), name
    assert np.all(np.isfinite(grad)) and np.any(grad != 0), name


def test_timings_given_as_ranges_are_latent():
    cm = build_model([load_case(LEE)])
    assert cm.batch.events[0].latent() == {
        "t_urine1_start": (2.0, 14.0),
        "t_session1_start": (14.0, 30.0),
        "t_session2_start": (34.0, 56.0),
        "t_session3_start": (58.0, 84.0),
    }
    coords = cm.model.coords
    assert list(coords["latent_time"]) == list(cm.batch.events[0].latent())
    assert "timing" in {v.name for v in cm.model.free_RVs}


def _prior(cases, population, draws=20_000):
    import pymc as pm

    model = build_model(cases, population=population).model
    names = [
        v.name
        for v in [*model.free_RVs, *model.deterministics]
        if v.name.startswith(("mu_", "cl_", "vol")) and not v.name.endswith("_raw")
    ]
    return pm.sample_prior_predictive(draws, model=model, var_names=names, random_seed=4).prior


def test_single_case_prior_is_the_drug_models():
    # log V ~ N(log(V/kg median) + log weight, sigma_V); (log CL_R, log CL_NR) ~ the bivariate
    # clearance prior shifted by 0.75 log(weight/70), independent of V (the sampler's
    # coordinates of log k change the geometry, not the prior)
    case = load_case(LEE)
    drug = load_drug("baclofen")
    prior = _prior([case], "fixed")
    log_v = np.log(prior["volume"].values.ravel())
    log_cl = np.log(
        np.stack([prior["cl_renal"].values.ravel(), prior["cl_nonrenal"].values.ravel()])
    )
    w = case.patient.weight
    assert log_v.mean() == pytest.approx(drug.priors.volume.mu + math.log(w), abs=0.02)
    assert log_v.std() == pytest.approx(drug.priors.volume.sigma, rel=0.03)
    mean, chol = clearance_prior(drug, case.kidney_function)
    np.testing.assert_allclose(log_cl.mean(axis=1), mean + 0.75 * math.log(w / 70), atol=0.03)
    np.testing.assert_allclose(np.cov(log_cl), chol @ chol.T, rtol=0.05, atol=0.01)
    assert abs(np.corrcoef(log_v, log_cl[0])[0, 1]) < 0.03


def test_population_means_have_the_bivariate_clearance_prior_per_kidney_class():
    raws = [simulate_case("rich", seed=1)[0], simulate_case("anuric", seed=2)[0]]
    cases = [parse_case(r, r["id"]) for r in raws]
    drug = load_drug(cases[0].drug)
    prior = _prior(cases, "hierarchical")
    classes = list(prior["kidney"].values)
    assert classes == ["normal", "anuric"]
    nonrenal = prior["mu_cl_nonrenal"].values.ravel()
    for k, kidney in enumerate(classes):
        pair = np.stack([prior["mu_cl_renal"].values[..., k].ravel(), nonrenal])
        mean, chol = clearance_prior(drug, kidney)
        np.testing.assert_allclose(pair.mean(axis=1), mean, atol=0.03)
        np.testing.assert_allclose(np.cov(pair), chol @ chol.T, rtol=0.05, atol=0.01)


@pytest.mark.parametrize(
    ("name", "case"), list(_cases()), ids=lambda x: x if isinstance(x, str) else ""
)
def test_predictions_are_the_array_form_at_the_models_event_times(name, case):
    """The model's event times (known times, ranges, ends given by durations) and its
    predictions, at a random point, equal the array form fed with the events resolved by hand."""
    from dialyzability.design import BatchDesign, case_events
    from dialyzability.pk.closed_form import solve_batch

    model = build_model([case]).model
    names = ["volume", "cl_renal", "cl_nonrenal", "ka", "bioavailability", "a0"]
    outputs = [*names, "pred_level", "pred_urine", "pred_session", "cl_ectr", "timing"]
    outputs += ["pred_effluent_sample", "blood_plasma_ratio"]
    outputs = [n for n in outputs if n in model.named_vars]
    graphs = model.replace_rvs_by_values([model[n] for n in outputs])
    f = model.compile_fn(graphs, inputs=model.value_vars, on_unused_input="ignore")
    rng = np.random.default_rng(7)
    point = {k: rng.normal(0, 0.5, np.shape(v)) for k, v in model.initial_point().items()}
    got = dict(zip(outputs, f(point), strict=True))
    events, design, windows = case_events(case)
    latent = dict(zip(events.latent(), got.get("timing", []), strict=True))
    times = np.array([events.resolve(latent)], dtype=float)
    cl_ectr = got.get("cl_ectr", np.zeros((1, 1)))
    params = [got[n] for n in names]
    out = solve_batch(
        times, BatchDesign.stack([design]), params[0], params[1] + params[2], cl_ectr, *params[3:]
    )
    if case.concentrations:
        n = len(case.concentrations)
        blood = np.array([c.matrix == "blood" for c in case.concentrations])
        bp = np.where(blood, got.get("blood_plasma_ratio", 1.0), 1.0)  # B:P · C_p in blood
        # after the filter: C_p (1 − CL_ECTR/Q), Q = Q_B (1 − Hct) of the level's session
        hct = case.patient.haematocrit or 0.0
        bp = bp * np.array(
            [
                1 - cl_ectr[0, 0] / (case.sessions[c.session - 1].blood_flow * (1 - hct))
                if c.post_filter
                else 1.0
                for c in case.concentrations
            ]
        )
        np.testing.assert_allclose(got["pred_level"], bp * out["conc"][0, :n], rtol=1e-10)
    if any(s.effluent_samples for s in case.sessions):
        # C_E = CL_ECTR · C_p / Q_E at the samples, which follow the levels
        flow = [s.effluent_flow for s in case.sessions for _ in s.effluent_samples]
        mod = [case.modalities.index(s.modality) for s in case.sessions for _ in s.effluent_samples]
        at = windows["effluent_samples"]
        want = cl_ectr[0, mod] * out["conc"][0, at] / np.array(flow)
        np.testing.assert_allclose(got["pred_effluent_sample"], want, rtol=1e-10)
    if case.urine:
        want = got["cl_renal"][0] * out["auc"][0, windows["urine"]]
        np.testing.assert_allclose(got["pred_urine"], want, rtol=1e-10)
    if case.sessions:
        mod = [case.modalities.index(s.modality) for s in case.sessions]
        want = cl_ectr[0, mod] * out["auc"][0, windows["sessions"]]
        np.testing.assert_allclose(got["pred_session"], want, rtol=1e-10)
