"""The figures of a fit, ready for a paper: vector PDFs with PNG copies and a caption each.

    fit_<axis>.pdf        one axis: trials, the paper's line with its 95% band, crossover
    fit_all.pdf           every axis, a panel each
    curves_<sweep>.pdf    validation loss along training, a line per trial, coloured by x
    isoflop.pdf           loss against N per compute budget with the fitted optima; N* against C
    thinking_passes.pdf   perplexity against forward passes per eval set, a series per best-of-N
    thinking_ood.pdf      improvement from thinking against the OOD ratio
    chinchilla_<fit>.pdf  observed loss against the fitted L(N, D)

Beside each: <name>.png and <name>.txt, a caption that names every mark drawn.
Only drawing happens here (style.py holds the look): every number plotted comes
from the fit objects. `build_figures` returns the open figures (tests inspect them),
`write_figures` saves them.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .numbers import design, figure_text, interval, p_value, sig, tick
from .style import (MARKER_NAMES, FigureStyle, family_style, figure, fit_log_ticks, fit_titles, plt, save,
                    series_styles, set_log_ticks)

AXIS_LABELS = {
    "data": "Training tokens", "batch": "Batch size (tokens)", "depth": "Layers",
    "width": "Model width $d$", "params": "Non-embedding parameters", "flops": "Training compute (FLOPs)",
}
AXIS_TITLES = {"data": "Data", "batch": "Batch size", "depth": "Depth", "width": "Width",
               "params": "Parameters", "flops": "Compute"}
SWEEP_WORDS = {"data": "data sweep", "batch": "batch-size sweep", "depth": "depth sweep",
               "width": "width sweep", "params": "parameter sweep", "flops": "compute sweep",
               "thinking": "thinking sweep", "data_bpe": "BPE data sweep",
               "params_bpe": "BPE parameter sweep"}
METRIC_LABELS = {"val_ppl": "Validation perplexity", "val_loss": "Validation loss (nats/token)",
                 "train_loss": "Training loss (nats/token)"}
EVAL_SETS = {"val": ("Validation set (in distribution)", "validation"),
             "ood:dyck": ("Dyck brackets (out of distribution)", "Dyck"),
             "ood:arith": ("Arithmetic (out of distribution)", "arithmetic"),
             "ood:python": ("Python code (out of distribution)", "Python")}
LOSS_LABEL = "Validation loss (nats/token)"


@dataclass
class Built:
    """One figure before saving: its file name, the matplotlib figure and its caption."""

    name: str
    fig: object
    caption: str


def _words(label: str) -> str:
    """An axis label inside a sentence: 'Model width $d$' -> 'model width d' (acronyms kept)."""
    text = label.replace("$", "")
    return text[0].lower() + text[1:] if len(text) > 1 and text[1].islower() else text


def _legend_value(v: float) -> str:
    """A design value in a legend: 2048 as set, 1.2e6 as 1.2M."""
    return design(v) if v == int(v) and abs(v) < 1e4 else tick(v)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "all"


def _family_name(family: str, families) -> str:
    return family_style(family, families)[2]


def _marker_key(families, present) -> str:
    """'circle: Transformer++, triangle: EBT (S2)'."""
    return ", ".join(f"{MARKER_NAMES.get(family_style(f, families)[1], 'marker')}: {_family_name(f, families)}"
                     for f in present)


def eval_set_words(eval_set: str) -> tuple[str, str]:
    """(panel title, short label) of an eval set: 'ood:dyck' -> 'Dyck brackets (out of distribution)'."""
    if eval_set in EVAL_SETS:
        return EVAL_SETS[eval_set]
    if eval_set.startswith("hf:"):
        return f"{eval_set[3:]} (Hugging Face set)", eval_set[3:]
    return eval_set, eval_set


def axis_title(sweep: str, axis: str, frontier: bool = False) -> str:
    """A panel title in words: 'Data', 'Compute (parameter sweep)', 'Compute (lowest loss per budget)'."""
    words = AXIS_TITLES.get(axis, axis)
    if frontier:
        return f"{words} (lowest loss per budget)"
    if sweep and sweep != axis:
        return f"{words} ({SWEEP_WORDS.get(sweep, sweep.replace('_', ' ') + ' sweep')})"
    return words


def comparison_text(c, families, named: bool = True) -> str:
    """'EBT (S2): gain +77% [-12, +180], p = 0.062': the family's scaling-rate gain (or, where
    the gain is not reported, the slope difference) with its 95% interval; named=False leaves
    the family out (a panel with one comparison: the legend says who)."""
    if c.gain_reported:
        body = f"gain {interval(c.gain, 2, scale=100, signed=True, unit='%')}"
    else:
        body = f"slope difference {interval(c.slope_difference, 2, signed=True)}"
    name = f"{_family_name(c.family, families)}: " if named else ""
    return figure_text(f"{name}{body}, p = {p_value(c.p_value)}")


# ---------------------------------------------------------------- one axis
def _draw_axis(ax, fits, comps, extraps, metric: str, families: list[str], style: FigureStyle) -> dict:
    """Trials, lines, bands, crossovers and extrapolations on one axes; returns what was drawn."""
    from ebt_scaling.fit.compare import line_band

    drawn = {"band": False, "crossing": False, "crossing_band": False, "off_plot": [], "extrapolated": False}
    xs = np.concatenate([f.x for f in fits])
    lo, hi = xs.min(), xs.max()
    # the measured range plus a small margin; only a requested extrapolation (--extrapolate)
    # widens it, and a crossing outside the drawn range is noted in the caption, not drawn
    targets = [e.x for e in extraps]
    g_lo, g_hi = min([lo] + targets), max([hi] + targets)
    margin = 0.05 * max(np.log10(g_hi / g_lo), 0.3)
    grid = np.logspace(np.log10(g_lo) - margin, np.log10(g_hi) + margin, 200)
    g_lo, g_hi = grid[0], grid[-1]
    for f in fits:
        colour, marker, label = family_style(f.family, families)
        ax.plot(f.x, f.y, linestyle="none", marker=marker, color=colour, label=label, zorder=3,
                markeredgecolor="white", markeredgewidth=0.3)
        ax.plot(grid, f.line.line.predict(grid), color=colour, zorder=2)
        band = line_band(f.line, grid)
        if band is not None:
            ax.fill_between(grid, band[0], band[1], color=colour, alpha=0.18, linewidth=0, zorder=1)
            drawn["band"] = True
    base = {f.family: f for f in fits}
    for c in comps:
        xc = c.crossover.x
        if not math.isfinite(xc.estimate):
            continue
        if not (g_lo <= xc.estimate <= g_hi):
            drawn["off_plot"].append(c)
            continue
        colour = family_style(c.family, families)[0]
        # shade the crossover's interval only where it says something: not when it
        # covers the whole plotted range (then the dotted line and the report say it)
        if math.isfinite(xc.low) and math.isfinite(xc.high) and (xc.low > g_lo or xc.high < g_hi):
            ax.axvspan(max(xc.low, g_lo), min(xc.high, g_hi), color=colour, alpha=0.07, linewidth=0, zorder=0)
            drawn["crossing_band"] = True
        ax.axvline(xc.estimate, color=colour, linestyle=":", linewidth=0.8, zorder=1)
        drawn["crossing"] = True
        if c.baseline in base:
            ax.plot([xc.estimate], [base[c.baseline].line.line.predict(xc.estimate)], marker="x",
                    color="black", markersize=4, zorder=4)
    for e in extraps:
        colour, marker, _ = family_style(e.family, families)
        v = e.value
        err = [[v.estimate - v.low], [v.high - v.estimate]] if math.isfinite(v.low) else None
        ax.errorbar([e.x], [v.estimate], yerr=err, marker=marker, mfc="white", color=colour,
                    capsize=1.5, linewidth=0.8, zorder=4)
        drawn["extrapolated"] = True
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(g_lo, g_hi)
    ax.set_xlabel(AXIS_LABELS.get(fits[0].axis, fits[0].x_column))
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    set_log_ticks(ax, "y")
    set_log_ticks(ax, "x")
    return drawn


def _panel_title(ax, title: str, comps, families, style: FigureStyle) -> None:
    """The panel's name in words and under it each comparison with its interval, in one title
    (style.fit_titles breaks a line that is wider than its panel once the layout is known)."""
    lines = [comparison_text(c, families, named=len(comps) > 1) for c in comps]
    ax.set_title("\n".join([title] + lines), fontsize=style.small if lines else style.font_size)


def _axis_caption(what: str, panels, metric: str, families, baseline: str) -> str:
    present = [f for f in families if any(fit.family == f for _, fits, _, _, _ in panels for fit in fits)]
    drawn = [d for *_, d in panels]
    base_name = _family_name(baseline, families)
    n_x = sorted({np.unique(fit.x).size for _, fits, _, _, _ in panels for fit in fits})
    n_rows = sorted({fit.x.size for _, fits, _, _, _ in panels for fit in fits})
    s = [f"{METRIC_LABELS.get(metric, metric)} of {' and '.join(_family_name(f, families) for f in present)} "
         f"against {what}, log-log axes.",
         f"Markers: one trial each ({_marker_key(families, present)}); "
         f"{'/'.join(map(str, n_rows))} trials per line at {'/'.join(map(str, n_x))} distinct x.",
         f"Solid lines: the paper's fit, an OLS line of log10 {metric} on log10 x through the mean at each "
         "x (the seeds of one x count once)."]
    if any(d["band"] for d in drawn):
        s.append("Bands: the line's pointwise 95% confidence band (Student t on n_x - 2 degrees of freedom, "
                 "n_x distinct x).")
    if any(c for _, _, comps, _, _ in panels for c in comps):
        s.append(f"Under each title (for the family that is not {base_name}): the scaling-rate gain slope_family / slope_{base_name} - 1 with its 95% "
                 "interval (positive: the family's perplexity falls faster with x; shown where "
                 f"{base_name}'s falls), or else the slope difference slope_family - slope_{base_name} with "
                 "its 95% Welch interval; p: two-sided Welch t test of equal slopes.")
    if any(d["crossing"] for d in drawn):
        s.append(f"Dotted vertical line: where the family's line crosses {base_name}'s; black cross: the "
                 f"crossing on {base_name}'s line"
                 + ("; shaded span: the crossing's 95% interval from joint draws of both lines." if any(
                     d["crossing_band"] for d in drawn) else "."))
    off = [(title, c) for title, _, _, _, d in panels for c in d["off_plot"]]
    if off:
        s.append("Lines that cross outside the plotted range (point estimate of where the extended lines "
                 "meet): " + "; ".join(f"{t}: {_family_name(c.family, families)} at x = "
                                      f"{sig(c.crossover.x.estimate, 2)}" for t, c in off) + ".")
    if any(d["extrapolated"] for d in drawn):
        s.append("Open markers with error bars: each line's prediction at the requested scale "
                 "(--extrapolate), with its 95% interval.")
    s.append("All intervals are 95%; report.md has the numbers.")
    return " ".join(s)


def axis_figure(title, fits, comps, extraps, metric, families, baseline, style) -> Built:
    """The paper's figures 4/5 for one axis (one column wide)."""
    fig, (ax,) = figure(style, 1, ylabel=METRIC_LABELS.get(metric, metric))
    drawn = _draw_axis(ax, fits, comps, extraps, metric, families, style)
    _panel_title(ax, title, comps, families, style)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=len(labels))
    x_words = _words(AXIS_LABELS.get(fits[0].axis, fits[0].x_column))
    what = x_words if title.lower() in x_words.lower() else f"{x_words} ({title.lower()})"
    caption = _axis_caption(what, [(title, fits, comps, extraps, drawn)], metric, families, baseline)
    return Built("", fig, caption)


