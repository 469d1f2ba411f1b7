"""One look for every figure: sizes, fonts, colours, markers, ticks, panel grids, saving.

Okabe-Ito colours (distinguishable under the common colour-vision deficiencies)
plus a distinct marker per series, so figures survive greyscale printing; one
paper column (3.3 in) for single-panel figures and the page (6.75 in) for
multi-panel ones, both settable (`ebt-sweep fit --fig-width/--page-width
--font-size`); TrueType fonts embedded in the PDF (pdf.fonttype 42) so journals'
font checks pass and text stays editable. The style is applied through
rc_context, so importing this never changes a user's matplotlib defaults.
Every figure is saved as PDF, a PNG copy and a caption file (<name>.txt) that
says what each mark means.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .numbers import tick

OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7"}
_KNOWN = {
    "transformer_pp": (OKABE_ITO["blue"], "o", "Transformer++"),
    "ebt_s1": (OKABE_ITO["vermillion"], "s", "EBT (S1)"),
    "ebt_s2": (OKABE_ITO["green"], "^", "EBT (S2)"),
}
# (colour, marker) pairs for series beyond the paper's three families: other families, best-of-N
_SPARE = [(OKABE_ITO["orange"], "D"), (OKABE_ITO["purple"], "v"), (OKABE_ITO["sky_blue"], "P"),
          (OKABE_ITO["black"], "X"), (OKABE_ITO["vermillion"], "<"), (OKABE_ITO["blue"], ">"),
          (OKABE_ITO["green"], "h"), (OKABE_ITO["yellow"], "p")]
MARKER_NAMES = {"o": "circle", "s": "square", "^": "triangle", "D": "diamond", "v": "down triangle",
                "P": "plus", "X": "filled cross", "<": "left triangle", ">": "right triangle",
                "h": "hexagon", "p": "pentagon", "*": "star", "x": "cross"}


@dataclass(frozen=True)
class FigureStyle:
    """Sizes of every figure: widths in inches, the base font in points (tick labels and
    legends 1 pt smaller, notes 1.5 pt smaller)."""

    column_width: float = 3.3
    page_width: float = 6.75
    font_size: float = 7.5

    def __post_init__(self):
        for name in ("column_width", "page_width", "font_size"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"figure style: {name}={v!r} must be a positive number "
                                 "(widths in inches, font size in points)")

    @property
    def small(self) -> float:
        return max(self.font_size - 1.0, 4.0)

    @property
    def note(self) -> float:
        return max(self.font_size - 1.5, 4.0)

    def rc(self) -> dict:
        f, s = self.font_size, self.small
        scale = f / 7.5       # line widths and marker sizes follow the font
        return {
            "pdf.fonttype": 42, "ps.fonttype": 42,
            "font.size": f, "axes.titlesize": f, "axes.labelsize": f, "figure.titlesize": f,
            "xtick.labelsize": s, "ytick.labelsize": s, "legend.fontsize": s, "legend.title_fontsize": s,
            "axes.linewidth": 0.6 * scale, "xtick.major.width": 0.6 * scale, "ytick.major.width": 0.6 * scale,
            "xtick.minor.width": 0.4 * scale, "ytick.minor.width": 0.4 * scale,
            "lines.linewidth": 1.1 * scale, "lines.markersize": 3.5 * scale,
            "legend.frameon": False, "axes.spines.top": False, "axes.spines.right": False,
            "axes.titlepad": 0.7 * f,      # clears half a tick label at the top of the y axis
            "savefig.bbox": "tight", "savefig.pad_inches": 0.02, "figure.dpi": 100,
            "figure.constrained_layout.h_pad": 0.03, "figure.constrained_layout.w_pad": 0.03,
        }


def family_style(family: str, order: list[str] | None = None):
    """(colour, marker, label) for a family: fixed for the paper's three, stable for the rest."""
    if family in _KNOWN:
        return _KNOWN[family]
    others = sorted(f for f in (order or [family]) if f not in _KNOWN)
    i = others.index(family) if family in others else 0
    colour, marker = _SPARE[i % len(_SPARE)]
    return colour, marker, family


def series_styles(keys: list[tuple[str, int]], families: list[str]) -> dict:
    """(colour, marker) per (family, n) series, distinct in both within one figure: n == 1 is
    the family's own style, every other series takes the next unused spare pair."""
    styles, used = {}, set()
    for fam, n in keys:
        if n == 1:
            colour, marker, _ = family_style(fam, families)
            styles[(fam, n)] = (colour, marker)
            used |= {colour, marker}
    spare = iter(p for p in _SPARE if p[0] not in used and p[1] not in used)
    fallback = iter(_SPARE)
    for key in keys:
        if key not in styles:
            styles[key] = next(spare, None) or next(fallback)
    return styles


