"""Figures and report a paper can use as they are: tick labels, words not internal names, no
empty panels, no overlapping text, distinct best-of-N series, captions, sizes, LaTeX tables,
significant digits. Fitted once on the shipped study (every figure kind occurs in it)."""
import math
import re
from pathlib import Path

import numpy as np
import pytest

from ebt_scaling.cli import main
from ebt_scaling.fit.api import fit_source
from ebt_scaling.fit.fitting import Interval
from ebt_scaling.report import write
from ebt_scaling.report.figures import build_figures
from ebt_scaling.report.numbers import interval, p_value, sig, tick
from ebt_scaling.report.style import FigureStyle, log_ticks

pytestmark = pytest.mark.filterwarnings("ignore:More than 20 figures")  # the module holds them all open

RESULTS = Path(__file__).resolve().parents[1] / "results"
needs_study = pytest.mark.skipif(not (RESULTS / "flops").exists(), reason="no shipped study in results/")


# ---------------------------------------------------------------- numbers
def test_significant_digits():
    assert [sig(v) for v in (0.023851, 1234, 2.28e14, 7.2, 9.996, 2.4e-13, 0, 131072)] == [
        "0.0239", "1230", "2.28e14", "7.20", "10.0", "2.40e-13", "0", "1.31e5"]
    assert sig(-0.2167, signed=True) == "-0.217" and sig(0.0755, signed=True) == "+0.0755"
    assert sig(float("nan")) == "n/a" and sig(None) == "n/a"
    assert interval(Interval(0.7698, -0.116, 1.802), scale=100, signed=True, unit="%") == "+77.0% [-11.6, +180]"
    assert interval(Interval(2.0, math.nan, math.nan)) == "2.00"
    assert [p_value(p) for p in (0.0618, 0.113, 0.0004)] == ["0.062", "0.11", "< 0.001"]


def test_tick_labels_are_one_format_on_every_scale():
    assert [tick(v) for v in (7, 0.05, 300, 1000, 2048, 3e5, 1e6, 2.5e9, 1e12, 1e20)] == [
        "7", "0.05", "300", "1k", "2.05k", "300k", "1M", "2.5G", "1T", "100E"]
    assert tick(-2000) == "\u22122k"
    for v in np.logspace(-4, 22, 300):
        assert re.fullmatch(r"[0-9.]+[kMGTPEZ]?", tick(v)), (v, tick(v))    # never 3e5, 10^4 or 6x10^4


@pytest.mark.parametrize("max_ticks", [4, 5, 6])
def test_log_ticks_label_the_range(max_ticks):
    rng = np.random.default_rng(0)
    for _ in range(400):
        lo = 10 ** rng.uniform(-2, 18)
        hi = lo * 10 ** rng.uniform(0.05, 12)
        t = log_ticks(lo, hi, max_ticks)
        assert 2 <= len(t) <= max_ticks, (lo, hi, t)
        assert all(lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9) for v in t), (lo, hi, t)
        assert len({tick(v) for v in t}) == len(t), (lo, hi, t)      # no two ticks print alike
    assert log_ticks(0.93, 4.3) == [1, 2, 3, 4]                      # 1-4 layers: every layer
    assert log_ticks(100, 130) == [100, 110, 120, 130]               # narrow: evenly spaced


# ---------------------------------------------------------------- the figures of the shipped study
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    if not (RESULTS / "flops").exists():
        pytest.skip("no shipped study in results/")
    return fit_source(RESULTS, tmp_path_factory.mktemp("fig"), n_boot=50, n_boot_saturating=10)


@pytest.fixture(scope="module", params=["default", "large font"])
def built(study, request):
    style = FigureStyle() if request.param == "default" else FigureStyle(3.0, 6.0, 10.0)
    figs = list(build_figures(study, style))
    for b in figs:
        b.fig.canvas.draw()
    yield figs
    from matplotlib import pyplot
    for b in figs:
        pyplot.close(b.fig)


def _texts(fig):
    from matplotlib.text import Text
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def test_every_figure_kind_is_made(built):
    names = {b.name for b in built}
    assert {"fit_all", "fit_data", "isoflop", "thinking_passes", "thinking_ood", "curves_data",
            "curves_flops", "curves_thinking"} <= names
    assert any(n.startswith("chinchilla_") for n in names)
    shipped = {d.name for d in RESULTS.iterdir() if d.is_dir() and not d.name.startswith("_")}
    assert {n for n in names if n.startswith("curves_")} == {f"curves_{s}" for s in shipped}


def test_no_empty_panels(built):
    for b in built:
        for ax in b.fig.axes:
            if ax.get_label() == "<colorbar>":
                continue
            assert ax.get_visible(), b.name
            assert ax.lines or ax.collections, (b.name, ax.get_title())