def combined_figure(groups, metric, families, baseline, style) -> Built:
    """Every axis side by side (page width), one shared legend above."""
    fig, axes = figure(style, len(groups), ylabel=METRIC_LABELS.get(metric, metric))
    panels = []
    for ax, (title, fits, comps, extraps) in zip(axes, groups):
        drawn = _draw_axis(ax, fits, comps, extraps, metric, families, style)
        _panel_title(ax, title, comps, families, style)
        panels.append((title, fits, comps, extraps, drawn))
    handles = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="outside upper center", ncol=len(handles))
    caption = _axis_caption("each swept axis, a panel each (" + ", ".join(t for t, *_ in groups) + ")",
                            panels, metric, families, baseline)
    return Built("fit_all", fig, caption)


# ---------------------------------------------------------------- learning curves
def curves_figure(sweep: str, curves, families, style) -> Built:
    """Validation loss against training tokens, a panel per family, a line per trial coloured
    by the sweep's x: one legend above when every family has the same x values, else one per
    panel (an EBT's N differs from a Transformer++'s of the same shape)."""
    _, pyplot = plt()
    fams = [f for f in families if f in set(curves["family"])]
    fig, axes = figure(style, len(fams), ncols=min(3, len(fams)), ylabel=LOSS_LABEL)
    axis, x_column = curves["axis"].iloc[0], curves["x_column"].iloc[0]
    curves = curves.assign(x=[float(f"{v:.3g}") if np.isfinite(v) else v for v in curves["x"]])
    x_sets = {f: tuple(sorted(v for v in curves.loc[curves["family"] == f, "x"].unique() if np.isfinite(v)))
              for f in fams}
    shared = len(set(x_sets.values())) == 1
    cmap = pyplot.get_cmap("viridis")
    x_label = AXIS_LABELS.get(axis, x_column)
    for ax, fam in zip(axes, fams):
        xs = x_sets[fam]
        colour_of = {x: cmap(0.9 * i / max(len(xs) - 1, 1)) for i, x in enumerate(xs)}
        rows = curves[curves["family"] == fam]
        for (_, _trial), g in rows.groupby(["x", "trial_id"], sort=True, dropna=False):
            g = g.sort_values("tokens")
            x = g["x"].iloc[0]
            colour = colour_of.get(x, family_style(fam, families)[0])
            label = _legend_value(x) if x in colour_of else _family_name(fam, families)
            ax.plot(g["tokens"], g["val_loss"], color=colour, linewidth=0.8, label=label)
            ax.plot(g["tokens"].iloc[-1:], g["val_loss"].iloc[-1:], linestyle="none", marker="o",
                    markersize=2.5, color=colour)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("Training tokens seen")
        ax.set_ylabel(LOSS_LABEL)
        ax.set_title(_family_name(fam, families))
        set_log_ticks(ax, "x")
        set_log_ticks(ax, "y")
        if xs and not shared:
            handles = dict(zip(*reversed(ax.get_legend_handles_labels())))
            ax.legend([handles[_legend_value(x)] for x in xs], [_legend_value(x) for x in xs],
                      loc="upper right", title=x_label, fontsize=style.note, title_fontsize=style.note)
    xs = x_sets[fams[0]] if fams else ()
    if xs and shared:
        handles = dict(zip(*reversed(axes[0].get_legend_handles_labels())))
        order = [_legend_value(x) for x in xs]
        fig.legend([handles[k] for k in order], order, loc="outside upper center", ncol=min(len(order), 8),
                   title=x_label)
    n_trials = curves["trial_id"].nunique()
    what = SWEEP_WORDS.get(sweep, f"{sweep} sweep" if sweep else "results")
    s = [f"Learning curves of the {what}: validation loss (nats/token, on the held-out set every trial is "
         f"scored on) against training tokens seen, log-log axes, a panel per family.",
         f"Lines: one per trial ({n_trials} trials; the seeds of one point share a colour), through its "
         "periodic evaluations; dot: its final evaluation (the value the fits use; a trial evaluated only "
         "at the end is a dot alone)."]
    if any(x_sets.values()):
        s.append(f"Colour: the sweep's x, {_words(x_label)}, darkest the smallest ("
                 + ("legend above)." if shared else "a legend per panel: the families' values differ)."))
    return Built(f"curves_{_slug(sweep)}", fig, " ".join(s))


