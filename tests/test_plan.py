"""The plan (results/plan.py): the reweighting against closed forms, the error model against the
model's own likelihood, the predictions of measurements against the model's, refusal, ranking,
labels, the table, the figure and the CLI; on NUTS-free fits (tests/conftest.py) and on draws
of known distributions. The honesty study (planned widths against refits) is ``-m slow``."""

import importlib.util
import json
import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import gammaln

from dialyzability.design import case_events
from dialyzability.results import plan as P
from dialyzability.results.plan import Candidate, plan

from .conftest import LEE, ROOT

Z95 = stats.norm.ppf(0.975)  # 1.959964


class Normal:
    """A measurement y = x + N(0, sd²) of draws x (the error-model protocol of plan.py)."""

    def __init__(self, x, sd):
        self.x, self.sd = np.asarray(x), sd

    def simulate(self, draws, rng):
        return self.x[draws] + self.sd * rng.normal(size=len(draws))

    def loglik(self, y):
        return stats.norm.logpdf(y[:, None], self.x[None, :], self.sd)


@pytest.fixture(scope="module")
def normal_draws():
    """200 000 draws of N(0, 1), seeded."""
    return np.random.default_rng(1).normal(size=200_000)


def test_equal_weight_hdi_is_arviz_hdi(normal_draws):
    import arviz as az

    x = normal_draws[:4000]
    lo, hi = az.hdi(x, hdi_prob=0.95)
    assert P.weighted_hdi_width(x) == pytest.approx(hi - lo, rel=2e-3)
    # N(0, 1): the 95 % HDI is +/-1.96, width 3.92
    assert P.weighted_hdi_width(normal_draws) == pytest.approx(2 * Z95, rel=0.01)


def test_reweighting_is_the_conjugate_normal_update(normal_draws):
    """Prior x ~ N(0, 1), one measurement y ~ N(x, 1): the posterior is N(y/2, 1/2) whatever y,
    so its 95 % HDI has width 2 * 1.96 / sqrt(2) = 2.772 (against 3.920 before). Kish's ESS of
    the weights w = exp(-(y - x)²/2): E w = exp(-y²/4)/sqrt(2), E w² = exp(-y²/3)/sqrt(3), so
    ESS/N = (E w)² / E w² = sqrt(3)/2 exp(-y²/6): 0.866 at y = 0, 0.733 at y = 1."""
    x = normal_draws
    y = np.array([0.0, 1.0, -0.5])
    widths, ess = P.reweighted_widths(x, stats.norm.logpdf(y[:, None], x[None, :], 1.0))
    np.testing.assert_allclose(widths, 2 * Z95 / math.sqrt(2), rtol=0.01)
    np.testing.assert_allclose(ess / len(x), math.sqrt(3) / 2 * np.exp(-(y**2) / 6), rtol=0.01)
    # and through the expected width, averaged over simulated outcomes
    got = P.expected_width(x, Normal(x, 1.0), outcomes=20, rng=3)
    assert got["width"] == pytest.approx(2 * Z95 / math.sqrt(2), rel=0.01)
    assert got["widths"].shape == (20,) and got["ess"].shape == (20,)


def test_a_repeat_of_a_measurement_already_made_narrows_little():
    """log ratio = a + b with a, b ~ N(0, 1) a priori; a was measured with SD 0.1 (y1 = 0.3),
    so a | y1 ~ N(y1/1.01, 0.01/1.01): Var log ratio = 1 + 0.0099 = 1.0099. Measuring a again
    (SD 0.1) leaves Var a = 0.01/2.01, Var = 1.00498: the width shrinks by
    1 - sqrt(1.00498/1.0099) = 0.24 %. Measuring b instead (SD 0.1) gives
    Var = 0.0099 + 0.0099 = 0.0198: 86 % narrower."""
    rng = np.random.default_rng(4)
    n = 100_000
    a = 0.3 / 1.01 + math.sqrt(0.01 / 1.01) * rng.normal(size=n)
    b = rng.normal(size=n)
    target = a + b
    now = P.weighted_hdi_width(target)
    repeat = P.expected_width(target, Normal(a, 0.1), outcomes=20, rng=5)
    other = P.expected_width(target, Normal(b, 0.1), outcomes=20, rng=5)
    assert 1 - repeat["width"] / now < 0.02
    assert 1 - other["width"] / now == pytest.approx(1 - math.sqrt(0.0198 / 1.0099), abs=0.02)


