"""Reports and figures: every number of a report equals summary.json, each figure's numbers (its
``*_data`` twin) agree with the posterior they are read from, the pooled report and forest plot,
HTML renders. On NUTS-free fits (tests/conftest.py), except the one real CLI fit that checks
every file is written."""

import base64
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from dialyzability.cli import main
from dialyzability.outputs import plots
from dialyzability.outputs.plots import FIGURES
from dialyzability.outputs.report import (
    build_report,
    extrip_sentences,
    fmt,
    interval,
    median,
    prob,
    probability,
)
from dialyzability.results.extrip import GRADES
from dialyzability.results.quantities import FLOWS_ML_MIN, describe, name_of

NUMBER = r"(-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)"

#: fits whose figures are checked: the founding case, synthetic designs, altered founding cases
#: and one case of the pooled fit read as a single case
FIGURE_FITS = [
    "lee",
    "rich",
    "sparse",
    "no_dose",
    "no_weight",
    "anuric",
    "censored",
    "two_modalities",
    "no_session",
    "pooled:lee2020-two-modalities",
]


def fit_or_view(free_fit, key):
    """The NUTS-free fit of ``key``, or for ``"pooled:<id>"`` that case of the pooled fit."""
    if key.startswith("pooled:"):
        return free_fit("pooled").view(key.split(":", 1)[1])
    return free_fit(key)


def flat(da) -> np.ndarray:
    return np.asarray(da).reshape(-1)


