"""Dirty MNIST in the run report: leaderboard images with their true and predicted letters (errors
marked), and each letter's accuracy next to predicting all zeros."""

from __future__ import annotations

import numpy as np

from podium.ensemble.predictions import load_predictions
from podium.report.items import Bars, Baseline, ImageGrid, ReportItem, RunView, Span, Tile, best_scored
from podium.tasks.multilabel.data import LETTERS, DaconLayout, load_image

SHOWN = 24  # images in the grid: the first ones by index, the same in every report of a run
NOTE = ("green: a letter found; red, underlined: missed; orange, struck: predicted but not there. "
        "A red frame marks an image with any wrong letter.")


def _caption(index: int, truth: np.ndarray, predicted: np.ndarray) -> tuple[Span, ...]:
    spans = [Span(f"#{index} ")]
    for letter, t, p in zip(LETTERS, truth, predicted, strict=True):
        if t or p:
            spans.append(Span(letter, "good" if t and p else "bad" if t else "extra"))
            spans.append(Span(" "))
    return tuple(spans) if len(spans) > 1 else (*spans, Span("(no letters)"))


def report_items(view: RunView) -> list[ReportItem]:
    items: list[ReportItem] = [Baseline("all_zeros_baseline", "all zeros")]
    if view.data_root is None:
        return items
    layout = DaconLayout(view.data_root)
    for scored in best_scored(view, "multilabel"):
        preds = load_predictions(scored.run.output("predictions.npz"))
        source = preds.split if layout.has_split(preds.split) else "train"  # as evaluate finds the labels
        answers, paths = layout.answers(source), layout.images(source)
        predicted = preds.scores > view.recipe.stages[scored.evaluate].config.threshold
        group = f"{scored.prediction}: the best predictions {scored.evaluate} scored"
        tiles = []
        for k, index in enumerate(preds.ids[:SHOWN].tolist()):
            truth = answers[index].astype(bool)
            tiles.append(Tile(load_image(paths[index]), _caption(index, truth, predicted[k]),
                              flagged=bool((truth != predicted[k]).any())))
        items.append(ImageGrid(title=f"{len(tiles)} {preds.split} images, true and predicted letters", group=group,
                               tiles=tiles, note=NOTE))
        truth = np.stack([answers[i] for i in preds.ids.tolist()])
        per_letter = scored.metrics["per_letter"]
        items.append(Bars(title="accuracy per letter", group=group, labels=list(LETTERS), axis="accuracy",
                          series={scored.prediction: [per_letter[x] for x in LETTERS],
                                  "all zeros": (truth == 0).mean(axis=0).tolist()}))
    return items