def test_the_weight_is_the_refitted_models_likelihood_ratio():
    """The Student-t of a new observation is the joint marginal of n + 1 residuals over that of
    n (model/observations.py): log p(r) = lnΓ((ν+n)/2) − lnΓ(ν/2) − n/2 log(ν π s²)
    − (ν+n)/2 log(1 + Σr²/(ν s²))."""
    nu, s = 5.0, 0.2
    old = np.array([0.1, -0.3])  # residuals of the two observations made

    def joint(r):
        n = len(r)
        return (
            gammaln((nu + n) / 2)
            - gammaln(nu / 2)
            - n / 2 * math.log(nu * math.pi * s**2)
            - (nu + n) / 2 * math.log1p((r**2).sum() / (nu * s**2))
        )

    log_mu = np.array([math.log(2.0)])
    scale = np.sqrt((nu * s**2 + (old**2).sum()) / (nu + len(old)))
    model = P.StudentT(log_mu=log_mu, scale=np.array([scale]), df=nu + len(old))
    for log_y in (math.log(2.0), math.log(3.1), math.log(0.7)):
        r_new = log_y - log_mu[0]
        expected = joint(np.append(old, r_new)) - joint(old)
        assert model.loglik(np.array([log_y]))[0, 0] == pytest.approx(expected, rel=1e-10)


def test_predictions_of_measurements_made_are_the_models(free_fit):
    """A candidate that repeats a level, a urine collection or an effluent total has, at every
    draw, the prediction the model compared the measurement with (pred_*)."""
    fit = free_fit("rich")
    view = fit.view(0)
    events, _, index = case_events(fit.case)
    level = events.labels.index("level3")
    repeats = [
        Candidate("repeat level 3", "level", "", event=level),
        Candidate("repeat urine 1", "urine", "", window=index["urine"][0]),
        Candidate("repeat effluent 1", "effluent", "", window=index["sessions"][0], session=0),
    ]
    got = P.predictions(view, repeats)
    post = view.draws
    np.testing.assert_allclose(
        got["repeat level 3"], post["pred_level"].sel(level="level3").values.ravel(), rtol=1e-9
    )
    np.testing.assert_allclose(got["repeat urine 1"], post["pred_urine"].values.ravel(), rtol=1e-9)
    np.testing.assert_allclose(
        got["repeat effluent 1"], post["pred_effluent"].values.ravel(), rtol=1e-9
    )


def test_the_error_model_reads_the_case_residuals(free_fit):
    """scale² = (ν s² + Σr²)/(ν + n) with the draw's residuals of the kind; ν + n degrees of
    freedom (the founding case: one quantified level)."""
    from dialyzability.io.drugs import error_prior

    view = free_fit("lee").view(0)
    nu, s = error_prior(view.drug.errors["level"])
    predicted = np.full(view.draws.sizes["chain"] * view.draws.sizes["draw"], 0.5)
    model = P.error_model(view, "level", predicted)
    r = np.log(0.882) - np.log(view.draws["pred_level"].values.reshape(-1))
    np.testing.assert_allclose(model.scale, np.sqrt((nu * s**2 + r**2) / (nu + 1)), rtol=1e-12)
    assert model.df == pytest.approx(nu + 1)
    np.testing.assert_allclose(model.log_mu, math.log(0.5))


