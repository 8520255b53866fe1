"""Shared drawing helpers: a report item (``podium.report.items``) or a Plotly figure -> an HTML fragment.

Charts are Plotly figures written as JSON with one ``podiumPlot`` call each; the plotly.js bundle is
inlined once per page (``podium.report.page``). Images are PNGs in ``data:`` URIs. Nothing here reads
the run store.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from PIL import Image

from podium.report.items import Bars, Heatmap, ImageGrid, Picture, Scatter, Strip, Tile

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#393b79", "#ad494a", "#637939", "#8c6d31", "#7b4173", "#3182bd", "#e6550d", "#31a354")
GOOD, BAD, NEUTRAL = "#2ca02c", "#d62728", "#9aa0a6"


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def layout(fig: go.Figure, height: int = 360, **kw) -> go.Figure:
    """The report's look, with no Plotly template: a template would repeat ~6 KB of JSON per figure."""
    axis = {"showgrid": True, "gridcolor": "#eee", "zeroline": False, "linecolor": "#999", "showline": True,
            "automargin": True}
    fig.update_xaxes(**axis)
    fig.update_yaxes(**axis)
    settings = {"template": "none", "height": height, "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
                "font": {"family": "system-ui, sans-serif", "size": 12}, "hovermode": "closest",
                "paper_bgcolor": "white", "plot_bgcolor": "white", "legend": {"orientation": "h", "y": -0.18, "x": 0}}
    fig.update_layout(**{**settings, **kw})
    return fig


class Figures:
    """Numbers figures on a page (``fig-1``, ``fig-2``, ...): deterministic ids, so the same run store
    always gives the same file."""

    def __init__(self, prefix: str = "fig"):
        self._ids = (f"{prefix}-{i}" for i in itertools.count(1))

    def html(self, fig: go.Figure) -> str:
        div = next(self._ids)
        spec = pio.to_json(fig, validate=False, pretty=False).replace("</", "<\\/")
        return f"<div class='plot' id='{div}'></div><script>podiumPlot('{div}', {spec});</script>"


def png_uri(image: np.ndarray, vmax: float | None = None, max_side: int | None = None) -> str:
    """A ``data:`` URI of an image: uint8 as it is, floats scaled from 0 to ``vmax`` (their max by default)."""
    if image.dtype != np.uint8:
        top = float(vmax if vmax is not None else np.max(image)) or 1.0
        image = (np.clip(np.asarray(image, np.float64) / top, 0, 1) * 255).round().astype(np.uint8)
    pil = Image.fromarray(image)
    if max_side and max(pil.size) > max_side:
        scale = max_side / max(pil.size)
        pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))), Image.LANCZOS)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _caption(tile: Tile) -> str:
    return "".join(f"<span class='{s.tone}'>{esc(s.text)}</span>" if s.tone else esc(s.text) for s in tile.caption)


def image_grid(item: ImageGrid) -> str:
    tiles = "".join(
        f"<figure class='tile{' flagged' if t.flagged else ''}'><img alt='' style='width:{item.tile_px}px' "
        f"src='{png_uri(t.image, t.vmax, item.tile_px)}'><figcaption>{_caption(t)}</figcaption></figure>"
        for t in item.tiles)
    return f"<div class='grid' style='grid-template-columns:repeat({item.columns}, max-content)'>{tiles}</div>"


def bars(item: Bars, figures: Figures) -> str:
    fig = go.Figure()
    labelled = item.horizontal or len(item.labels) * len(item.series) <= 12  # values on the bars when they fit
    for i, (name, values) in enumerate(item.series.items()):
        x, y = (values, item.labels) if item.horizontal else (item.labels, values)
        colours = [colour(i + 1) if label in item.highlight else colour(i) for label in item.labels]
        fig.add_bar(x=x, y=y, name=name, orientation="h" if item.horizontal else "v", marker_color=colours,
                    texttemplate=f"%{{{'x' if item.horizontal else 'y'}:.4g}}" if labelled else None,
                    textposition="auto",
                    hovertemplate=f"%{{{'y' if item.horizontal else 'x'}}}: %{{{'x' if item.horizontal else 'y'}:.4g}}"
                                  f"<extra>{esc(name)}</extra>")
    for name, value in item.lines.items():
        _reference(fig, value, name, vertical=item.horizontal, log=item.log)
    axis = {"title": item.axis, "type": "log" if item.log else "linear"}
    height = max(300, 22 * len(item.labels) * max(1, len(item.series)) + 120) if item.horizontal else 360
    layout(fig, height, barmode="group", showlegend=len(item.series) > 1,
           **({"xaxis": axis, "yaxis": {"autorange": "reversed"}} if item.horizontal else {"yaxis": axis}))
    return figures.html(fig)


