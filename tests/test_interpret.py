"""What a fit means: verdict thresholds, prior against posterior, the interval and digits
policy, the reviewer's flags, the exit status of a fit that fails the convergence gate, and
tables people can read. Formulas against hand arithmetic; outputs on NUTS-free fits
(tests/conftest.py), except the two CLI fits (the short founding-case fit and a forced failure).
"""

import csv
import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from dialyzability.cli import EXIT_NOT_CONVERGED, main
from dialyzability.outputs.report import Block, build_report
from dialyzability.results import interpret
from dialyzability.results.interpret import (
    PRIOR_DOMINATED,
    VERDICT_P,
    prediction_flags,
    timing_flags,
    verdict,
    width_ratio,
)
from dialyzability.results.quantities import describe, probability_above, rounded

from .conftest import LEE


def ratio_row(draws):
    """The summary row of ratio draws (chain, draw), as the summary makes it."""
    row = describe(draws, 0.95, "log")
    above = probability_above(draws, 1.0)
    return {**row, "p_above_1": above["p"], "p_above_1_mcse": above["mcse"]}


@pytest.mark.parametrize(
    ("log_median", "sd", "expected"),
    [
        (math.log(6.0), 0.4, "faster"),  # P(ratio > 1) = Phi(ln 6 / 0.4) = Phi(4.5) ~ 1
        (math.log(0.15), 0.4, "slower"),  # P = Phi(-4.7) ~ 0
        (0.0, 1.4, "even"),  # P = 0.5
        (math.log(2.0), 1.0, "leans faster"),  # P = Phi(0.69) = 0.76: between 0.65 and 0.9
    ],
)
def test_verdict_thresholds(log_median, sd, expected):
    rng = np.random.default_rng(7)
    draws = np.exp(rng.normal(log_median, sd, size=(4, 1000)))
    row = ratio_row(draws)
    text = verdict(row, "HD", "baclofen")
    if expected == "faster":
        assert row["p_above_1"] >= VERDICT_P
        assert text.startswith("HD cleared baclofen faster than the kidneys (P = ")
    elif expected == "slower":
        assert row["p_above_1"] <= 1 - VERDICT_P
        assert text.startswith("HD cleared baclofen more slowly than the kidneys (P = ")
    elif expected == "even":
        assert text.startswith("Inconclusive: HD cleared baclofen at between ")
        assert abs(row["p_above_1"] - 0.5) <= interpret.EVEN_BAND
        assert "faster and slower are about equally likely (P(faster) = 0." in text
    else:
        assert 0.65 < row["p_above_1"] < VERDICT_P
        assert "faster is more likely than slower, but not settled" in text
    # the interval of the sentence is the row's, and a converged fit's verdict has no warning
    assert rounded(row["hdi"][1], row["mcse"]["hdi"][1]) in text
    assert "NOT CONVERGED" not in text
    assert verdict(row, "HD", "baclofen", converged=False).startswith("NOT CONVERGED")


def test_verdict_at_the_threshold():
    # P(ratio > 1) exactly 0.9 is "faster"; just under is inconclusive
    row = {"median": 2.0, "hdi": [0.8, 5.0], "p_above_1": 0.9, "p_above_1_mcse": 0.01}
    assert verdict(row, "HD", "lithium").startswith("HD cleared lithium faster")
    row["p_above_1"] = 0.89
    assert verdict(row, "HD", "lithium").startswith("Inconclusive")


def test_prior_dominated_label():
    # posterior interval [0.2, 5] against the prior [0.05, 20]: ln 25 / ln 400 = 3.22 / 5.99
    # = 0.537 >= 0.5: prior-dominated, said in the verdict
    row = {"median": 1.0, "hdi": [0.2, 5.0], "p_above_1": 0.5, "p_above_1_mcse": 0.01}
    ratio = width_ratio(row, {"hdi": [0.05, 20.0]}, "log")
    assert ratio == pytest.approx(math.log(25) / math.log(400)) and ratio >= PRIOR_DOMINATED
    row["width_ratio"] = ratio
    assert "this answer is mostly the prior" in verdict(row, "HD", "baclofen")
    row["width_ratio"] = 0.2
    assert "mostly the prior" not in verdict(row, "HD", "baclofen")