#: the founding case's candidates: three sessions, session 1's recovery measured, four ranges
LEE_LABELS = {
    "level at the start of HD session 1",
    "level at the end of HD session 1",
    "urine amount during HD session 1",
    "level at the start of HD session 2",
    "level at the end of HD session 2",
    "effluent total of HD session 2",
    "urine amount during HD session 2",
    "level at the start of HD session 3",
    "level at the end of HD session 3",
    "effluent total of HD session 3",
    "urine amount during HD session 3",
    "exact start of urine collection 1",
    "exact start of HD session 1",
    "exact start of HD session 2",
    "exact start of HD session 3",
}


#: the NUTS-free founding-case fit has 1000 draws of its prior, whose predictions spread far
#: wider than a posterior's: fewer effective draws are asked of it than of a real fit
MIN_ESS = 20


@pytest.fixture(scope="module")
def lee_plan(free_fit):
    return plan(free_fit("lee"), outcomes=20, seed=1, min_ess=MIN_ESS)


def test_labels_are_complete(lee_plan):
    labels = [r["label"] for r in lee_plan.rows]
    assert len(labels) == len(set(labels)) and set(labels) == LEE_LABELS
    kinds = {r["label"]: r["kind"] for r in lee_plan.rows}
    assert kinds["effluent total of HD session 2"] == "effluent"
    assert kinds["exact start of HD session 1"] == "time"
    times = {r["label"]: r["time"] for r in lee_plan.rows}
    assert times["level at the start of HD session 1"] == "14-30 h"  # the session's range
    assert times["level at the end of HD session 1"] == "17-33 h"  # plus its 3 hours
    assert times["exact start of urine collection 1"] == "2-14 h"
    from dialyzability.design import Timing

    case = free_fit_case()
    duration = Timing("t_session2_duration", "session2_end", "duration", "session2_start")
    assert P.timing_label(duration, case) == "exact duration of HD session 2"
    assert P.timing_label(Timing("t_level1", "level1", "time", None), case) == (
        "exact time of level 1"
    )
    offset = Timing("t_level1_offset", "level1", "offset", "session2_end")
    assert P.timing_label(offset, case) == "exact time of level 1 after the end of HD session 2"


def free_fit_case():
    from dialyzability.io.case import load_case

    return load_case(LEE)


def test_rows_are_sorted_best_first_refused_last(lee_plan):
    rows = lee_plan.rows
    given = [r["log_width"] for r in rows if r["log_width"] is not None]
    assert given == sorted(given) and len(given) >= 5
    status = [r["status"] for r in rows]
    assert status == sorted(status, key=lambda s: s != "ok")  # every refusal after every estimate
    for r in rows:
        if r["status"] == "ok":
            assert r["width_fold"] == pytest.approx(math.exp(r["log_width"]))
            assert r["narrowing"] == pytest.approx(1 - r["log_width"] / lee_plan.current)
            assert r["ess_short"] <= P.SHORT_SHARE
        else:
            assert r["width_fold"] is None and r["narrowing"] is None
            assert r["status"] == P.TOO_FEW and r["ess_short"] > P.SHORT_SHARE
        assert 0 < r["ess_min"] <= r["ess_mean"] <= lee_plan.draws


def test_the_same_seed_gives_the_same_plan(free_fit, lee_plan):
    again = plan(free_fit("lee"), outcomes=20, seed=1, min_ess=MIN_ESS)
    assert again.to_json() == lee_plan.to_json()


def test_refusal_when_too_few_effective_draws(free_fit, normal_draws):
    """Times recorded to within 0.0001 h: each outcome keeps only draws at (almost) the same
    time, so the ESS is ~1 and every exact-time estimate is refused; and a measurement with
    a tiny error SD leaves one effective draw."""
    exact = plan(free_fit("lee"), outcomes=10, seed=2, tolerance=1e-4, only=lambda c: True)
    for r in exact.rows:
        if r["kind"] == "time":
            assert r["status"] == P.TOO_FEW and r["width_fold"] is None
            assert r["ess_mean"] < 2
    assert exact.rows[-1]["status"] == P.TOO_FEW
    x = normal_draws[:4000]
    tiny = P.expected_width(x, Normal(x, 1e-6), outcomes=10, rng=0)
    assert np.all(tiny["ess"] < 1.01)