def test_text_is_words_not_internal_names(built):
    for b in built:
        for t in _texts(b.fig):
            text = t.get_text()
            assert "_" not in text and "ood:" not in text and "flops (" not in text, (b.name, text)


def test_log_axes_use_one_tick_format(built):
    for b in built:
        for ax in b.fig.axes:
            for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
                if scale != "log":
                    continue
                labels = [t.get_text() for t in axis.get_majorticklabels() if t.get_text()]
                assert labels, (b.name, ax.get_title())
                for lab in labels:
                    assert re.fullmatch(r"\u2212?[0-9.]+[kMGTPEZ]?", lab), (b.name, lab)


def test_no_text_overlaps_other_text(built):
    for b in built:
        renderer = b.fig.canvas.get_renderer()
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _texts(b.fig)]
        for i, (ta, a) in enumerate(boxes):
            for tb, c in boxes[i + 1:]:
                overlap_w = min(a.x1, c.x1) - max(a.x0, c.x0)
                overlap_h = min(a.y1, c.y1) - max(a.y0, c.y0)
                assert not (overlap_w > 1 and overlap_h > 1), (b.name, ta, tb)


def test_best_of_n_series_differ_in_colour_and_marker(built):
    fig = next(b.fig for b in built if b.name == "thinking_passes")
    handles = fig.legends[0].legend_handles
    styles = [(h.get_color(), h.get_marker()) for h in handles]
    assert len(styles) >= 5                                   # Transformer++, EBT best of 1, 2, 5, 10
    assert len({c for c, _ in styles}) == len(styles) and len({m for _, m in styles}) == len(styles)


def test_ood_panels_name_their_set_and_metric(built):
    fig = next(b.fig for b in built if b.name == "thinking_passes")
    by_title = {ax.get_title(): ax.get_ylabel() for ax in fig.axes}
    assert by_title["Dyck brackets (out of distribution)"] == "Perplexity on this set"
    assert by_title["Validation set (in distribution)"] == "Validation perplexity"


def test_isoflop_figure_draws_loss_against_n_per_budget_with_optima(built, study):
    fig = next(b.fig for b in built if b.name == "isoflop")
    tpp = next(ax for ax in fig.axes if ax.get_title().startswith("Transformer++"))
    stars = [ln for ln in tpp.lines if ln.get_marker() == "*"]
    iso = study.isoflop["flops/transformer_pp"]
    assert len(stars) == iso.budgets.size == 3
    assert sorted(float(ln.get_xdata()[0]) for ln in stars) == pytest.approx(sorted(iso.N_opt))
    assert tpp.get_xlabel().startswith("Non-embedding parameters") and "nats" in tpp.get_ylabel()


def test_chinchilla_figure_says_loss_in_nats(built):
    fig = next(b.fig for b in built if b.name.startswith("chinchilla_"))
    assert "loss (nats/token)" in fig.axes[0].get_ylabel()


def test_learning_curves_have_a_line_per_trial(built, study):
    fig = next(b.fig for b in built if b.name == "curves_data")
    n_trials = study.curves.loc[study.curves["sweep"] == "data", "trial_id"].nunique()
    lines = sum(1 for ax in fig.axes for ln in ax.lines if ln.get_linestyle() != "None")
    from ebt_scaling.sweep.plan import load_plan
    assert lines == n_trials == len(load_plan(str(RESULTS.parent / "sweeps" / "data.yaml"), "cpu")[1])


# ---------------------------------------------------------------- what write() leaves on disk
@pytest.fixture(scope="module")
def written(study, tmp_path_factory):
    from dataclasses import replace
    out = tmp_path_factory.mktemp("written")
    return write(replace(study, out=out), figures=True, latex=True,
                 style=FigureStyle(column_width=4.0, page_width=7.5, font_size=9))


def test_every_figure_has_a_caption_that_explains_its_marks(written):
    pdfs = [p for p in written.files if p.suffix == ".pdf"]
    assert pdfs
    for pdf in pdfs:
        assert pdf.with_suffix(".png").exists(), pdf
        caption = pdf.with_suffix(".txt").read_text()
        assert len(caption) > 100, pdf
    cap = {p.stem: p.with_suffix(".txt").read_text() for p in pdfs}
    assert "95%" in cap["fit_data"] and "circle: Transformer++" in cap["fit_data"]
    assert "Bands" in cap["fit_data"] and "two-sided" in cap["fit_data"]
    assert "black star" in cap["isoflop"] and "Open circles" in cap["isoflop"]
    assert "Dashed line: y = x" in next(v for k, v in cap.items() if k.startswith("chinchilla_"))
    assert "diamond: EBT (S2) best of 2" in cap["thinking_passes"]