def test_width_ratio_hand_arithmetic():
    # log scale: [1, e] against [1, e^4]: 1 / 4; linear: [0, 1] against [0, 4]: 1 / 4
    assert width_ratio({"hdi": [1, math.e]}, {"hdi": [1, math.e**4]}, "log") == pytest.approx(0.25)
    assert width_ratio({"hdi": [0, 1]}, {"hdi": [0, 4]}, "linear") == pytest.approx(0.25)
    assert width_ratio({"hdi": [0, 1]}, None, "linear") is None


def test_interval_policy_log_scale():
    # log X ~ N(0, 0.5): the HDI of log X is the central interval 0 +- 1.96 * 0.5, so the
    # interval of X is exp(+-0.98) = 0.375-2.66, not the linear HDI (which is shifted left)
    rng = np.random.default_rng(1)
    x = np.exp(rng.normal(0.0, 0.5, size=(4, 25_000)))
    log_row, linear_row = describe(x, 0.95, "log"), describe(x, 0.95, "linear")
    assert log_row["hdi"] == pytest.approx([math.exp(-0.98), math.exp(0.98)], rel=0.02)
    assert linear_row["hdi"][0] < log_row["hdi"][0] and linear_row["hdi"][1] < log_row["hdi"][1]
    assert log_row["interval"].startswith("HDI of log")


def test_mcse_and_digits():
    # independent draws: MCSE of P(x > 1) is sqrt(p (1 - p) / n) = sqrt(0.25 / 4000) = 0.0079
    rng = np.random.default_rng(2)
    x = np.exp(rng.normal(0.0, 1.0, size=(4, 1000)))
    above = probability_above(x)
    assert above["mcse"] == pytest.approx(math.sqrt(0.25 / 4000), rel=0.15)
    # the median of a standard log-normal: MCSE ~ 1.2533 * 1 / sqrt(4000) = 0.02 on the log
    # scale, so about 0.02 on the ratio at its median 1: two decimals
    row = describe(x, 0.95, "log")
    assert 0.01 < row["mcse"]["median"] < 0.04
    assert len(rounded(row["median"], row["mcse"]["median"]).split(".")[1]) == 2
    # the rounding rule, by hand: last digit at the decade of the MCSE's first digit
    assert rounded(0.8234, 0.012) == "0.82"
    assert rounded(4.937, 0.3) == "4.9"
    assert rounded(21.3, 2) == "21"
    assert rounded(123.456, 0.0001) == "123.5"  # at most 4 significant digits
    assert rounded(0.5, 10) == "0.50"  # at least 2
    assert rounded(2.1e-6, None) == "2.10e-06"
    # P(ratio > 1) with its MCSE; at 0 or 1 there is no Monte Carlo error to show
    from dialyzability.results.quantities import format_p

    assert format_p({"p_above_1": 0.4327, "p_above_1_mcse": 0.0115}) == "0.43 ± 0.01"
    assert format_p({"p_above_1": 1.0, "p_above_1_mcse": 0.0}) == "1.00, every draw"
    assert format_p({"p_above_1": 0.0, "p_above_1_mcse": 0.0}) == "0.00, no draw"


def test_founding_case_summary_has_the_flag_and_the_verdict(lee_fit_dir):
    """The real (short) fit of the founding case: the verdict is first, "Inconclusive", and the
    urine collection's start piles against the top of its range (the 42 mg fits only then)."""
    summary = json.loads((lee_fit_dir / "summary.json").read_text())
    assert next(iter(summary)) == "verdict"
    converged = summary["converged"]
    assert summary["verdict"].startswith("Inconclusive" if converged else "NOT CONVERGED")
    flags = {f["name"]: f for f in summary["flags"]}
    flag = flags["t_urine1_start"]
    assert flag["kind"] == "timing_at_bound" and flag["bound"] == 14.0
    assert flag["message"].startswith("the 42 mg in urine collection 1 fits only if")
    report = (lee_fit_dir / "report.md").read_text()
    assert "EXTRIP criteria do not apply" in report
    assert "## Prior against posterior" in report and "prior_posterior.png" in report
    assert "fits only if the collection began near 14 h" in report