def test_a_kind_the_case_lacks_uses_the_prior_error(free_fit):
    """A case without urine (anuric): the urine candidate's Student-t is the prior's own
    (ν degrees of freedom, scale s)."""
    from dialyzability.io.drugs import error_prior

    view = free_fit("anuric").view(0)
    nu, s = error_prior(view.drug.errors["urine"])
    model = P.error_model(view, "urine", np.ones(view.draws.sizes["draw"] * 2))
    assert model.df == pytest.approx(nu)
    np.testing.assert_allclose(model.scale, s)


def test_table_and_json(lee_plan):
    text = lee_plan.table()
    lines = text.splitlines()
    for r in lee_plan.rows:
        assert r["label"] in text and r["time"] in text  # nothing truncated
    header = next(line for line in lines if "candidate measurement" in line)
    body = [line for line in lines if line.strip()[:1].isdigit()]
    assert len(body) == len(lee_plan.rows)
    start = header.index("kind")
    assert all(line[start - 2 : start] == "  " for line in body)  # columns aligned
    data = json.loads(json.dumps(lee_plan.to_json()))
    assert data["case"] == "lee2020-baclofen" and data["quantity"] == "ratio"
    assert len(data["rows"]) == len(lee_plan.rows)
    assert data["current_fold"] == pytest.approx(math.exp(lee_plan.current))
    assert "HDI of log ratio" in data["interval"]


def test_plot_plan_draws_a_bar_per_estimate_and_the_current_width(lee_plan):
    import matplotlib.pyplot as plt

    from dialyzability.outputs.plots import plot_plan

    fig = plot_plan(lee_plan)
    try:
        ax = fig.axes[0]
        ok = [r for r in lee_plan.rows if r["width_fold"] is not None]
        bars = [p for p in ax.patches if p.get_width() > 0]
        assert len(bars) == len(ok)
        # best at the top: the bar highest up is the narrowest
        top = max(bars, key=lambda p: p.get_y())
        assert top.get_x() + top.get_width() == pytest.approx(ok[0]["width_fold"])
        assert any(np.allclose(line.get_xdata(), lee_plan.current_fold) for line in ax.lines)
        ticks = zip(ax.get_yticks(), ax.get_yticklabels(), strict=True)
        ticks = sorted(ticks, key=lambda t: -t[0])
        assert [t.get_text() for _, t in ticks] == [r["label"] for r in lee_plan.rows]
    finally:
        plt.close(fig)


def test_cli_plans_a_saved_fit(lee_free_dir, tmp_path, capsys):
    from dialyzability.cli import main

    out = tmp_path / "plan"
    assert main(["plan", str(lee_free_dir), "--out", str(out), "--outcomes", "10"]) == 0
    printed = capsys.readouterr().out
    assert "What would have settled it" in printed
    assert "urine amount during HD session 1" in printed
    data = json.loads((out / "plan.json").read_text())
    assert data["outcomes"] == 10 and len(data["rows"]) == len(LEE_LABELS)
    assert (out / "plan.png").stat().st_size > 0


def test_cli_refuses_a_folder_without_a_fit(tmp_path, capsys):
    from dialyzability.cli import main

    assert main(["plan", str(tmp_path)]) == 1
    assert "no posterior.nc" in capsys.readouterr().err


def _calibration():
    spec = importlib.util.spec_from_file_location(
        "plan_calibration", ROOT / "scripts" / "plan_calibration.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_planned_widths_agree_with_refits():
    """The honesty study: on 6 simulated cases, 3 candidates each, the planned width of the
    95 % HDI of log ratio is within 25 % of the mean width after adding the measurement
    (simulated from the truth, 5 outcomes) and refitting."""
    cal = _calibration()
    rows = cal.study(outcomes=5)
    print(cal.table(rows))
    assert len({r["case"] for r in rows}) >= 6
    done = [r for r in rows if r["log_ratio"] is not None]
    assert len(done) >= 3 * 6 * 0.8  # few refusals
    assert all(r["agree"] for r in done), cal.table(rows)