def test_style_options_set_sizes(written):
    from PIL import Image
    w_in = Image.open(written.out / "fit_data.png").size[0] / 200
    assert w_in == pytest.approx(4.0, abs=0.25)          # bbox tight trims a little
    w_in = Image.open(written.out / "fit_all.png").size[0] / 200
    assert w_in == pytest.approx(7.5, abs=0.4)


def test_report_has_provenance_terms_and_three_digits(written, study):
    report = (written.out / "report.md").read_text()
    for field in ("- generated: ", "- code: ebt-scaling ", "- command: `", "- machine: Python ",
                  "- trials trained on "):
        assert field in report, field
    assert "CPU threads" in report and f"cpu-1t fp32: {study.n_trials} trial(s)" in report
    terms = report.split("## Terms")[1].split("## Figures")[0]
    for term in ("gain (scaling-rate gain)", "slope difference", "Welch interval, p (two-sided)",
                 "not identified in this range", "improvement from thinking", "OOD ratio", "crossover"):
        assert f"**{term}**" in terms, term
    table = report.split("## Scaling rate")[1].split("\n## ")[0]
    rows = [r for r in table.splitlines() if r.startswith("| ") and "---" not in r][1:]
    assert len(rows) == len(study.comparisons) >= 7
    for row in rows:
        cells = row.split(" | ")[2:8]          # slopes, difference, p, gain
        for number in re.findall(r"[0-9][0-9.]*(?:e-?[0-9]+)?", " ".join(cells)):
            mantissa = number.split("e")[0].replace(".", "").lstrip("0")
            assert len(mantissa) <= 3, (number, row)
    # an improvement from thinking is positive when perplexity falls, as in the README
    val = next(l for l in report.splitlines() if l.startswith("| ebt_s2 | val |"))
    improvement = float(re.search(r"\| ([+-][0-9.]+)% \[", val).group(1))
    default, best = (float(c) for c in val.split(" | ")[3:5])
    assert improvement == pytest.approx(100 * (default - best) / default, abs=0.1) and improvement > 0


def test_latex_tables_have_the_shape_latex_needs(written, study):
    tex = (written.out / "tables.tex").read_text()
    tables = re.findall(r"\\begin\{tabular\}\{([a-z]+)\}(.*?)\\end\{tabular\}", tex, flags=re.S)
    assert len(tables) == 2 and tex.count("\\begin{table}") == tex.count("\\end{table}") == 2
    for spec, body in tables:
        rows = [r for r in body.strip().splitlines() if r.strip().endswith("\\\\")]
        assert rows and all(r.count("&") == len(spec) - 1 for r in rows), spec
        assert "\\toprule" in body and "\\bottomrule" in body
    assert not re.search(r"(?<!\\)[%_]", tex.split("\n", 1)[1])        # escaped (the first line is a comment)
    s2_data = next(c for c in study.comparisons if c.family == "ebt_s2" and c.sweep == "data")
    assert f"{100 * s2_data.gain.estimate:+.1f}\\%" in tex and "\\label{tab:thinking}" in tex


@needs_study
def test_cli_figure_options_reject_bad_values(tmp_path, capsys):
    assert main(["fit", str(RESULTS / "depth"), "--out", str(tmp_path), "--fig-width", "0"]) == 2
    assert "column_width=0.0 must be a positive number" in capsys.readouterr().err


def test_thinking_ood_draws_intervals_where_the_table_has_them():
    import pandas as pd
    from ebt_scaling.report.figures import thinking_ood_figure
    table = pd.DataFrame({"family": ["ebt_s2"] * 3 + ["transformer_pp"] * 3,
                          "eval_set": ["val", "ood:arith", "ood:dyck"] * 2,
                          "ood_ratio": [1.0, 20.0, 3000.0, 1.0, 10.0, 2000.0],
                          "improvement_pct": [2.0, 7.0, 80.0, 0.0, 0.0, 0.0],
                          "improvement_low": [1.0, 4.0, 70.0, 0.0, 0.0, 0.0],
                          "improvement_high": [3.0, 9.0, 88.0, 0.0, 0.0, 0.0]})
    b = thinking_ood_figure(table, ["transformer_pp", "ebt_s2"], FigureStyle())
    ax = b.fig.axes[0]
    assert len(ax.containers) == 2                      # an errorbar container per family
    assert "Error bars: 95% intervals" in b.caption and "No intervals" not in b.caption
    labels = {t.get_text() for t in ax.texts}
    assert labels == {"validation", "arithmetic", "Dyck"}    # the family that cannot think is not labelled
    from matplotlib import pyplot
    pyplot.close(b.fig)
