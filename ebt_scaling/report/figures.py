"""Paper-ready figures of the fits: vector PDFs (fonts embedded) with PNG copies.

One style for every figure: Okabe-Ito colours (distinguishable under the
common colour-vision deficiencies) plus a distinct marker per family so the
figures survive greyscale printing; 3.3 in wide for one paper column, 6.75 in
for multi-panel figures that span the page; TrueType fonts embedded in the
PDF (pdf.fonttype 42) so journals' font checks pass and text stays editable.
The style is applied through rc_context, so importing this module never
changes a user's matplotlib defaults.

Only drawing happens here: every number plotted comes from the fit objects.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

COLUMN_WIDTH_IN = 3.3
PAGE_WIDTH_IN = 6.75

OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7"}
_KNOWN = {
    "transformer_pp": (OKABE_ITO["blue"], "o", "Transformer++"),
    "ebt_s1": (OKABE_ITO["vermillion"], "s", "EBT (S1)"),
    "ebt_s2": (OKABE_ITO["green"], "^", "EBT (S2)"),
}
_SPARE_COLOURS = [OKABE_ITO[k] for k in ("orange", "purple", "sky_blue", "black", "yellow")]
_SPARE_MARKERS = ["D", "v", "P", "X", "<"]

STYLE = {
    "pdf.fonttype": 42, "ps.fonttype": 42,
    "font.size": 7.5, "axes.titlesize": 7.5, "axes.labelsize": 7.5,
    "xtick.labelsize": 6.5, "ytick.labelsize": 6.5, "legend.fontsize": 6.5,
    "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4, "ytick.minor.width": 0.4,
    "lines.linewidth": 1.1, "lines.markersize": 3.5,
    "legend.frameon": False, "axes.spines.top": False, "axes.spines.right": False,
    "savefig.bbox": "tight", "savefig.pad_inches": 0.02, "figure.dpi": 100,
}

AXIS_LABELS = {
    "data": "Training tokens", "batch": "Batch size (tokens)", "depth": "Layers",
    "width": "Model width $d$", "params": "Non-embedding parameters", "flops": "Training FLOPs",
}
METRIC_LABELS = {"val_ppl": "Validation perplexity", "val_loss": "Validation loss (nats)",
                 "train_loss": "Training loss (nats)"}


def family_style(family: str, order: list[str] | None = None):
    """(colour, marker, label) for a family: fixed for the paper's three, stable for the rest."""
    if family in _KNOWN:
        return _KNOWN[family]
    others = sorted(f for f in (order or [family]) if f not in _KNOWN)
    i = others.index(family) if family in others else 0
    return _SPARE_COLOURS[i % len(_SPARE_COLOURS)], _SPARE_MARKERS[i % len(_SPARE_MARKERS)], family


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return matplotlib, plt


def _save(fig, path: Path) -> list[Path]:
    _, plt = _plt()
    fig.savefig(path)
    fig.savefig(path.with_suffix(".png"), dpi=200)
    plt.close(fig)
    return [path]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "all"


def _compact(v: float) -> str:
    """Tick labels that fit side by side: 500, 2e5, 1e12 rather than 200000."""
    if v <= 0 or 1e-3 <= abs(v) < 1e4:
        return f"{v:g}"
    e = int(math.floor(math.log10(abs(v)) + 1e-9))
    return f"{v / 10 ** e:g}e{e}"


def _panel_handles(axes, n: int) -> dict:
    """Hide the unused panels of a grid and gather one legend handle per label."""
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    handles = {}
    for ax in axes.ravel()[:n]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    return handles


def _log_ticks(ax, which: str = "y"):
    matplotlib, _ = _plt()
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
    axis = ax.yaxis if which == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if which == "y" else ax.get_xlim()
    if hi / lo < 3:     # within a factor 3 (perplexity 100-130): evenly spaced plain numbers
        axis.set_major_locator(MaxNLocator(nbins=5))
        axis.set_major_formatter(FuncFormatter(lambda v, _: _compact(v)))
    elif hi / lo < 300:   # narrow ranges (2-24 layers, ppl 30-90): plain 1-2-5 labels
        subs = (1.0, 2.0, 3.0, 5.0) if hi / lo < 30 else (1.0, 2.0, 5.0)
        if which == "x" and hi >= 1e4:     # wide labels: fewer of them
            subs = (1.0, 3.0)
        axis.set_major_locator(LogLocator(base=10, subs=subs))
        axis.set_major_formatter(FuncFormatter(lambda v, _: _compact(v)))
    axis.set_minor_formatter(NullFormatter())


