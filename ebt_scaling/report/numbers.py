"""How numbers are written in report.md, the LaTeX tables, figure titles and tick labels.

One rule for the report: every estimate and interval end at 3 significant digits
(p-values at 2), plain between 0.001 and 100000 and as 1.23e14 outside, so no
value claims a precision the fit does not have. Tick labels are plain numbers with
SI suffixes (300k, 1M, 10G), the same on every axis of every figure.
"""
from __future__ import annotations

import math

MINUS = "\u2212"   # typographic minus, for figure text


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def sig(v, digits: int = 3, *, signed: bool = False) -> str:
    """`v` at `digits` significant digits, trailing zeros kept (7.20, 0.0239, 1070, 2.28e14);
    'n/a' for NaN or None; a leading '+' on positives with signed=True."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(v):
        return "n/a"
    sign = "+" if signed and v > 0 else ""
    if v == 0:
        return "0"
    r = float(f"{v:.{digits}g}")          # rounded first: 9.996 -> 10.0, not 9.996 with 4 digits
    if abs(r) >= 1e5 or abs(r) < 1e-3:
        mantissa, exponent = f"{r:.{digits - 1}e}".split("e")
        return f"{sign}{mantissa}e{int(exponent)}"
    decimals = digits - 1 - math.floor(math.log10(abs(r)))
    if decimals > 0:
        return f"{sign}{r:.{decimals}f}"
    return f"{sign}{int(round(r, decimals))}"


def design(v) -> str:
    """A design value (a layer count, a batch of 2048 tokens) as set: whole numbers below
    100000 in full, anything else at 3 significant digits."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "n/a"
    if math.isfinite(v) and v == int(v) and abs(v) < 1e5:
        return str(int(v))
    return sig(v)


def interval(iv, digits: int = 3, *, scale: float = 1.0, signed: bool = False, unit: str = "") -> str:
    """'estimate [low, high]' (each at `digits` significant digits), or the estimate alone
    when the interval is missing. `scale` multiplies (100 for percentages), `unit` follows
    the estimate ('%')."""
    est = sig(iv.estimate * scale, digits, signed=signed) + (unit if _finite(iv.estimate) else "")
    if not (_finite(iv.low) and _finite(iv.high)):
        return est
    return (f"{est} [{sig(iv.low * scale, digits, signed=signed)}, "
            f"{sig(iv.high * scale, digits, signed=signed)}]")


def p_value(p) -> str:
    """A p-value at 2 significant digits; below 0.001 as '< 0.001'."""
    if not _finite(p):
        return "n/a"
    return "< 0.001" if p < 1e-3 else sig(p, 2)


_SI = ((1e21, "Z"), (1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def tick(v) -> str:
    """A tick label: up to 3 significant digits with an SI suffix from 1000 up (300k, 1M,
    2.5G), never scientific notation; negatives with a typographic minus."""
    if not _finite(v) or v == 0:
        return "0"
    a = float(f"{abs(float(v)):.3g}")       # rounded first: 999.6k is 1M, not 1000k
    text = None
    for scale, suffix in _SI:
        if a >= scale * (1 - 1e-9):
            text = _plain(a / scale) + suffix
            break
    if text is None:
        text = _plain(a)
    return (MINUS if v < 0 else "") + text


def _plain(a: float) -> str:
    t = f"{a:.3g}"
    if "e" in t and a >= 1:     # beyond the largest suffix: 1000Z and up, in full
        t = f"{a:.0f}"
    elif "e" in t:              # below 1e-4: write the zeros out
        t = f"{a:.{3 - math.floor(math.log10(a))}f}".rstrip("0").rstrip(".")
    return t


def figure_text(text: str) -> str:
    """ASCII minus signs of numbers in `text` as typographic minus signs."""
    out = []
    for i, ch in enumerate(text):
        nxt = text[i + 1] if i + 1 < len(text) else ""
        out.append(MINUS if ch == "-" and nxt.isdigit() and (i == 0 or not text[i - 1].isalnum()) else ch)
    return "".join(out)