def test_every_figure_and_report_exists(lee_fit_dir):
    """The real CLI fit writes every figure and both reports."""
    names = {p.name for p in lee_fit_dir.iterdir()}
    assert set(FIGURES) <= names
    assert {"report.md", "report.html"} <= names
    for fig in FIGURES:
        data = (lee_fit_dir / fig).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_report_numbers_equal_summary(lee_free_dir):
    summary = json.loads((lee_free_dir / "summary.json").read_text())
    text = (lee_free_dir / "report.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 5 and cells[0] in {**summary["quantities"], **summary["timings"]}:
            rows.setdefault(cells[0], cells)
    assert set(rows) == set(summary["quantities"]) | set(summary["timings"])
    for name, q in {**summary["quantities"], **summary["timings"]}.items():
        _, _, shown, hdi, unit, extra = rows[name][:6]
        lo, hi = hdi.split("–")
        assert shown == median(q) and unit == q["unit"] and hdi == interval(q)
        # each number rounded to >= 2 significant digits: within 5 % of the summary's
        for text_value, value in ((shown, q["median"]), (lo, q["hdi"][0]), (hi, q["hdi"][1])):
            assert float(text_value) == pytest.approx(value, rel=0.05, abs=1e-12)
        if q["unit"] == "L/h":
            assert extra.startswith(f"{fmt(q['median'] * FLOWS_ML_MIN)} (") and "mL/min" in extra
    # the sentence a clinician reads carries the same ratio, and P(ratio > 1) with its MCSE
    r = summary["quantities"]["ratio"]
    assert f"HD cleared baclofen at {median(r)} (95 % interval {interval(r)}) times" in text
    assert f"P(ratio > 1), is {probability(r)}." in text and " ± " in probability(r)
    h = summary["quantities"]["hours_saved"]
    assert f"{median(h)} h (95 % interval {interval(h)}) of toxicity saved" in text
    assert "urine #1 held 42 mg" in text and "session #1 removed 3.05 mg" in text
    # the EXTRIP table: one row per criterion, the four probabilities of the summary
    for per in summary["extrip"]["modalities"]["HD"].values():
        row = f"| HD | {per['label']} | " + " | ".join(prob(per[g]) for g in GRADES) + " |"
        assert row in text
    assert all(s in text for s in extrip_sentences(summary["extrip"]))
    # the verdict opens the report (the first paragraph after the title)
    first = [b for b in text.split("\n\n") if b.strip()][1]
    assert first == f"**{summary['verdict']}**"
    # the diagnostics sentence, and no warning for a converged fit
    assert summary["diagnostics"]["converged"] and "WARNING" not in text


def test_html_is_self_contained(lee_free_dir):
    html = (lee_free_dir / "report.html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    # every figure, embedded byte for byte, in the order of the figures
    assert [base64.b64decode(e) for e in embedded] == [
        (lee_free_dir / name).read_bytes() for name in FIGURES
    ]
    # nothing is fetched: no external sources, links to stylesheets or imports
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", html)
    assert "<link" not in html and "@import" not in html


def test_report_command_rebuilds_without_sampling(lee_free_dir, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(lee_free_dir / "posterior.nc", copy / "posterior.nc")
    assert main(["report", str(copy)]) == 0
    assert json.loads((copy / "summary.json").read_text()) == json.loads(
        (lee_free_dir / "summary.json").read_text()
    )
    assert (copy / "summary.csv").read_text() == (lee_free_dir / "summary.csv").read_text()
    assert (copy / "report.md").read_text() == (lee_free_dir / "report.md").read_text()
    assert all((copy / name).is_file() for name in FIGURES)


def test_report_of_missing_fit_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "no posterior.nc" in capsys.readouterr().err


def test_report_of_unconverged_fit_warns(free_fit, tmp_path):
    result = free_fit("lee_divergent")
    summary = result.summary()
    assert summary.diagnostics.divergences == 3 and not summary.diagnostics.converged
    report = build_report(result, summary, [])
    text = report.markdown()
    assert text.count("> **WARNING**") == 1 and "divergences 3" in text
    assert "NOT CONVERGED" in text and summary.table().startswith("NOT CONVERGED")
    assert all(v.startswith("NOT CONVERGED") for v in summary.verdict)
    assert '<p class="warning">' in report.html(tmp_path)


def test_report_speaks_of_each_modality(free_fit):
    result = free_fit("two_modalities")
    summary = result.summary()
    text = build_report(result, summary, []).markdown()
    q = summary.quantities
    assert result.modalities == ["HD", "CVVH"]
    for m in result.modalities:
        r, c = q[f"ratio_{m}"], q[f"cl_ectr_{m}"]
        assert (
            f"{m} cleared baclofen at {median(r)} (95 % interval {interval(r)}) times the "
            f"renal clearance" in text
        )
        assert f"P(ratio > 1), is {probability(r)}" in text
        assert f"{m} clearance was {median(c)} L/h (95 % interval {interval(c)})" in text
        assert f"EXTRIP, most probable grade per criterion for {m}: " in text
    assert "CVVH session #2 removed 2 mg" in text


def test_report_of_case_without_session(free_fit):
    result = free_fit("no_session")
    summary = result.summary()
    text = build_report(result, summary, []).markdown()
    r = summary.quantities["cl_renal"]
    assert (
        f"no extracorporeal session; renal clearance was {median(r)} L/h "
        f"(95 % interval {interval(r)})" in text
    )
    assert "EXTRIP" not in text and "toxicity saved" not in text and " cleared " not in text
    assert summary.verdict == (
        "The case has no extracorporeal session: there is no ratio to estimate.",
    )
    assert summary.extrip["modalities"] == {}


def test_pooled_report_numbers_equal_its_summary(pooled_free_dir):
    summary = json.loads((pooled_free_dir / "summary.json").read_text())
    text = (pooled_free_dir / "report.md").read_text()
    ratios = [n for n in summary["population"] if n.startswith("ratio_") and "_new_" not in n]
    # one population ratio per modality and kidney class of the batch, each in a sentence
    assert sorted(ratios) == sorted(
        f"ratio_{m}_{k}" for m in ("HD", "CVVH") for k in ("normal", "anuric")
    )
    for name in ratios:
        _, m, k = name.split("_", 2)
        q, new = summary["population"][name], summary["population"][f"ratio_new_{m}_{k}"]
        assert (
            f"with {k} kidneys, {m} cleared baclofen at {median(q)} (95 % interval "
            f"{interval(q)}) times the renal clearance, P(ratio > 1) = {probability(q)}; "
            f"for a new such patient the ratio is {median(new)} (95 % interval "
            f"{interval(new)})" in text
        )
    for cid, c in summary["cases"].items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {cid} |"))
        if c["modalities"]:
            key = "ratio" if len(c["modalities"]) == 1 else f"ratio_{c['modalities'][0]}"
            pooled, single = c["quantities"][key], c["unpooled_ratio"]
            assert f"{median(pooled)} ({interval(pooled)})" in row
            assert f"{median(single)} ({interval(single)})" in row
        else:
            cells = [x.strip() for x in row.strip("|").split("|")]
            assert "unpooled_ratio" not in c and cells[2:] == ["–", "–", "–"]
    html = (pooled_free_dir / "report.html").read_text()
    [embedded] = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert base64.b64decode(embedded) == (pooled_free_dir / "forest.png").read_bytes()


# --- the numbers each figure draws ---------------------------------------------------------


@pytest.mark.parametrize("key", FIGURE_FITS)
def test_levels_data_bands_observations_and_windows(free_fit, key):
    result = fit_or_view(free_fit, key)
    case = result.case
    d = plots.levels_data(result, points=120)
    bands = np.stack([d[k] for k in ("q2.5", "q25", "median", "q75", "q97.5")])
    assert bands.shape == (5, 120) and np.all(np.isfinite(bands)) and np.all(bands >= 0)
    assert np.all(np.diff(bands, axis=0) >= 0)  # 2.5 % <= 25 % <= median <= 75 % <= 97.5 %
    assert np.all(bands[2] > 0) or case.doses  # only before an oral dose is the level 0
    from dialyzability.design import case_events

    times = case_events(case)[0].times
    assert d["time"][0] == min(t.lo for t in times) and d["time"][-1] >= max(t.hi for t in times)
    assert np.all(np.diff(d["time"]) > 0)
    # observed levels, a level below the LLOQ at its LLOQ
    assert len(d["observed"]) == len(case.concentrations)
    for o, c in zip(d["observed"], case.concentrations, strict=True):
        assert o["censored"] == c.below_lloq
        assert o["value"] == (c.lloq if c.below_lloq else c.value)
        assert c.time_h.lo <= o["time"] <= c.time_h.hi
    assert sum(o["censored"] for o in d["observed"]) == (2 if key == "censored" else 0)
    # sessions and urine windows: their possible ranges, their posterior-median starts inside
    assert len(d["sessions"]) == len(case.sessions) and len(d["urine"]) == len(case.urine)
    windows = [*case.sessions, *case.urine]
    for span, window in zip([*d["sessions"], *d["urine"]], windows, strict=True):
        assert span["start_range"] == (window.start_h.lo, window.start_h.hi)
        assert span["end_range"] == (window.end.lo, window.end.hi)
        lo, hi = span["start_range"]
        assert lo - 1e-9 <= span["start"] <= hi + 1e-9
        assert span["vague"] == (window.start_h.is_range or window.end.is_range)
    assert [s["modality"] for s in d["sessions"]] == [s.modality for s in case.sessions]
    assert d["threshold"] == result.threshold and d["clock"] == case.clock


@pytest.mark.parametrize("key", ["lee", "rich", "no_session"])
def test_window_spans_end_inside_their_ranges(free_fit, key):
    """Each session and urine window of fit.png ends inside its possible range, after its
    start, and lasts its reported duration when one is given."""
    result = fit_or_view(free_fit, key)
    d = plots.levels_data(result, points=20)
    windows = [*result.case.sessions, *result.case.urine]
    for span, window in zip([*d["sessions"], *d["urine"]], windows, strict=True):
        lo, hi = span["end_range"]
        assert span["start"] < span["end"]
        assert lo - 1e-9 <= span["end"] <= hi + 1e-9
        if window.duration_h is not None and not window.duration_h.is_range:
            assert span["end"] - span["start"] == pytest.approx(window.duration_h.lo)


@pytest.mark.parametrize("key", ["lee", "censored", "no_dose", "pooled:sim-anuric-7"])
def test_fitted_curves_pass_through_the_models_predictions(free_fit, key):
    """The figure's curves (numpy kinetics, draw by draw) equal the model's own predictions of
    the levels (``pred_level``, the PyTensor model) at the levels' times."""
    from dialyzability.results.predictive import curves

    result = fit_or_view(free_fit, key)
    known = [i for i, c in enumerate(result.case.concentrations) if not c.time_h.is_range]
    t = [result.case.concentrations[i].time_h.lo for i in known]
    c = curves(result, t, max_draws=None)
    pred = result.draws["pred_level"].values.reshape(c.shape[0], -1)[:, known]
    np.testing.assert_allclose(c, pred, rtol=1e-8)


@pytest.mark.parametrize("key", ["lee", "two_modalities", "pooled:lee2020-two-modalities"])
def test_ratio_data_is_the_ratio_of_the_clearances(free_fit, key):
    result = fit_or_view(free_fit, key)
    d = plots.ratio_data(result)
    summary = result.summary()
    assert list(d) == result.modalities
    post = result.posterior
    for m, v in d.items():
        expected = flat(post["cl_ectr"].sel(modality=m) / post["cl_renal"])
        np.testing.assert_allclose(v["draws"], expected)
        assert v["p_above_1"] == pytest.approx((expected > 1).mean())
        assert v["hdi"][0] <= v["median"] <= v["hdi"][1]
        row = summary.quantities[name_of("ratio", m, result.modalities)]
        assert (v["median"], v["hdi"], v["p_above_1"]) == (
            row["median"],
            row["hdi"],
            row["p_above_1"],
        )


@pytest.mark.parametrize("key", ["lee", "rich", "anuric", "two_modalities", "no_session"])
def test_recoveries_data_observed_and_predicted(free_fit, key):
    result = fit_or_view(free_fit, key)
    case = result.case
    rows = plots.recoveries_data(result)
    expected = [f"urine #{i}" for i in range(1, len(case.urine) + 1)]
    expected += [f"{s.modality} #{i}" for i, s in enumerate(case.sessions, 1)]
    assert [r["label"] for r in rows] == expected
    observed = [u.recovered for u in case.urine] + [s.amount for s in case.sessions]
    assert [r["observed"] for r in rows] == observed
    pred, draws = result.predictive, result.draws
    for r, obs, name in zip(
        rows,
        observed,
        [f"urine{i}" for i in range(1, len(case.urine) + 1)]
        + [f"session{i}" for i in range(1, len(case.sessions) + 1)],
        strict=True,
    ):
        assert 0 < r["low"] <= r["median"] <= r["high"]
        if name.startswith("urine"):
            source = pred["urine_amount"].sel(urine=name)  # with measurement error
        elif obs is not None:
            source = pred["effluent_amount"].sel(effluent=name)
        else:  # not measured: the amount the model removed
            source = draws["pred_session"].sel(session=name)
        assert r["median"] == pytest.approx(np.median(flat(source)))


@pytest.mark.parametrize("key", ["lee", "sparse", "rich", "no_session"])
def test_sensitivity_data_pairs_each_range_with_the_ratio(free_fit, key):
    result = fit_or_view(free_fit, key)
    d = plots.sensitivity_data(result)
    if not result.modalities:
        assert d == {}
        return
    from dialyzability.design import case_events

    ranges = case_events(result.case)[0].latent()
    assert set(d) == set(ranges)
    ratio = plots.ratio_data(result)[result.modalities[0]]["draws"]
    for name, v in d.items():
        lo, hi = ranges[name]
        assert np.all((lo <= v["time"]) & (v["time"] <= hi))
        np.testing.assert_array_equal(v["ratio"], ratio)
        np.testing.assert_array_equal(v["time"], flat(result.timing(name)))


@pytest.mark.parametrize("key", ["lee", "two_modalities", "no_session"])
def test_extrip_data_is_the_summarys(free_fit, key):
    result = fit_or_view(free_fit, key)
    d = plots.extrip_data(result)
    assert d == result.summary().extrip
    assert list(d["modalities"]) == result.modalities


@pytest.mark.parametrize("key", ["lee", "censored", "two_modalities", "no_session"])
def test_every_plot_draws_its_data(free_fit, key):
    import matplotlib.pyplot as plt

    result = fit_or_view(free_fit, key)
    for name, plot in FIGURES.items():
        fig = plot(result)
        try:
            text = " ".join(
                [fig._suptitle.get_text() if fig._suptitle else ""]
                + [ax.get_title() for ax in fig.axes]
                + [t.get_text() for ax in fig.axes for t in ax.texts]
            )
            if name == "fit.png":
                ax = fig.axes[0]
                assert ax.get_yscale() == "log"
                markers = [
                    ln for ln in ax.lines if ln.get_marker() in ("o", "v") and len(ln.get_xdata())
                ]
                assert len(markers) == len(result.case.concentrations)
            if name in ("ratio.png", "extrip.png") and not result.modalities:
                assert "No extracorporeal session" in text
            elif name == "sensitivity.png" and not plots.sensitivity_data(result):
                assert "No timing given as a range (or no session)" in text
            else:
                assert result.case.id in text
        finally:
            plt.close(fig)


def test_forest_data_rows_match_the_pooled_draws(free_fit):
    from dialyzability.results.population import population_draws, unpooled_ratios

    pooled, unpooled = free_fit("pooled"), free_fit("unpooled")
    d = plots.forest_data(pooled, unpooled_ratios(unpooled))

    def ratio(fit, c):  # the case's CL_ECTR / CL_R of its first modality, from the posterior
        post = fit.idata.posterior
        return flat(
            post["cl_ectr"].sel(case=c.id, modality=c.modalities[0])
            / post["cl_renal"].sel(case=c.id)
        )

    with_sessions = [c for c in pooled.cases if c.modalities]
    assert [r["case"] for r in d["cases"]] == [c.id for c in with_sessions]
    for row, c in zip(d["cases"], with_sessions, strict=True):
        assert row["modality"] == c.modalities[0]
        assert row["pooled"] == describe(ratio(pooled, c), scale="log")
        assert row["unpooled"] == describe(ratio(unpooled, c), scale="log")
    draws = population_draws(pooled)
    labels = [f"population: {m}, {k} kidneys" for m in ("HD", "CVVH") for k in ("normal", "anuric")]
    assert [r["label"] for r in d["population"]] == labels
    for row, (m, k) in zip(
        d["population"], [(m, k) for m in ("HD", "CVVH") for k in ("normal", "anuric")], strict=True
    ):
        assert row["mean"]["median"] == pytest.approx(np.median(draws[f"ratio_{m}_{k}"]))
        assert row["new"]["median"] == pytest.approx(np.median(draws[f"ratio_new_{m}_{k}"]))
        # a new patient's ratio adds the between-case spread: wider than the typical patient's
        assert np.std(np.log(draws[f"ratio_new_{m}_{k}"])) > np.std(np.log(draws[f"ratio_{m}_{k}"]))
    import matplotlib.pyplot as plt

    fig = plots.plot_forest(pooled, d)
    try:
        ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert ticks == [f"{r['case']} ({r['modality']})" for r in d["cases"]] + labels
    finally:
        plt.close(fig)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_html_renders_every_figure_in_headless_chromium(lee_free_dir, tmp_path):
    # a copy of the report that writes, once loaded, how many images decoded into the title
    page = (lee_free_dir / "report.html").read_text()
    probe = (
        "<script>window.addEventListener('load',()=>{const ok=[...document.images]"
        ".filter(i=>i.complete&&i.naturalWidth>0).length;document.title='loaded '+ok;});"
        "</script></body>"
    )
    (tmp_path / "probe.html").write_text(page.replace("</body>", probe))
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            *profile,
            "--virtual-time-budget=5000",
            "--dump-dom",
            (tmp_path / "probe.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert f"<title>loaded {len(FIGURES)}</title>" in dom.stdout
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            *profile,
            f"--screenshot={shot}",
            "--window-size=1200,2400",
            (lee_free_dir / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert shot.is_file() and shot.stat().st_size > 50_000