# ---------------------------------------------------------------- one axis
def _draw_axis(ax, fits, comps, extraps, metric: str, families: list[str], annotate: bool = True):
    from ebt_scaling.fit.compare import line_band

    xs = np.concatenate([f.x for f in fits])
    lo, hi = xs.min(), xs.max()
    # the measured range plus a small margin; only a requested extrapolation (--extrapolate)
    # widens it, and a crossing outside the drawn range is noted, not drawn
    targets = [e.x for e in extraps]
    g_lo, g_hi = min([lo] + targets), max([hi] + targets)
    margin = 0.05 * max(np.log10(hi / lo), 0.3)
    grid = np.logspace(np.log10(g_lo) - margin, np.log10(g_hi) + margin, 200)
    g_lo, g_hi = grid[0], grid[-1]
    for f in fits:
        colour, marker, label = family_style(f.family, families)
        ax.plot(f.x, f.y, linestyle="none", marker=marker, color=colour, label=label, zorder=3,
                markeredgecolor="white", markeredgewidth=0.3)
        ax.plot(grid, f.line.line.predict(grid), color=colour, linewidth=1.0, zorder=2)
        band = line_band(f.line, grid)
        if band is not None:
            ax.fill_between(grid, band[0], band[1], color=colour, alpha=0.18, linewidth=0, zorder=1)
    base = {f.family: f for f in fits}
    outside = []
    for c in comps:
        xc = c.crossover.x
        if not math.isfinite(xc.estimate):
            continue
        if not (g_lo <= xc.estimate <= g_hi):
            outside.append(c)
            continue
        colour = family_style(c.family, families)[0]
        yc = base[c.baseline].line.line.predict(xc.estimate) if c.baseline in base else None
        # shade the crossover's interval only where it says something: not when it
        # covers the whole plotted range (then the dotted line and the report say it)
        if math.isfinite(xc.low) and math.isfinite(xc.high) and (xc.low > g_lo or xc.high < g_hi):
            ax.axvspan(max(xc.low, g_lo), min(xc.high, g_hi), color=colour, alpha=0.07, linewidth=0, zorder=0)
        ax.axvline(xc.estimate, color=colour, linestyle=":", linewidth=0.8, zorder=1)
        if yc is not None:
            ax.plot([xc.estimate], [yc], marker="x", color="black", markersize=4, zorder=4)
    for e in extraps:
        colour, marker, _ = family_style(e.family, families)
        v = e.value
        err = [[v.estimate - v.low], [v.high - v.estimate]] if math.isfinite(v.low) else None
        ax.errorbar([e.x], [v.estimate], yerr=err, marker=marker, mfc="white", color=colour,
                    capsize=1.5, linewidth=0.8, zorder=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(g_lo, g_hi)
    ax.set_xlabel(AXIS_LABELS.get(fits[0].axis, fits[0].x_column))
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    _log_ticks(ax, "y")
    _log_ticks(ax, "x")
    if annotate and comps:
        lines = []
        short = {"no detectable difference": "n.s.", "neither improves": "neither falls"}
        for c in comps:
            name = family_style(c.family, families)[2]
            if c.gain_reported:
                g = c.gain
                txt = f"{name}: gain {g.estimate * 100:+.0f}%" + (
                    f" [{g.low * 100:+.0f}, {g.high * 100:+.0f}]" if math.isfinite(g.low) else "")
            else:
                txt = f"{name}: no gain"
            verdict = short.get(c.verdict, c.verdict.replace(c.baseline, family_style(c.baseline, families)[2]))
            lines.append(f"{txt}, {verdict}")
        for c in outside:
            lines.append(f"crossing off plot (x={_compact(float(f'{c.crossover.x.estimate:.2g}'))})")
        ax.text(0.98, 0.97, "\n".join(lines), transform=ax.transAxes, ha="right", va="top",
                fontsize=5.8, linespacing=1.15)


def axis_figure(fits, comps, extraps, metric: str, families: list[str], path: Path) -> list[Path]:
    """The paper's figures 4/5 for one axis: points, lines, 95% bands, crossover, gain."""
    matplotlib, plt = _plt()
    with matplotlib.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.45))
        _draw_axis(ax, fits, comps, extraps, metric, families)
        ax.legend(loc="lower left")
        return _save(fig, path)