def test_timing_flags_follow_the_draws(free_fit):
    """Prior draws of a timing are uniform on its range: no flag. Move the draws of the urine
    start into the top quarter of its range and the flag is raised with the case's amount."""
    fit = free_fit("lee")
    view = fit.view(0)
    assert timing_flags(view) == []
    timing = view.draws["timing"]
    lo, hi = fit.batch.events[0].latent()["t_urine1_start"]
    moved = timing.copy()
    moved.loc[{"latent_time": "t_urine1_start"}] = hi - 0.1 * (hi - lo)
    view.__dict__["draws"] = view.draws.assign(timing=moved)
    try:
        (flag,) = timing_flags(view)
    finally:
        del view.__dict__["draws"]
    assert flag["name"] == "t_urine1_start" and flag["bound"] == hi and flag["share"] == 1.0
    assert (
        "the 42 mg in urine collection 1 fits only if the collection began near 14 h"
        in (flag["message"])
    )


def test_prediction_flags(free_fit):
    """A level 1000 times what every draw predicts is flagged "higher"; none of the NUTS-free
    fit's own observations is (they are inside their predictive range)."""
    fit = free_fit("lee")
    view = fit.view(0)
    before = prediction_flags(view)
    observed = view.observed.copy()
    observed["concentration"] = observed["concentration"] * 1000
    view.__dict__["observed"] = observed
    try:
        flags = prediction_flags(view)
    finally:
        del view.__dict__["observed"]
    names = {f["name"] for f in flags} - {f["name"] for f in before}
    assert names == {"level1"}
    (flag,) = [f for f in flags if f["name"] == "level1"]
    assert (
        flag["p_rep_above"] < interpret.PPC_TAIL
        and "higher than the model predicts" in (flag["message"])
    )


def test_windows_are_collected_against_modelled(free_fit):
    fit = free_fit("lee")
    summary = fit.summary()
    windows = {w["name"]: w for w in summary.windows}
    assert windows["urine1"]["collected_mg"] == 42.0
    assert windows["session1"]["collected_mg"] == 3.05
    assert windows["session2"]["collected_mg"] is None
    median = float(np.median(fit.draws["pred_urine"].sel(urine="urine1")))
    assert windows["urine1"]["modelled_mg"]["median"] == pytest.approx(median)


def test_prior_rows_beside_the_posterior(free_fit):
    fit = free_fit("lee")
    rows = fit.summary().quantities
    prior = fit.view(0).prior_quantities()
    for name in ("ratio", "cl_renal", "cl_ectr", "thalf_off"):
        expected = describe(prior[name], 0.95, rows[name]["scale"])
        assert rows[name]["prior"]["hdi"] == expected["hdi"]
        assert rows[name]["width_ratio"] == pytest.approx(
            width_ratio(rows[name], expected, rows[name]["scale"])
        )


def test_console_table_cuts_no_label_and_csv_reads_back(free_fit):
    summary = free_fit("lee").summary()
    table = summary.table()
    assert table.splitlines()[0] == summary.verdict[0]
    for name, q in summary.rows().items():
        assert name in table and q["label"] in table
    rows = list(csv.DictReader(io.StringIO(summary.to_csv())))
    assert [r["name"] for r in rows] == list(summary.rows())
    assert float(rows[0]["median"]) == pytest.approx(summary.rows()[rows[0]["name"]]["median"])


def test_markdown_and_html_right_align_numbers(free_fit, tmp_path):
    fit = free_fit("lee")
    report = build_report(fit, fit.summary(), [])
    md = report.markdown()
    assert "|---|---|---:|---:|---|---|" in md  # quantity, meaning | median, interval | unit, ""
    assert '<td class="num">' in report.html(tmp_path)
    block = Block("table", rows=(("a", "1.5", "2–3"),), header=("x", "y", "z"))
    assert block.right_aligned() == [False, True, True]