def _reference(fig: go.Figure, value: float, name: str, vertical: bool, log: bool) -> None:
    """A dashed reference line (a baseline, a budget) across the chart, labelled with its value. On a log
    axis a shape takes the value itself but an annotation its log10 (plotly.js's convention)."""
    line = {"color": "#555", "dash": "dash", "width": 1.5}
    at = math.log10(value) if log else value
    text = f"{esc(name)}: {value:.4g}"
    if vertical:
        fig.add_vline(x=value, line=line)
        fig.add_annotation(x=at, y=1, xref="x", yref="paper", yanchor="bottom", text=text, showarrow=False)
    else:
        fig.add_hline(y=value, line=line)
        fig.add_annotation(y=at, x=0, yref="y", xref="paper", xanchor="left", yanchor="bottom", text=text,
                           showarrow=False)


def heatmap(item: Heatmap, figures: Figures) -> str:
    z = np.asarray(item.matrix)
    fig = go.Figure(go.Heatmap(z=z, x=item.x_labels, y=item.y_labels, colorscale="Blues", text=z,
                               texttemplate="%{text}", hovertemplate=f"{esc(item.y_title)} %{{y}}<br>"
                               f"{esc(item.x_title)} %{{x}}<br>count %{{z}}<extra></extra>"))
    size = 160 + 26 * len(item.y_labels)
    layout(fig, size, xaxis={"title": item.x_title, "tickangle": -45, "showgrid": False},
           yaxis={"title": item.y_title, "autorange": "reversed", "showgrid": False},
           margin={"l": 140, "r": 20, "t": 20, "b": 140})
    return figures.html(fig)


def strip(item: Strip, figures: Figures) -> str:
    """Points spread a little across their group (a fixed pattern, not random: the page is reproducible)."""
    groups = list(dict.fromkeys(g for per in item.points.values() for g in per))
    fig = go.Figure()
    for i, (name, per) in enumerate(item.points.items()):
        xs, ys, labels = [], [], []
        for g, pts in per.items():
            for j, (label, value) in enumerate(pts):
                xs.append(groups.index(g) + (i - (len(item.points) - 1) / 2) * 0.25 + ((j % 5) - 2) * 0.03)
                ys.append(value)
                labels.append(f"{g}: {label}")
        fig.add_scatter(x=xs, y=ys, mode="markers", name=name, text=labels, marker={"color": colour(i), "size": 8},
                        hovertemplate=f"%{{text}}<br>{esc(item.axis)} %{{y:.4f}}<extra>{esc(name)}</extra>")
    layout(fig, 380, xaxis={"tickvals": list(range(len(groups))), "ticktext": groups}, yaxis={"title": item.axis})
    return figures.html(fig)


def scatter(item: Scatter, figures: Figures) -> str:
    fig = go.Figure()
    values = [v for pts in item.points.values() for _, x, y in pts for v in (x, y)]
    if item.diagonal and values:
        low, high = min(values), max(values)
        fig.add_scatter(x=[low, high], y=[low, high], mode="lines", name="y = x", hoverinfo="skip",
                        line={"color": "#999", "dash": "dot"})
    for i, (name, pts) in enumerate(item.points.items()):
        fig.add_scatter(x=[x for _, x, _ in pts], y=[y for _, _, y in pts], mode="markers", name=name,
                        text=[label for label, _, _ in pts], marker={"color": colour(i), "size": 7, "opacity": 0.8},
                        hovertemplate=f"%{{text}}<br>{esc(item.x_title)} %{{x:.4g}}<br>{esc(item.y_title)} "
                                      f"%{{y:.4g}}<extra>{esc(name)}</extra>")
    layout(fig, 420, xaxis={"title": item.x_title}, yaxis={"title": item.y_title})
    return figures.html(fig)


def picture(item: Picture, figures: Figures) -> str:
    """One item as a ``<figure class='item'>``: its title, the drawing and its note."""
    if isinstance(item, ImageGrid):
        body = image_grid(item)
    elif isinstance(item, Bars):
        body = bars(item, figures)
    elif isinstance(item, Heatmap):
        body = heatmap(item, figures)
    elif isinstance(item, Strip):
        body = strip(item, figures)
    elif isinstance(item, Scatter):
        body = scatter(item, figures)
    else:
        raise TypeError(f"no drawing for {type(item).__name__}")
    note = f"<p class='note'>{esc(item.note)}</p>" if item.note else ""
    kind = type(item).__name__.lower()
    return f"<figure class='item' data-item='{kind}'><figcaption>{esc(item.title)}</figcaption>{body}{note}</figure>"


def table(header: Sequence[str], rows: Sequence[Sequence[object]], row_ids: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join((f"<tr id='{esc(i)}'>" if i else "<tr>") + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>"
                   for r, i in zip(rows, row_ids or [""] * len(rows), strict=True))
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def fmt(value: object) -> str:
    """A metric for a table: 4 significant decimals for floats, as it is otherwise."""
    if isinstance(value, float):
        return f"{value:.4f}" if 1e-3 <= abs(value) < 1e5 or value == 0 else f"{value:.3g}"
    return "" if value is None else str(value)