def combined_figure(groups, metric: str, families: list[str], path: Path) -> list[Path]:
    """All axes side by side (page width), one shared legend."""
    matplotlib, plt = _plt()
    n = len(groups)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    with matplotlib.rc_context(STYLE):
        width = COLUMN_WIDTH_IN if n == 1 else PAGE_WIDTH_IN
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, 2.05 * nrows + 0.25), squeeze=False)
        for ax, (title, fits, comps, extraps) in zip(axes.ravel(), groups):
            _draw_axis(ax, fits, comps, extraps, metric, families)
            ax.set_title(title)
        handles = _panel_handles(axes, n)
        fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=len(handles),
                   bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout(rect=(0, 0, 1, 0.95))
        return _save(fig, path)


# ---------------------------------------------------------------- thinking
def thinking_figures(think, table, metric: str, families: list[str], out: Path) -> list[Path]:
    """Metric vs forward passes per eval set; improvement from thinking vs OOD ratio."""
    matplotlib, plt = _plt()
    files = []
    from ebt_scaling.fit.compare import normalise_think
    think, metric = normalise_think(think, metric)
    sets = sorted(think["eval_set"].unique())
    n = len(sets)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    styles = ["-", "--", ":", "-."]
    with matplotlib.rc_context(STYLE):
        width = COLUMN_WIDTH_IN if n == 1 else PAGE_WIDTH_IN
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, 2.05 * nrows + 0.25), squeeze=False)
        for ax, eval_set in zip(axes.ravel(), sets):
            rows = think[think["eval_set"] == eval_set]
            cands = sorted(rows["n_candidates"].clip(lower=1).unique())
            for family, g in rows.groupby("family", sort=True):
                colour, marker, label = family_style(family, families)
                for j, nc in enumerate(cands):
                    h = g[g["n_candidates"].clip(lower=1) == nc]
                    if h.empty:
                        continue
                    med = h.groupby("forward_passes")[metric].median()
                    ax.plot(med.index, med.values, linestyle=styles[j % 4], marker=marker, color=colour,
                            label=f"{label}" + (f", best of {int(nc)}" if len(cands) > 1 else ""))
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("Forward passes")
            ax.set_ylabel(METRIC_LABELS.get(metric, metric))
            ax.set_title(eval_set)
            _log_ticks(ax, "y")
            from matplotlib.ticker import FuncFormatter
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        handles = _panel_handles(axes, n)
        fig.legend(list(handles.values()), list(handles), loc="upper center",
                   ncol=min(len(handles), 3), bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.06 * math.ceil(len(handles) / 3) / nrows))
        files += _save(fig, out / "thinking_passes.pdf")

        if table is not None and not table.empty and table["ood_ratio"].notna().any():
            fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.45))
            ratios = table["ood_ratio"][np.isfinite(table["ood_ratio"]) & (table["ood_ratio"] > 0)]
            log_x = len(ratios) and ratios.max() / ratios.min() > 10      # e.g. Dyck at 1e5
            for family, g in table.groupby("family", sort=True):
                colour, marker, label = family_style(family, families)
                g = g[np.isfinite(g["ood_ratio"]) & (g["ood_ratio"] > 0)]
                ax.plot(g["ood_ratio"], g["improvement_pct"], linestyle="none", marker=marker, color=colour,
                        label=label)
                if g["ood_ratio"].nunique() >= 2:     # the paper's trend: improvement vs OOD ratio
                    u = np.log10(g["ood_ratio"]) if log_x else g["ood_ratio"]
                    slope, intercept = np.polyfit(u, g["improvement_pct"], 1)
                    uu = np.linspace(u.min(), u.max(), 20)
                    ax.plot(10 ** uu if log_x else uu, intercept + slope * uu, color=colour, linewidth=0.8)
                if g["improvement_pct"].abs().max() > 0:   # a family that cannot think needs no labels
                    for _, r in g.iterrows():
                        ax.annotate(r["eval_set"], (r["ood_ratio"], r["improvement_pct"]), fontsize=5,
                                    xytext=(2, 2), textcoords="offset points")
            if log_x:
                ax.set_xscale("log")
            ax.set_xlabel("OOD ratio (ppl on set / in-distribution ppl)")
            ax.set_ylabel("Improvement from thinking (%)")
            ax.legend(loc="upper left")
            files += _save(fig, out / "thinking_ood.pdf")
    return files