# ---------------------------------------------------------------- thinking
def thinking_passes_figure(think, metric, families, style) -> Built:
    """Perplexity against forward passes per eval set; one series per (family, best-of-N)."""
    sets = sorted(think["eval_set"].unique(), key=lambda s: (s != "val", s))
    n = len(sets)
    fig, axes = figure(style, n, ncols=2 if n == 4 else min(3, n), ylabel="Perplexity on this set")
    think = think.assign(_n=think["n_candidates"].clip(lower=1).astype(int))
    keys = sorted({(f, int(k)) for f, k in zip(think["family"], think["_n"])},
                  key=lambda fk: (families.index(fk[0]) if fk[0] in families else 99, fk[1]))
    styles = series_styles(keys, families)
    for ax, eval_set in zip(axes, sets):
        rows = think[think["eval_set"] == eval_set]
        for fam, nc in keys:
            h = rows[(rows["family"] == fam) & (rows["_n"] == nc)]
            if h.empty:
                continue
            colour, marker = styles[(fam, nc)]
            med = h.groupby("forward_passes")[metric].median()
            label = _family_name(fam, families) + (f", best of {nc}" if nc > 1 else "")
            ax.plot(med.index, med.values, marker=marker, color=colour, label=label, markersize=4.5 * style.font_size / 7.5,
                    markeredgecolor="white", markeredgewidth=0.3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("Forward passes per prediction")
        ax.set_ylabel("Validation perplexity" if eval_set == "val" else "Perplexity on this set")
        ax.set_title(eval_set_words(eval_set)[0])
        set_log_ticks(ax, "x")
        set_log_ticks(ax, "y")
    handles = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="outside upper center", ncol=min(len(handles), 3))
    key_text = ", ".join(f"{MARKER_NAMES.get(styles[k][1], 'marker')}: {_family_name(k[0], families)}"
                         + (f" best of {k[1]}" if k[1] > 1 else "") for k in keys)
    caption = ("System-2 thinking: perplexity against forward passes per predicted token (optimisation steps x "
               "candidates), a panel per evaluation set, log-log axes. Each series is one family at one "
               f"best-of-N (N candidates, the lowest-energy kept), with its own colour and marker ({key_text}); "
               "a point is the median over the family's trials at that number of passes. Transformer++ "
               "makes one forward pass and cannot think longer. The out-of-distribution panels show "
               "perplexity on that set, not on the validation set.")
    return Built("thinking_passes", fig, caption)


