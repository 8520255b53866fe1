"""The dirty-MNIST recipe end to end at toy size: real loaders, TTA, ensemble, leaderboard, submission."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

import podium
from podium.ensemble.predictions import load_predictions
from podium.errors import ConfigError, DataError
from podium.recipe import load_recipe
from podium.tasks.multilabel.data import LETTERS

from .test_report import CHROMIUM, assert_renders, assert_self_contained

RECIPE = Path(__file__).parents[1] / "recipes" / "dirty-mnist.yaml"
MODELS = ("effnet_m512", "effnet_m256", "effnet_m64", "effnet_l", "effnet_s")
SHRINK = [
    "stages.data.num_images=48", "stages.data.num_val=16", "stages.data.num_test=24", "stages.data.canvas_size=64",
    "stages.data.glyphs_per_letter=4", "stages.data.workers=1",
    *(o for m in MODELS for o in (f"stages.{m}.trainer.max_epochs=1", f"stages.{m}.trainer.batch_size=16",
                                  f"stages.{m}.data.image_size=32")),
    "stages.glyphs.trainer.max_epochs=1", "stages.glyphs.data.glyphs.num_train=32",
    "stages.glyphs.data.glyphs.num_val=8", "stages.glyphs.data.image_size=16",
]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    return podium.run(RECIPE, SHRINK, profile="tiny", store=store, console=Console(quiet=True))


def stage_dir(result, stage) -> Path:
    return next(o.path for o in result.outcomes if o.stage == stage)


def test_leaderboard_has_every_model_and_the_ensemble(result):
    board = result.leaderboard["leaderboard"]
    assert list(board) == ["pred_m512", "pred_m256", "pred_m64", "pred_l", "pred_s", "blend"]
    for scores in board.values():
        assert 0.0 <= scores["exact_match"] <= scores["accuracy"] <= 1.0
        assert set(scores["per_letter"]) == set(LETTERS)
    assert result.report.is_file() and "<h3 id='stage-leaderboard'>" in result.report.read_text()


def test_report_shows_leaderboard_images_with_their_letters(result, tmp_path):
    text = result.report.read_text()
    page = assert_self_contained(text)
    assert page.items() == {"imagegrid": 1, "bars": 1}, "one picture per item: the image grid, accuracy per letter"
    assert page.tiles() == 24 and "class='tile flagged'" in text
    best = max((m["accuracy"], p) for p, m in result.leaderboard["leaderboard"].items())[1]
    assert f"{best}: the best predictions leaderboard scored" in text, "the grid shows the best-scored predictions"
    assert re.search(r'"text":"all zeros: 0\.\d+"', text), "the all-zeros baseline is a line on the leaderboard"
    if CHROMIUM:
        assert_renders(result.report, tmp_path)


def test_ensemble_is_the_weighted_mean_of_its_inputs(result):
    weights = {"pred_m512": 1.5, "pred_m256": 1.0, "pred_m64": 1.0, "pred_l": 1.0, "pred_s": 1.0}
    preds = {n: load_predictions(stage_dir(result, n) / "predictions.npz") for n in weights}
    blend = load_predictions(stage_dir(result, "blend") / "predictions.npz")
    expected = sum(w * preds[n].scores.astype(np.float64) for n, w in weights.items()) / 5.5
    np.testing.assert_allclose(blend.scores, expected, atol=1e-6)
    assert (blend.ids == preds["pred_s"].ids).all() and blend.split == "test"


def test_accuracy_is_recomputed_from_the_hidden_answers(result):
    data = next(result.store.root.glob("dirty-mnist/data/*/data"))
    answers = pd.read_csv(data / "test_dirty_mnist_2nd_answer.csv").set_index("index")
    blend = load_predictions(stage_dir(result, "blend") / "predictions.npz")
    truth = answers.loc[blend.ids, list(LETTERS)].to_numpy()
    acc = ((blend.scores > 0.5) == truth).mean()
    assert result.leaderboard["leaderboard"]["blend"]["accuracy"] == pytest.approx(acc, abs=1e-12)
    assert result.leaderboard["leaderboard"]["blend"]["all_zeros_baseline"] == pytest.approx((truth == 0).mean())


def test_submission_follows_sample_submission(result):
    data = next(result.store.root.glob("dirty-mnist/data/*/data"))
    sample = pd.read_csv(data / "sample_submission.csv")
    sub = pd.read_csv(result.submission)
    assert list(sub.columns) == ["index", *LETTERS] == list(sample.columns)
    assert sub["index"].tolist() == sample["index"].tolist()
    assert set(np.unique(sub[list(LETTERS)].to_numpy())) <= {0, 1}


def test_rot90_tta_changes_the_prediction_files(result, tmp_path):
    plain = podium.run(RECIPE, [*SHRINK, "stages.pred_s.tta=none"], profile="tiny", store=result.store,
                       console=Console(quiet=True), only=["pred_s"], report=False)
    a = load_predictions(plain.outcomes[0].path / "predictions.npz")
    b = load_predictions(stage_dir(result, "pred_s") / "predictions.npz")
    assert plain.outcomes[0].hash != stage_dir(result, "pred_s").name
    assert not np.array_equal(a.scores, b.scores)


def test_real_layout_without_answers_fails_clearly(tmp_path):
    (tmp_path / "dirty_mnist_2nd").mkdir()
    with pytest.raises(DataError, match="dirty_mnist_2nd_answer.csv"):
        podium.run(RECIPE, [*SHRINK, f"data.root={tmp_path}"], profile="tiny", store=tmp_path / "s",
                   console=Console(quiet=True))


def test_a_bad_glyph_letter_range_names_its_dotted_path():
    with pytest.raises(ConfigError, match=r"stages\.glyphs\.data\.glyphs\.letters: .*1 <= low <= high <= 26.*\[3, 1\]"):
        load_recipe(RECIPE, "tiny", ["stages.glyphs.data.glyphs.letters=[3,1]"])


@pytest.mark.slow
def test_tiny_profile_learns_letters(tmp_path):
    """The tiny profile as `make demo` runs it (about 3.5 minutes on 2 cores) beats predicting all zeros."""
    board = podium.run(RECIPE, profile="tiny", store=tmp_path, console=Console(quiet=True)).leaderboard["leaderboard"]
    baseline = board["blend"]["all_zeros_baseline"]
    assert board["blend"]["accuracy"] >= baseline + 0.06
    for name in ("pred_m512", "pred_m256", "pred_m64", "pred_l", "pred_s"):
        assert board[name]["accuracy"] >= baseline + 0.04, name