def plt():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as pyplot
    return matplotlib, pyplot


# ---------------------------------------------------------------- ticks
_SUBS = ((1.0,), (1.0, 3.0), (1.0, 2.0, 5.0), (1.0, 2.0, 3.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0),
         tuple(float(m) for m in range(1, 10)), (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0))


def log_ticks(lo: float, hi: float, max_ticks: int = 6) -> list[float]:
    """Tick positions for a log axis from lo to hi, from the steps decades, 1-3, 1-2-5,
    1-2-3-5, 1-1.5-2-3-5-7, 1..9 and 1-1.2-1.5-2-2.5-3..9 (a step giving more than max_ticks
    is thinned to every k-th where that stays evenly spaced, or within a decade): the sparsest that gives 3 ticks or more and spans 60% of the range (a
    denser one when it stays at 4 ticks or fewer: 1 2 3 4 layers), else the one that spans
    most; every k-th decade on wide ranges, evenly spaced round numbers on narrow ones."""
    lo, hi = sorted((float(lo), float(hi)))
    e0, e1 = math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1

    def within(subs, every=1):
        out = []
        for e in range(e0, e1 + 1):
            if e % every:
                continue
            for m in subs:
                v = float(f"{m * 10.0 ** e:.6g}")
                if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9):
                    out.append(v)
        return out

    decades = within(_SUBS[0])
    if len(decades) > max_ticks:
        return within(_SUBS[0], math.ceil(len(decades) / max_ticks))
    span = math.log10(hi / lo) or 1.0

    def coverage(t):
        return math.log10(t[-1] / t[0]) / span if len(t) >= 2 else 0.0

    plain = [within(s) for s in _SUBS]
    candidates = [(t, True) for t in plain if len(t) <= max_ticks]
    for t in plain:       # a step with too many ticks, every k-th of them: where that stays even
        if len(t) > max_ticks:
            thin = t[::math.ceil(len(t) / max_ticks)]
            ratios = [b / a for a, b in zip(thin, thin[1:])]
            if span < 1 or max(ratios) / min(ratios) < 1.01:
                candidates.append((thin, False))
    for i, (t, _) in enumerate(candidates):
        if len(t) >= 3 and coverage(t) >= 0.6:
            denser = [d for d, regular in candidates[i + 1:] if regular and len(d) <= 4 and coverage(d) >= coverage(t)]
            return denser[-1] if denser else t
    best = max((t for t, _ in candidates), key=lambda t: (min(len(t), 3), coverage(t)), default=[])
    return best if len(best) >= 3 or (len(best) == 2 and hi / lo >= 3) else _linear_ticks(lo, hi, max_ticks)


def _linear_ticks(lo: float, hi: float, max_ticks: int) -> list[float]:
    """Round numbers (steps of 1, 2 or 5 times a power of ten) inside a narrow range."""
    span = hi - lo
    for step_e in range(math.floor(math.log10(span)) - 2, math.floor(math.log10(span)) + 2):
        for m in (1, 2, 5):
            step = m * 10.0 ** step_e
            first = math.ceil(lo / step - 1e-9)
            ticks = [float(f"{k * step:.6g}") for k in range(first, int(math.floor(hi / step + 1e-9)) + 1)]
            if 2 <= len(ticks) <= max_ticks:
                return ticks
    return [float(f"{lo:.3g}"), float(f"{hi:.3g}")]