def _place_labels(ax, points, texts, fontsize) -> None:
    """Label each point where its text overlaps no earlier label and no point: the first free
    spot of eight around it (up-right first)."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    disp = ax.transData.transform(np.asarray(points, float))
    taken = []
    pad = 2.0
    marks = [(x - pad * 2, y - pad * 2, x + pad * 2, y + pad * 2) for x, y in disp]
    spots = [(3, 2, "left", "bottom"), (3, -2, "left", "top"), (-3, 2, "right", "bottom"),
             (-3, -2, "right", "top"), (0, 5, "center", "bottom"), (0, -5, "center", "top"),
             (6, 0, "left", "center"), (-6, 0, "right", "center")]
    axes_box = ax.get_window_extent(renderer)
    for (px, py), text in zip(points, texts):
        best = None
        for dx, dy, ha, va in spots:
            t = ax.annotate(text, (px, py), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                            fontsize=fontsize)
            bb = t.get_window_extent(renderer)
            box = (bb.x0, bb.y0, bb.x1, bb.y1)
            clash = any(_overlap(box, o) for o in taken + marks) or not (
                axes_box.x0 <= bb.x0 and bb.x1 <= axes_box.x1 + 40 and axes_box.y0 <= bb.y0)
            if not clash:
                best = (t, box)
                break
            t.remove()
        if best is None:        # nowhere free: the first spot, so that the label is at least there
            dx, dy, ha, va = spots[0]
            t = ax.annotate(text, (px, py), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                            fontsize=fontsize)
            bb = t.get_window_extent(renderer)
            best = (t, (bb.x0, bb.y0, bb.x1, bb.y1))
        taken.append(best[1])


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def thinking_ood_figure(table, families, style) -> Built | None:
    """Improvement from thinking against the OOD ratio, per family (the paper's figure 6)."""
    t = table[np.isfinite(table["ood_ratio"]) & (table["ood_ratio"] > 0)]
    if t.empty:
        return None
    fig, (ax,) = figure(style, 1, ylabel="Improvement from thinking (%)")
    log_x = t["ood_ratio"].max() / t["ood_ratio"].min() > 10      # e.g. Dyck at 1e3
    trend = bars = False
    labelled = []
    for fam in [f for f in families if f in set(t["family"])]:
        g = t[t["family"] == fam]
        colour, marker, label = family_style(fam, families)
        lo, hi = g.get("improvement_low"), g.get("improvement_high")
        if lo is not None and np.isfinite(lo).any():
            err = np.vstack([g["improvement_pct"] - lo, hi - g["improvement_pct"]])
            ax.errorbar(g["ood_ratio"], g["improvement_pct"], yerr=np.nan_to_num(err), linestyle="none",
                        marker=marker, color=colour, label=label, capsize=1.5, linewidth=0.8)
            bars = True
        else:
            ax.plot(g["ood_ratio"], g["improvement_pct"], linestyle="none", marker=marker, color=colour,
                    label=label)
        thinks = g["improvement_pct"].abs().max() > 0     # a family that cannot think: no trend, no labels
        if thinks and g["ood_ratio"].nunique() >= 2:
            u = np.log10(g["ood_ratio"]) if log_x else g["ood_ratio"]
            slope, intercept = np.polyfit(u, g["improvement_pct"], 1)
            uu = np.linspace(u.min(), u.max(), 20)
            ax.plot(10 ** uu if log_x else uu, intercept + slope * uu, color=colour, linewidth=0.8)
            trend = True
        if thinks:
            labelled += [((r.ood_ratio, r.improvement_pct), eval_set_words(r.eval_set)[1]) for r in g.itertuples()]
    ax.axhline(0, color="0.6", linewidth=0.5, zorder=0)
    if log_x:
        ax.set_xscale("log")
        set_log_ticks(ax, "x")
    ax.set_xlabel("OOD ratio (perplexity on the set / validation perplexity)")
    ax.set_ylabel("Improvement from thinking (%)")
    ax.legend(loc="upper left")
    if labelled:
        _place_labels(ax, [p for p, _ in labelled], [s for _, s in labelled], style.note)
    s = ["Improvement from thinking against how far each evaluation set lies from the training data "
         "(OOD ratio: its perplexity over the validation perplexity, at the default inference).",
         "Improvement = (perplexity at the default inference - the best over thinking steps and best-of-N) "
         "/ perplexity at the default, in percent: positive when thinking lowers perplexity.",
         f"Markers: one evaluation set each ({_marker_key(families, [f for f in families if f in set(t['family'])])}); "
         "labels name the sets."]
    if bars:
        s.append("Error bars: 95% intervals from resampling the evaluated sequences.")
    else:
        s.append("No intervals: the rows carry no per-sequence losses (report.md says so per set).")
    if trend:
        s.append("Line: least-squares line of improvement on " + ("log10 " if log_x else "")
                 + "OOD ratio per family (a trend, no interval).")
    s.append("Grey line: no improvement. Transformer++ makes one forward pass, so its improvement is 0.")
    return Built("thinking_ood", fig, " ".join(s))


# ---------------------------------------------------------------- chinchilla and isoFLOP
def _fit_name(key: str, families) -> str:
    sweep, _, family = key.rpartition("/")
    name = _family_name(family, families)
    if family == "chinchilla_points":
        return "Chinchilla points (Epoch AI)"
    return name + (f", {SWEEP_WORDS.get(sweep, sweep + ' sweep')}" if sweep else "")


def chinchilla_figure(key: str, fit, families, style) -> Built:
    """Observed loss against the fitted law's prediction (log-log, y = x dashed)."""
    from matplotlib.colors import LogNorm
    fig, (ax,) = figure(style, 1, ylabel="Observed validation loss (nats/token)")
    pred = fit.law.predict(fit.N, fit.D)
    C = fit.N * fit.D * 6.0
    sc = ax.scatter(pred, fit.L, c=C, norm=LogNorm(C.min(), C.max()), s=6, cmap="cividis", linewidths=0)
    lim = [min(pred.min(), fit.L.min()), max(pred.max(), fit.L.max())]
    ax.plot(lim, lim, color="black", linestyle="--", linewidth=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    set_log_ticks(ax, "y")
    set_log_ticks(ax, "x")
    ax.set_xlabel(r"Fitted loss $E + A/N^{\alpha} + B/D^{\beta}$ (nats/token)")
    ax.set_ylabel("Observed loss (nats/token)" if key == "chinchilla_points" else "Observed validation loss (nats/token)")
    fig.colorbar(sc, ax=ax, label="Compute 6ND (FLOPs)")      # its log axis is ticked with the others
    iv, why = fit.intervals, fit.identified or {}
    params = [f"{sym} = {sig(iv[k].estimate, 2)}" if not why.get(k) else f"{sym} not identified"
              for k, sym in (("alpha", r"$\alpha$"), ("beta", r"$\beta$"), ("E", "E"))]
    ax.set_title(figure_text(f"{_fit_name(key, families)}\n" + ", ".join(params)))
    values = "; ".join(f"{k} {interval(iv[k])}" + (" (not identified in this range)" if why.get(k) else "")
                       for k in ("E", "A", "B", "alpha", "beta"))
    caption = (f"Chinchilla law L(N, D) = E + A/N^alpha + B/D^beta fitted to {_fit_name(key, families)} "
               "(Huber loss on log L, L the validation loss in nats/token = ln perplexity). Each dot is one "
               "trial: observed against fitted loss, coloured by its compute 6ND (FLOPs; N non-embedding "
               "parameters, D training tokens). Dashed line: y = x, where a perfect fit would put every dot. "
               f"Fitted values with 95% bootstrap intervals: {values}. A parameter that is not identified "
               "(at a bound, or a bootstrap interval spanning orders of magnitude) is named so in the title "
               "and has no interval.")
    return Built(f"chinchilla_{_slug(key)}", fig, caption)


def isoflop_figure(isoflop: dict, families, style) -> Built:
    """Loss against N at each compute budget with each budget's fitted optimum (a panel per
    family), and the compute-optimal N* against C with N* = k C^a."""
    _, pyplot = plt()
    keys = list(isoflop)
    fig, axes = figure(style, len(keys) + 1, ncols=min(3, len(keys) + 1), ylabel=LOSS_LABEL)
    # budgets of all families on one colour scale: runs planned at one budget land on slightly
    # different FLOPs (steps are rounded), so budgets within 0.05 dex are one
    from ebt_scaling.fit.fitting import group_budgets
    all_c = np.unique(np.concatenate([iso.points[0] for iso in isoflop.values() if len(iso.points)] or [[]]))
    groups = group_budgets(all_c) if all_c.size else np.zeros(0, int)
    budget_of = {c: float(f"{np.median(all_c[groups == g]):.2g}") for c, g in zip(all_c, groups)}
    budgets = sorted(set(budget_of.values()))
    cmap = pyplot.get_cmap("viridis")
    colour_of = {c: cmap(0.85 * i / max(len(budgets) - 1, 1)) for i, c in enumerate(budgets)}
    skipped = False
    for ax, key in zip(axes, keys):
        iso = isoflop[key]
        if not len(iso.points):
            continue
        cb, N, L, _ = iso.points
        for c_med in np.unique(cb):
            m = cb == c_med
            c = budget_of[c_med]
            colour = colour_of[c]
            j = np.flatnonzero(np.isclose(iso.budgets, c_med))
            ax.plot(N[m], L[m], linestyle="none", marker="o", color=colour, mfc=colour if j.size else "white",
                    label=f"{tick(c)} FLOPs")
            if j.size:
                c2, c1, c0 = iso.parabolas[j[0]]
                u = np.linspace(np.log10(N[m].min()), np.log10(N[m].max()), 50)
                ax.plot(10 ** u, c2 * u * u + c1 * u + c0, color=colour, linewidth=0.9)
                ax.plot([iso.N_opt[j[0]]], [iso.loss_opt[j[0]]], marker="*", color="black", markersize=6,
                        zorder=5, linestyle="none")
            else:
                skipped = True
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("Non-embedding parameters $N$")
        ax.set_ylabel(LOSS_LABEL)
        ax.set_title(_fit_name(key, families))
        set_log_ticks(ax, "x")
        set_log_ticks(ax, "y")
    ax = axes[-1]
    fitted = []
    for key in keys:
        iso = isoflop[key]
        family = key.rpartition("/")[2]
        colour, marker, name = family_style(family, families)
        if not iso.budgets.size:
            continue
        ok = math.isfinite(iso.a.estimate)
        ax.plot(iso.budgets, iso.N_opt, linestyle="none", marker=marker, color=colour,
                label=figure_text(f"{name}, a = {interval(iso.a, 2)}") if ok else f"{name} (one budget)")
        if ok:
            cc = np.logspace(np.log10(iso.budgets.min()), np.log10(iso.budgets.max()), 50)
            ax.plot(cc, iso.k.estimate * cc ** iso.a.estimate, color=colour)
            fitted.append(name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Training compute $C$ (FLOPs)")
    ax.set_ylabel("Compute-optimal parameters $N^*$")
    ax.set_title("Compute-optimal size")
    ax.legend(loc="best")
    lo, hi = ax.get_xlim()
    if hi / lo < 1.5:
        ax.set_xlim(lo / 2, hi * 2)
    set_log_ticks(ax, "x")
    set_log_ticks(ax, "y")
    from matplotlib.lines import Line2D       # the colour key: filled circles, whatever the panels show
    order = [f"{tick(c)} FLOPs" for c in budgets]
    swatches = [Line2D([], [], linestyle="none", marker="o", color=colour_of[c]) for c in budgets]
    fig.legend(swatches, order, loc="outside upper center", ncol=len(order), title="Compute budget")
    s = ["IsoFLOP analysis (Chinchilla's approach 2). Left panels, one per family: validation loss "
         "(nats/token) of each trial against its non-embedding parameters N, coloured by compute budget; "
         "curve: the parabola in log10 N fitted to one budget's trials; black star: its minimum, the "
         "budget's compute-optimal N* and loss."]
    if skipped:
        s.append("Open circles without a curve: a budget whose parabola has no minimum inside the sampled N "
                 "(the optimum would be an extrapolation), left out of the N* fit.")
    s.append("Right panel: N* per budget against compute C" + (
        f"; line: N* = k C^a fitted across budgets, with a and its 95% bootstrap interval in the legend "
        f"({', '.join(fitted)})." if fitted else "."))
    s.append("A family with one usable budget has no line.")
    return Built("isoflop", fig, " ".join(s))


# ---------------------------------------------------------------- all of them
def _finished(b: Built) -> Built:
    fit_log_ticks(b.fig)
    fit_titles(b.fig)
    return b


def build_figures(result, style: FigureStyle | None = None):
    """Every figure the result supports, one open figure at a time (a generator: write_figures
    saves and closes each before the next is drawn)."""
    from ebt_scaling.fit.compare import normalise_think
    style = style or FigureStyle()
    matplotlib, _ = plt()
    families = sorted({f.family for f in result.fits} | set(
        result.thinking["family"] if not result.thinking.empty else []) | {
        k.rpartition("/")[2] for k in result.isoflop} | set(
        result.curves["family"] if len(result.curves) else []))
    families.sort(key=lambda f: (f != result.baseline, f))
    iso_sweeps = {k.rpartition("/")[0] for k in result.isoflop}
    with matplotlib.rc_context(style.rc()):
        groups = []
        by_axis: dict = {}
        for f in result.fits:
            by_axis.setdefault((f.sweep, f.axis), []).append(f)
        for (sweep, axis), fits in by_axis.items():
            fits = sorted(fits, key=lambda f: (f.family != result.baseline, f.family))
            comps = [c for c in result.comparisons if (c.sweep, c.axis) == (sweep, axis)]
            extraps = [e for e in result.extrapolations if (e.sweep, e.axis) == (sweep, axis)]
            name = f"fit_{_slug(axis)}" if not sweep or sweep == axis else f"fit_{_slug(sweep)}_{_slug(axis)}"
            title = axis_title(sweep, axis, frontier=sweep in iso_sweeps and axis == "flops")
            b = axis_figure(title, fits, comps, extraps, result.metric, families, result.baseline, style)
            b.name = name
            groups.append((title, fits, comps, extraps))
            yield _finished(b)
        if len(groups) > 1:
            yield _finished(combined_figure(groups, result.metric, families, result.baseline, style))
        if len(result.curves):
            for sweep, curves in result.curves.groupby("sweep", sort=True):
                yield _finished(curves_figure(sweep, curves, families, style))
        if result.isoflop:
            yield _finished(isoflop_figure(result.isoflop, families, style))
        if not result.thinking.empty and len(result.think_rows):
            think, metric = normalise_think(result.think_rows, result.metric)
            yield _finished(thinking_passes_figure(think, metric, families, style))
            if result.thinking["ood_ratio"].notna().any():
                ood = thinking_ood_figure(result.thinking, families, style)
                if ood is not None:
                    yield _finished(ood)
        for key, ch in result.chinchilla.items():
            if ch.N is not None:
                yield _finished(chinchilla_figure(key, ch, families, style))


def write_figures(result, out: Path, style: FigureStyle | None = None) -> list[Path]:
    """Every figure the result supports as PDF + PNG + caption; returns the PDF paths."""
    out = Path(out)
    style = style or FigureStyle()
    files: list[Path] = []
    for b in build_figures(result, style):
        files += save(b.fig, out / f"{b.name}.pdf", b.caption)
    return files
