"""The pipeline as an inline SVG: one box per stage (state, hash, seconds, key metric), laid out by
topological depth, each box a link to the stage's part of the report.

Laid out here rather than by a graph library: recipes are DAGs of tens of stages, and depth columns
with boxes in recipe order read like the recipe itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from podium.report.draw import esc

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 190, 70, 60, 14, 10
STATE_COLOURS = {"done": "#2ca02c", "failed": "#d62728", "running": "#ff7f0e", "missing": "#9aa0a6"}


@dataclass(frozen=True)
class Node:
    name: str
    kind: str
    needs: tuple[str, ...]
    state: str
    hash: str
    seconds: float | None
    metric: str
    href: str


def _depths(nodes: list[Node]) -> dict[str, int]:
    """Longest path from a source; ``nodes`` are in topological (recipe) order."""
    depth: dict[str, int] = {}
    for n in nodes:
        depth[n.name] = 1 + max((depth[d] for d in n.needs if d in depth), default=-1)
    return depth


def _direct_needs(nodes: list[Node]) -> dict[str, list[str]]:
    """Each stage's inputs less those it also reaches through another input (the data set every stage
    needs): the transitive reduction, which keeps the picture readable."""
    ancestors: dict[str, set[str]] = {}
    for n in nodes:
        ancestors[n.name] = {a for d in n.needs if d in ancestors for a in (d, *ancestors[d])}
    return {n.name: [d for d in n.needs if d in ancestors
                     and not any(d in ancestors[o] for o in n.needs if o != d and o in ancestors)] for n in nodes}


def _colour(state: str) -> str:
    return STATE_COLOURS.get(state, "#ff7f0e")  # "2/4 done" and other partial states


def _clip(text: str, chars: int = 28) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def pipeline_svg(nodes: list[Node]) -> str:
    depth = _depths(nodes)
    columns: dict[int, list[Node]] = {}
    for n in nodes:
        columns.setdefault(depth[n.name], []).append(n)
    pos = {n.name: (PAD + d * (BOX_W + GAP_X), PAD + i * (BOX_H + GAP_Y))
           for d, col in columns.items() for i, n in enumerate(col)}
    width = PAD * 2 + len(columns) * (BOX_W + GAP_X) - GAP_X
    height = PAD * 2 + max(len(c) for c in columns.values()) * (BOX_H + GAP_Y) - GAP_Y if nodes else 0
    edges = []
    for name, needs in _direct_needs(nodes).items():
        x2, y2 = pos[name]
        for d in needs:
            x1, y1 = pos[d]
            ax, ay, bx, by = x1 + BOX_W, y1 + BOX_H / 2, x2, y2 + BOX_H / 2
            mid = (ax + bx) / 2
            edges.append(f"<path d='M{ax},{ay} C{mid},{ay} {mid},{by} {bx - 4},{by}' fill='none' stroke='#aaa' "
                         "stroke-width='1.3' marker-end='url(#arrow)'/>")
    boxes = []
    for n in nodes:
        x, y = pos[n.name]
        seconds = f" · {n.seconds:.1f} s" if n.seconds is not None else ""
        lines = [(f"{n.kind} · {n.state}{seconds}", "#444"), (n.hash, "#777"), (n.metric, "#1f5fa8")]
        text = "".join(f"<text x='{x + 8}' y='{y + 34 + 14 * i}' font-size='11' fill='{c}'>{esc(_clip(t))}</text>"
                       for i, (t, c) in enumerate(lines) if t)
        boxes.append(f"<a href='{esc(n.href)}'><title>{esc(n.name)}: {esc(n.kind)}, {esc(n.state)}</title>"
                     f"<rect x='{x}' y='{y}' width='{BOX_W}' height='{BOX_H}' rx='6' fill='#fff' "
                     f"stroke='{_colour(n.state)}' stroke-width='2'/>"
                     f"<text x='{x + 8}' y='{y + 18}' font-size='13' font-weight='600' fill='#222'>"
                     f"{esc(_clip(n.name, 24))}</text>{text}</a>")
    # the arrow marker's url(#arrow) is a reference inside this SVG, not a load
    marker = ("<defs><marker id='arrow' viewBox='0 0 8 8' refX='7' refY='4' markerWidth='7' markerHeight='7' "
              "orient='auto'><path d='M0,0 L8,4 L0,8 z' fill='#aaa'/></marker></defs>")
    return (f"<div class='scroll'><svg class='pipeline' viewBox='0 0 {width} {height}' width='{width}' "
            f"style='max-width:100%;height:auto' font-family='system-ui, sans-serif'>{marker}{''.join(edges)}"
            f"{''.join(boxes)}</svg></div>")