def set_log_ticks(ax, which: str, max_ticks: int | None = None, ticks=None) -> None:
    """Ticks from log_ticks (or `ticks`) on a log axis, labelled by numbers.tick (SI
    suffixes), unlabelled minor ticks. Call after the limits are final."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter
    axis = ax.xaxis if which == "x" else ax.yaxis
    lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()
    if ticks is None:
        ticks = log_ticks(lo, hi, max_ticks or (5 if which == "x" else 6))
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _: tick(v)))
    axis.set_minor_locator(LogLocator(base=10, subs="auto"))
    axis.set_minor_formatter(NullFormatter())


def fit_log_ticks(fig) -> None:
    """Re-tick every log axis of the laid-out figure with as many ticks as leave room between
    adjacent labels (their measured widths at the tick font size, the panel's real length),
    so that neither a narrow panel nor a large font makes labels collide. Call last."""
    import matplotlib
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
    measure = TextToPath()
    to_pt = 72.0 / fig.dpi
    for ax in fig.axes:
        for which in ("x", "y"):
            if (ax.get_xscale() if which == "x" else ax.get_yscale()) != "log":
                continue
            prop = FontProperties(size=matplotlib.rcParams[f"{which}tick.labelsize"])
            fs = prop.get_size_in_points()
            lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()
            for max_ticks in range(6 if which == "x" else 8, 1, -1):
                ticks = log_ticks(lo, hi, max_ticks)
                pts = [(ax.transData.transform((t, 1.0))[0] if which == "x" else ax.transData.transform((1.0, t))[1])
                       * to_pt for t in ticks]
                if which == "x":
                    widths = [measure.get_text_width_height_descent(tick(t), prop, ismath=False)[0] for t in ticks]
                    need = [(a + b) / 2 + 0.6 * fs for a, b in zip(widths, widths[1:])]
                else:
                    need = [1.3 * fs] * (len(ticks) - 1)
                if all(abs(q - p) >= n for p, q, n in zip(pts, pts[1:], need)):
                    break
            set_log_ticks(ax, which, ticks=ticks)


def fit_titles(fig) -> None:
    """Break each title line wider than its panel on the laid-out figure: before ', p = ',
    then before ' [' (an interval), so that neighbouring titles never run into each other."""
    renderer = fig.canvas.get_renderer()
    engine = fig.get_layout_engine()
    for ax in fig.axes:
        title = ax.title
        if not title.get_text():
            continue
        width = ax.get_window_extent(renderer).width
        for sep, new in ((", p = ", "\np = "), (" [", "\n[")):
            if title.get_window_extent(renderer).width <= width:
                break
            lines = title.get_text().split("\n")
            title.set_text("\n".join(ln.replace(sep, new) if _width(title, ln, renderer) > width else ln
                                     for ln in lines))
            if engine is not None:
                engine.execute(fig)


def _width(title, line: str, renderer) -> float:
    from matplotlib.text import Text
    probe = Text(text=line, fontproperties=title.get_fontproperties(), figure=title.figure)
    return probe.get_window_extent(renderer).width


# ---------------------------------------------------------------- panels
def panel_grid(fig, n: int, ncols: int):
    """n panels in rows of ncols, the last row centred, so no grid slot is left empty."""
    nrows = math.ceil(n / ncols)
    gs = fig.add_gridspec(nrows, 2 * ncols)
    axes = []
    for i in range(n):
        r, c = divmod(i, ncols)
        in_row = min(ncols, n - r * ncols)
        start = (ncols - in_row) + 2 * c
        axes.append(fig.add_subplot(gs[r, start:start + 2]))
    return axes


def figure(style: FigureStyle, n_panels: int = 1, ncols: int | None = None, ylabel: str = ""):
    """A constrained-layout figure with n panels: column width for one, page width for more,
    in fewer columns where a panel would be narrower than 20 em of the font; each panel tall enough that its y label (`ylabel`, rotated) fits beside it at the font size."""
    _, pyplot = plt()
    ncols = ncols or min(3, n_panels)
    width = style.column_width if n_panels == 1 else style.page_width
    while ncols > 1 and width / ncols * 72 / style.font_size < 20:    # a panel narrower than 20 em
        ncols -= 1                                                    # cannot hold its axis label
    nrows = math.ceil(n_panels / ncols)
    height = 0.74 * width if n_panels == 1 else min(0.85 * width / ncols, 2.2) + 0.25   # wide panels: capped
    # the label's length (about 0.55 em a character) plus title, ticks and x label (about 7 lines)
    height = max(height, (0.55 * len(ylabel) + 7.0) * style.font_size / 72)
    fig = pyplot.figure(figsize=(width, height * nrows + (0.3 if n_panels > 1 else 0)), layout="constrained")
    return fig, panel_grid(fig, n_panels, ncols)


_PREFIXES = {"k": "3", "M": "6", "G": "9", "T": "12", "P": "15", "E": "18", "Z": "21"}


def prefix_note(fig) -> str:
    """The caption's key to the SI prefixes the figure's tick labels use ('' when none)."""
    used = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            fmt = axis.get_major_formatter()
            for v in axis.get_majorticklocs():
                label = str(fmt(v))
                if label and label[-1] in _PREFIXES:
                    used.add(label[-1])
    if not used:
        return ""
    keys = sorted(used, key=lambda k: int(_PREFIXES[k]))
    return "Tick labels use SI prefixes: " + ", ".join(f"{k} = 10^{_PREFIXES[k]}" for k in keys) + "."


def save(fig, path: Path, caption: str) -> list[Path]:
    """PDF, PNG copy (200 dpi) and caption file (<name>.txt, with the key to the tick labels'
    SI prefixes) beside it; returns [the PDF]."""
    _, pyplot = plt()
    path = Path(path)
    fig.savefig(path)
    fig.savefig(path.with_suffix(".png"), dpi=200)
    note = prefix_note(fig)
    pyplot.close(fig)
    path.with_suffix(".txt").write_text(caption.strip() + (" " + note if note else "") + "\n")
    return [path]
