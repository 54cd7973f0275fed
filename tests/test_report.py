"""Report and figures of the founding case: every number equals summary.json; HTML renders."""

import json
import re
import shutil
import subprocess

import pytest

from dialyzability.cli import main
from dialyzability.outputs.plots import FIGURES
from dialyzability.outputs.report import fmt

NUMBER = r"(-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)"


def test_every_figure_and_report_exists(lee_fit_dir):
    names = {p.name for p in lee_fit_dir.iterdir()}
    assert set(FIGURES) <= names
    assert {"report.md", "report.html"} <= names
    for fig in FIGURES:
        data = (lee_fit_dir / fig).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_report_numbers_equal_summary(lee_fit_dir):
    summary = json.loads((lee_fit_dir / "summary.json").read_text())
    text = (lee_fit_dir / "report.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 5 and cells[0] in {**summary["quantities"], **summary["timings"]}:
            rows[cells[0]] = cells
    assert set(rows) == set(summary["quantities"]) | set(summary["timings"])
    for name, q in {**summary["quantities"], **summary["timings"]}.items():
        _, _, median, hdi, unit, *_ = rows[name]
        lo, hi = hdi.split("–")
        assert median == fmt(q["median"]) and unit == q["unit"]
        assert (lo, hi) == (fmt(q["hdi"][0]), fmt(q["hdi"][1]))
        assert float(median) == pytest.approx(q["median"], rel=5e-3, abs=1e-9)
    # the sentence a clinician reads carries the same ratio
    m = re.search(rf"HD cleared baclofen at {NUMBER} \(95 % HDI {NUMBER}–{NUMBER}\) times", text)
    r = summary["quantities"]["ratio"]
    assert m and [float(x) for x in m.groups()] == pytest.approx([r["median"], *r["hdi"]], rel=5e-3)
    m = re.search(rf"P\(ratio > 1\), is {NUMBER}", text)
    assert m and float(m.group(1)) == pytest.approx(r["p_above_1"], abs=5e-3)
    h = summary["quantities"]["hours_saved"]
    assert f"{fmt(h['median'])} h (95 % HDI {fmt(h['hdi'][0])}–{fmt(h['hdi'][1])})" in text
    for per in summary["extrip"]["modalities"]["HD"].values():
        assert fmt(per["D"]) in text


def test_html_is_self_contained(lee_fit_dir):
    html = (lee_fit_dir / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(FIGURES)
    # nothing is fetched: no external sources, links to stylesheets or imports
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", html)
    assert "<link" not in html and "@import" not in html


def test_report_command_rebuilds_without_sampling(lee_fit_dir, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(lee_fit_dir / "posterior.nc", copy / "posterior.nc")
    assert main(["report", str(copy)]) == 0
    assert json.loads((copy / "summary.json").read_text()) == json.loads(
        (lee_fit_dir / "summary.json").read_text()
    )
    assert (copy / "report.html").is_file() and (copy / "fit.png").is_file()


def test_report_of_missing_fit_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "no posterior.nc" in capsys.readouterr().err


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
def test_html_renders_every_figure_in_headless_chromium(lee_fit_dir, tmp_path):
    # a copy of the report that writes, once loaded, how many images decoded into the title
    page = (lee_fit_dir / "report.html").read_text()
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
            (lee_fit_dir / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert shot.is_file() and shot.stat().st_size > 50_000
