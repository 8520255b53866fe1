"""The IQA task in the run report: the best captions under their images, and predicted against true MOS.

For each evaluate stage, the caption prediction with the best caption score shows its first images with
the caption and a reference comment; on podium's synthetic data each distortion the image carries is
marked found or missed by the caption, and any it names that is not there is struck (read back with the
grammar's own parser). Every MOS prediction the stage scored is one series of a predicted-vs-true
scatter, so the regressors and their average can be told apart at a glance.
"""

from __future__ import annotations

import numpy as np

from podium.ensemble.predictions import load_predictions
from podium.report.items import Baseline, ImageGrid, ReportItem, RunView, Scatter, Span, Tile
from podium.tasks.iqa import mos_truth
from podium.tasks.iqa.caption_task import reference_comments
from podium.tasks.iqa.data import IqaLayout, load_rgb
from podium.tasks.iqa.synth import DISTORTIONS_CSV, Mention, mentions, parse_comment, read_distortions

SHOWN = 18  # captioned images: the first ones in prediction order, the same in every report of a run
NOTE = ("Under each image: the caption, then a reference comment. On synthetic data, each distortion of the "
        "image: green when the caption names it with its level, red and underlined when missed; orange and "
        "struck: named but not there. A red frame marks a caption that is not exactly right.")


def _words(m: Mention) -> str:
    return " ".join(w for w in (m.level, m.detail, m.kind) if w)


def _caption(caption: str, reference: str, truth: frozenset[Mention] | None) -> tuple[tuple[Span, ...], bool]:
    spans = [Span(caption), Span(f" | ref: {reference}")]
    if truth is None:
        return tuple(spans), False
    said = parse_comment(caption)
    marks = [Span(_words(m), "good" if m in said else "bad") for m in sorted(truth)]
    marks += [Span(_words(m), "extra") for m in sorted(said - truth)]
    for mark in marks or [Span("clean", "good")]:
        spans += [Span(" "), mark]
    return tuple(spans), said != truth


def _captions(view: RunView, evaluate: str, name: str, layout: IqaLayout) -> ImageGrid | None:
    runs = view.done(name)
    if not runs:
        return None
    preds = load_predictions(runs[0].output("predictions.npz"))
    references = reference_comments(layout, preds.split)
    distortions_csv = layout.root / DISTORTIONS_CSV
    truth = ({n: mentions(d) for n, (d, _, _) in read_distortions(distortions_csv).items()}
             if distortions_csv.is_file() else None)
    paths = {i.name: i.path for i in [*layout.train(), *layout.test()]}
    tiles = []
    for img_name, caption in zip(preds.ids[:SHOWN].tolist(), preds.scores[:SHOWN].tolist(), strict=True):
        spans, wrong = _caption(str(caption), references[img_name][0], truth[img_name] if truth else None)
        tiles.append(Tile(np.asarray(load_rgb(paths[img_name])), spans, flagged=wrong))
    return ImageGrid(title=f"{len(tiles)} {preds.split} images and their captions",
                     group=f"{name}: the best captions {evaluate} scored", tiles=tiles, columns=3, tile_px=192,
                     note=NOTE)


def _mos(view: RunView, evaluate: str, names: list[str], layout: IqaLayout) -> Scatter | None:
    points: dict[str, list[tuple[str, float, float]]] = {}
    for name in names:
        runs = view.done(name)
        if not runs:
            continue
        preds = load_predictions(runs[0].output("predictions.npz"))
        truth = mos_truth(layout, preds.split)
        points[name] = [(i, truth[i], float(v)) for i, v in zip(preds.ids.tolist(), preds.scores.tolist(),
                                                                strict=True)]
    if not points:
        return None
    return Scatter(title="predicted against true MOS", group=f"MOS predictions {evaluate} scored", points=points,
                   x_title="true MOS", y_title="predicted MOS", diagonal=True,
                   note="The leaderboard scores ranks and linear correlation, not the scale: a regressor can sit "
                        "off the diagonal and still score well; the average of several is pulled towards the mean.")


def report_items(view: RunView) -> list[ReportItem]:
    items: list[ReportItem] = [Baseline("mos_score", "constant MOS")]
    if view.data_root is None:
        return items
    layout = IqaLayout(view.data_root)
    for evaluate in view.of_kind("evaluate", "iqa"):
        scores = view.scores(evaluate)
        if scores is None:
            continue
        captions = [(m["caption_score"], p) for p, m in scores.items() if "caption_score" in m]
        if captions:
            grid = _captions(view, evaluate, max(captions)[1], layout)
            items += [grid] if grid else []
        scatter = _mos(view, evaluate, [p for p, m in scores.items() if "mos_score" in m], layout)
        items += [scatter] if scatter else []
    return items
