"""Small inline SVG plots (histogram, bars, scatter) for the latent browser and the run report.

Plain strings, no plotting library: the report must open offline from disk and the browser must
not need a build step. Every label passes through `html.escape`, since SAE keys, scorer names and
model names end up in the markup.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#d9480f", "#1c7ed6", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599")


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    return f"{v:.3g}" if abs(v) >= 1e-3 else f"{v:.1e}"


def _frame(width: int, height: int, body: list[str], title: str) -> str:
    return (f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img"><title>{escape(title)}</title>'
            + "".join(body) + "</svg>")


def _axes(x0: int, y0: int, x1: int, y1: int, xlabel: str, ylabel: str) -> list[str]:
    return [f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#555"/>',
            f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#555"/>',
            f'<text x="{(x0 + x1) // 2}" y="{y0 + 30}" text-anchor="middle" class="axis">'
            f'{escape(xlabel)}</text>',
            f'<text x="12" y="{(y0 + y1) // 2}" text-anchor="middle" class="axis" '
            f'transform="rotate(-90 12 {(y0 + y1) // 2})">{escape(ylabel)}</text>']


def histogram(counts: Sequence[float], lo: float, hi: float, *, title: str, xlabel: str,
              ylabel: str = "count", width: int = 420, height: int = 180,
              color: str = PALETTE[0]) -> str:
    """Bars of pre-binned counts over equal-width bins spanning [lo, hi]."""
    x0, y0, x1, y1 = 48, height - 40, width - 10, 10
    body = _axes(x0, y0, x1, y1, xlabel, ylabel)
    top = max(counts, default=0) or 1
    bw = (x1 - x0) / max(len(counts), 1)
    for i, c in enumerate(counts):
        h = (y0 - y1) * c / top
        a, b = lo + (hi - lo) * i / len(counts), lo + (hi - lo) * (i + 1) / len(counts)
        body.append(f'<rect x="{x0 + i * bw:.1f}" y="{y0 - h:.1f}" width="{max(bw - 1, 1):.1f}" '
                    f'height="{h:.1f}" fill="{color}"><title>{_fmt(a)}–{_fmt(b)}: {_fmt(c)}</title></rect>')
    body += [f'<text x="{x0}" y="{y0 + 14}" class="tick">{_fmt(lo)}</text>',
             f'<text x="{x1}" y="{y0 + 14}" text-anchor="end" class="tick">{_fmt(hi)}</text>',
             f'<text x="{x0 - 4}" y="{y1 + 8}" text-anchor="end" class="tick">{_fmt(top)}</text>']
    return _frame(width, height, body, title)


def bin_values(values: Sequence[float], lo: float, hi: float, bins: int) -> list[int]:
    """Counts of values in `bins` equal bins over [lo, hi] (values outside are clipped in)."""
    counts = [0] * bins
    span = (hi - lo) or 1.0
    for v in values:
        counts[min(bins - 1, max(0, int((v - lo) / span * bins)))] += 1
    return counts


def bars(labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str = "",
         width: int = 420, bar_h: int = 22, color: str = PALETTE[1]) -> str:
    """Horizontal bars, one per label, with the value printed at the end of each bar."""
    left, right = 150, 60
    height = 20 + bar_h * len(labels) + (20 if xlabel else 0)
    top = max((abs(v) for v in values), default=0) or 1
    body = []
    for i, (lab, v) in enumerate(zip(labels, values)):
        y = 10 + i * bar_h
        w = (width - left - right) * abs(v) / top
        body += [f'<text x="{left - 6}" y="{y + bar_h * 0.65:.1f}" text-anchor="end" class="tick">'
                 f'{escape(str(lab)[:24])}</text>',
                 f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{bar_h - 4}" fill="{color}"/>',
                 f'<text x="{left + w + 4:.1f}" y="{y + bar_h * 0.65:.1f}" class="tick">{_fmt(v)}</text>']
    if xlabel:
        body.append(f'<text x="{width // 2}" y="{height - 6}" text-anchor="middle" class="axis">'
                    f'{escape(xlabel)}</text>')
    return _frame(width, height, body, title)


def scatter(series: dict[str, Sequence[tuple[float, float]]], *, title: str, xlabel: str,
            ylabel: str, log_x: bool = False, width: int = 520, height: int = 260) -> str:
    """Points per named series (one colour each), optional log10 x axis, with a legend."""
    pts = [(math.log10(x) if log_x else x, y) for s in series.values() for x, y in s
           if not (log_x and x <= 0)]
    x0, y0, x1, y1 = 48, height - 40, width - 120, 10
    body = _axes(x0, y0, x1, y1, xlabel + (" (log scale)" if log_x else ""), ylabel)
    if not pts:
        body.append(f'<text x="{(x0 + x1) // 2}" y="{height // 2}" text-anchor="middle">no data</text>')
        return _frame(width, height, body, title)
    xlo, xhi = min(p[0] for p in pts), max(p[0] for p in pts)
    ylo, yhi = min(0.0, min(p[1] for p in pts)), max(1.0, max(p[1] for p in pts))
    sx = lambda x: x0 + (x - xlo) / ((xhi - xlo) or 1) * (x1 - x0)  # noqa: E731
    sy = lambda y: y0 - (y - ylo) / ((yhi - ylo) or 1) * (y0 - y1)  # noqa: E731
    for i, (name, s) in enumerate(series.items()):
        col = PALETTE[i % len(PALETTE)]
        for x, y in s:
            if log_x and x <= 0:
                continue
            xv = math.log10(x) if log_x else x
            body.append(f'<circle cx="{sx(xv):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{col}" '
                        f'fill-opacity="0.7"><title>{escape(name)}: ({_fmt(x)}, {_fmt(y)})</title></circle>')
        body.append(f'<rect x="{x1 + 12}" y="{14 + 18 * i}" width="10" height="10" fill="{col}"/>'
                    f'<text x="{x1 + 26}" y="{23 + 18 * i}" class="tick">{escape(name)}</text>')
    xl, xh = (10 ** xlo, 10 ** xhi) if log_x else (xlo, xhi)  # label log axes in data units
    body += [f'<text x="{x0}" y="{y0 + 14}" class="tick">{_fmt(xl)}</text>',
             f'<text x="{x1}" y="{y0 + 14}" text-anchor="end" class="tick">{_fmt(xh)}</text>',
             f'<text x="{x0 - 4}" y="{y0}" text-anchor="end" class="tick">{_fmt(ylo)}</text>',
             f'<text x="{x0 - 4}" y="{y1 + 8}" text-anchor="end" class="tick">{_fmt(yhi)}</text>']
    return _frame(width, height, body, title)