# ---------------------------------------------------------------- chinchilla and isoFLOP
def chinchilla_figure(key: str, fit, path: Path) -> list[Path]:
    """Observed loss against the fitted law's prediction (log-log, y = x dashed)."""
    matplotlib, plt = _plt()
    with matplotlib.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.6))
        pred = fit.law.predict(fit.N, fit.D)
        sc = ax.scatter(pred, fit.L, c=np.log10(fit.N * fit.D * 6.0), s=6, cmap="cividis", linewidths=0)
        lim = [min(pred.min(), fit.L.min()), max(pred.max(), fit.L.max())]
        ax.plot(lim, lim, color="black", linestyle="--", linewidth=0.7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _log_ticks(ax, "y")
        _log_ticks(ax, "x")
        ax.set_xlabel("Fitted $E + A/N^{\\alpha} + B/D^{\\beta}$")
        ax.set_ylabel("Observed loss")
        fig.colorbar(sc, ax=ax, label="log$_{10}$ C (FLOPs)")
        iv = fit.intervals
        ax.set_title(f"{key}: $\\alpha$={iv['alpha'].estimate:.3f}, $\\beta$={iv['beta'].estimate:.3f}, "
                     f"E={iv['E'].estimate:.3f}")
        return _save(fig, path)


def isoflop_figure(isoflop: dict, families: list[str], path: Path) -> list[Path]:
    """Compute-optimal N* per budget and the fitted N* = k C^a, per family."""
    matplotlib, plt = _plt()
    with matplotlib.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.45))
        for key, iso in isoflop.items():
            family = key.split("/")[-1]
            colour, marker, label = family_style(family, families)
            ax.plot(iso.budgets, iso.N_opt, linestyle="none", marker=marker, color=colour,
                    label=f"{label} (a={iso.a.estimate:.2f})" if math.isfinite(iso.a.estimate) else label)
            if math.isfinite(iso.a.estimate) and iso.budgets.size:
                cc = np.logspace(np.log10(iso.budgets.min()), np.log10(iso.budgets.max()), 50)
                ax.plot(cc, iso.k.estimate * cc ** iso.a.estimate, color=colour)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("Training FLOPs C")
        ax.set_ylabel("Compute-optimal parameters $N^*$")
        ax.legend(loc="upper left")
        return _save(fig, path)


# ---------------------------------------------------------------- all of them
def write_figures(result, out: Path) -> list[Path]:
    """Every figure the result supports; returns the PDF paths (PNGs lie beside them)."""
    out = Path(out)
    files: list[Path] = []
    families = sorted({f.family for f in result.fits} | set(
        result.thinking["family"] if not result.thinking.empty else []))
    groups = []
    by_axis: dict = {}
    for f in result.fits:
        by_axis.setdefault((f.sweep, f.axis), []).append(f)
    for (sweep, axis), fits in by_axis.items():
        fits = sorted(fits, key=lambda f: (f.family != result.baseline, f.family))
        comps = [c for c in result.comparisons if (c.sweep, c.axis) == (sweep, axis)]
        extraps = [e for e in result.extrapolations if (e.sweep, e.axis) == (sweep, axis)]
        name = f"fit_{_slug(axis)}.pdf" if not sweep or sweep == axis else f"fit_{_slug(sweep)}_{_slug(axis)}.pdf"
        files += axis_figure(fits, comps, extraps, result.metric, families, out / name)
        title = axis if not sweep or sweep == axis else f"{axis} ({sweep})"
        groups.append((title, fits, comps, extraps))
    if len(groups) > 1:
        files += combined_figure(groups, result.metric, families, out / "fit_all.pdf")
    if not result.thinking.empty:
        files += thinking_figures(result.think_rows, result.thinking, result.metric, families, out)
    for key, ch in result.chinchilla.items():
        if ch.N is not None:
            files += chinchilla_figure(key, ch, out / f"chinchilla_{_slug(key)}.pdf")
    if result.isoflop:
        files += isoflop_figure(result.isoflop, families, out / "isoflop.pdf")
    return files