def test_extrip_panel_greyed_when_the_criteria_do_not_apply(free_fit):
    from dialyzability.outputs.plots import GREYS, plot_extrip

    fit = free_fit("lee")
    data = fit.summary().extrip
    assert data["applies"] == (data["p_thalf_off_above_4h"] >= 0.5)
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    for applies in (True, False):
        fig = plot_extrip(fit, {**data, "applies": applies})
        ax = fig.axes[0]
        colours = {mcolors.to_hex(p.get_facecolor()) for p in ax.patches}
        assert (colours <= set(GREYS)) == (not applies)
        assert ("DO NOT APPLY" in fig._suptitle.get_text()) == (not applies)
        plt.close(fig)


def test_prior_posterior_figure(free_fit):
    from dialyzability.outputs.plots import plot_prior_posterior, prior_posterior_data

    fit = free_fit("lee")
    data = prior_posterior_data(fit)
    assert list(data) == ["ratio", "cl_renal", "cl_ectr", "thalf_off"]
    prior = fit.view(0).prior_quantities()
    np.testing.assert_array_equal(data["ratio"]["prior"], np.asarray(prior["ratio"]).ravel())
    fig = plot_prior_posterior(fit, data)
    assert len(fig.axes) == 4
    assert all("prior" in ax.get_title() or "data" in ax.get_title() for ax in fig.axes)


def test_fit_that_fails_the_gate_exits_with_its_status(tmp_path):
    """Forced with tiny draws: exit status 3 (not 1, bad input), NOT CONVERGED first in the
    summary, its verdict and the report."""
    out = tmp_path / "fit"
    args = ["fit", str(LEE), "--out", str(out), "--seed", "1", "--quiet"]
    args += ["--draws", "15", "--tune", "15", "--chains", "2"]
    assert main(args) == EXIT_NOT_CONVERGED == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["converged"] is False and summary["verdict"].startswith("NOT CONVERGED")
    report = (out / "report.md").read_text().split("\n\n")
    assert report[1].startswith("> **WARNING** NOT CONVERGED")


def test_cli_hides_pytensor_blas_advice():
    code = (
        "import warnings, sys\n"
        "from dialyzability.cli import main\n"
        f"main(['check', {str(LEE)!r}])\n"
        "warnings.warn('PyTensor could not link to a BLAS installation.', UserWarning)\n"
        "warnings.warn('another warning', UserWarning)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0
    assert "BLAS" not in done.stderr and "another warning" in done.stderr


@pytest.mark.slow
def test_verdict_on_simulated_cases():
    """scripts/verdict_study.py: a rich case with HD at 10 times the renal clearance reads
    "faster", at a tenth "more slowly", and a sparse case with a true ratio of 1 reads
    "Inconclusive"; every fit converged."""
    import importlib.util

    from .conftest import ROOT

    spec = importlib.util.spec_from_file_location(
        "verdict_study", ROOT / "scripts/verdict_study.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.study()
    assert [r["agrees"] for r in rows] == [True, True, True], [r["verdict"] for r in rows]
    assert all(r["converged"] for r in rows)


def test_anchored_timing_is_said_relative_to_its_anchor():
    """A timing that is an offset after another event is said as that offset, never as a
    clock time: "level 3 was about 1 h after the end of HD session 2"."""
    from dialyzability.design import Timing
    from dialyzability.io.case import load_case
    from dialyzability.results.interpret import _timing_sentence

    case = load_case(LEE)
    offset = Timing("t_level1_offset", "level1", "offset", "session2_end")
    text = _timing_sentence(case, offset, 1.0, True, 0.0, 1.0, 0.8)
    assert text.startswith(
        "the data fit only if level 1 was about 1 h after the end of HD session 2"
    )
    start = Timing("t_session1_start", "session1_start", "time", None)
    text = _timing_sentence(case, start, 14.0, False, 14.0, 30.0, 0.7)
    assert text.startswith(
        "the 3.05 mg in the effluent of HD session 1 fits only if the session began near 14 h"
    )
