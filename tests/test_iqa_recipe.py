"""recipes/iqa-caption.yaml: the full-size stages validate; a reduced run goes end to end (six caption
stages, the MOS path, both leaderboards, the submission); an ensemble of one checkpoint twice decodes as it;
SCST killed with SIGKILL resumes to the unbroken run's weights."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

import podium
from podium.ensemble.predictions import load_predictions
from podium.errors import ConfigError
from podium.metrics.caption import caption_score
from podium.recipe import load_recipe
from podium.tasks.iqa.data import IqaLayout
from podium.tasks.iqa.synth import DISTORTIONS_CSV, mentions, parse_comment, read_distortions

from .conftest import kill_when, podium_cli, podium_popen

RECIPE = Path(__file__).parent.parent / "recipes" / "iqa-caption.yaml"
QUIET = Console(quiet=True)
# the tiny profile made smaller still: fewer images and epochs, one MOS backbone's features shared
SMALLER = [
    "stages.data.num_train=60",
    "stages.data.num_test=12",
    "stages.xe_partial.trainer.max_epochs=2",
    "stages.xe_e2e.trainer.max_epochs=1",
    "stages.scst_partial.trainer.max_epochs=1",
    "stages.scst_e2e.trainer.max_epochs=1",
    "stages.mos_finetune.trainer.max_epochs=1",
    "stages.captions.models=[scst_e2e@last]",
    "stages.captions.max_len=20",
    "stages.captions_xe.max_len=20",
]


def test_full_size_recipe_validates(tmp_path: Path, podium_main):
    code, out, err = podium_main("run", "--check", str(RECIPE), store=tmp_path)
    assert code == 0, out + err
    recipe = load_recipe(RECIPE)
    stages = recipe.stages
    # the seed's six caption stages in order, with its global batches (batch x accumulation)
    order = [n for n in recipe.order if n in ("features_xe", "xe_partial", "xe_e2e", "features_scst", "scst_partial",
                                              "scst_e2e")]
    assert order == ["features_xe", "xe_partial", "xe_e2e", "features_scst", "scst_partial", "scst_e2e"]
    batches = {n: stages[n].config.trainer.batch_size * stages[n].config.trainer.accumulate_grad_batches
               for n in ("xe_partial", "xe_e2e", "scst_partial", "scst_e2e")}
    assert batches == {"xe_partial": 48, "xe_e2e": 48, "scst_partial": 48, "scst_e2e": 48}
    assert stages["scst_e2e"].config.backbone_from == "xe_e2e@last"
    assert set(stages["scst_e2e"].needs) >= {"scst_partial", "xe_e2e"}
    assert stages["xe_partial"].config.optim.lr == 5e-4 and stages["scst_e2e"].config.optim.lr == 1e-5


def test_caption_config_refuses_mixed_sources():
    with pytest.raises(ConfigError, match="backbone_from"):
        load_recipe(RECIPE, overrides=["stages.xe_partial.backbone_from=features_xe"])
    with pytest.raises(ConfigError, match="reads images"):
        load_recipe(RECIPE, overrides=["stages.xe_e2e.features=features_xe"])
    with pytest.raises(ConfigError, match="kind extract"):
        load_recipe(RECIPE, overrides=["stages.xe_partial.features=xe_e2e"])


# The reduced run takes ~20 s on 2 cores (SCST scores its samples in one teacher-forced pass).
@pytest.fixture(scope="module")
def reduced(tmp_path_factory: pytest.TempPathFactory) -> podium.api.RunResult:
    store = tmp_path_factory.mktemp("iqa-recipe")
    return podium.run(RECIPE, SMALLER, profile="tiny", store=store, console=QUIET, report=False)


def test_reduced_run_writes_the_submission_in_sample_order(reduced):
    assert {o.state for o in reduced.outcomes} == {"done"}
    data = next(o.path for o in reduced.outcomes if o.stage == "data") / "data"
    with open(reduced.submission, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["img_name", "mos", "comments"]
    assert [r[0] for r in rows[1:]] == IqaLayout(data).submission_names()
    for _, mos, comment in rows[1:]:
        float(mos)
        assert comment[0].isupper() and comment.endswith(".") and comment[1:] == comment[1:].lower()


def test_both_leaderboards_are_scored(reduced):
    board = reduced.leaderboard["leaderboard"]
    for name in ("captions", "captions_xe"):
        parts = board[name]
        assert set(parts) >= {"caption_score", "cider_d", "meteor", "bleu3", "bleu4", "rouge_l"}
        expected = 4 * parts["cider_d"] + 3 * parts["meteor"] + (parts["bleu3"] + parts["bleu4"]) + parts["rouge_l"]
        assert parts["caption_score"] == pytest.approx(expected)
    assert -1 <= board["mos"]["mos_score"] <= 1
    # the vocabulary was bound from the data and recorded, so predict rebuilt the model from the manifest
    xe = next(o.path for o in reduced.outcomes if o.stage == "xe_partial")
    assert "EOS" in json.loads((xe / "manifest.json").read_text())["config"]["vocabulary"]["words"]


def test_ensemble_of_one_checkpoint_twice_decodes_as_it(reduced, tmp_path: Path):
    """``models: [scst_e2e@last]`` next to ``model: scst_e2e@last`` (the reduced run's ``captions``) equals
    the model alone: the mean of two equal softmaxes is that softmax."""
    store = reduced.store.root
    alone = podium.run(RECIPE, [*SMALLER, "stages.captions.models=[]"], profile="tiny", store=store,
                       console=QUIET, report=False, only=["captions"])
    pair = next(o.path for o in reduced.outcomes if o.stage == "captions")
    single = next(o.path for o in alone.outcomes if o.stage == "captions")
    assert single != pair
    a, b = load_predictions(pair / "predictions.npz"), load_predictions(single / "predictions.npz")
    assert a.kind == "captions" and np.array_equal(a.ids, b.ids) and np.array_equal(a.scores, b.scores)


def test_kill_9_during_scst_then_resume_is_identical(reduced, tmp_path: Path):
    """SCST draws its samples from generators seeded by the batch's items, so a run killed after its first
    epoch resumes from that checkpoint and ends where an unbroken run ends: the same weights and log."""
    args = [*SMALLER, "stages.scst_partial.trainer.max_epochs=4"]
    ref_store, killed_store = tmp_path / "ref", tmp_path / "killed"
    for store in (ref_store, killed_store):
        shutil.copytree(reduced.store.root, store)
    ref = podium.run(RECIPE, args, profile="tiny", store=ref_store, console=QUIET, report=False,
                     only=["scst_partial"])
    unbroken = next(o.path for o in ref.outcomes if o.stage == "scst_partial")
    broken = killed_store / unbroken.relative_to(ref_store)
    cli = ["run", str(RECIPE), "--profile", "tiny", "--only", "scst_partial", *args]
    proc = podium_popen(*cli, store=killed_store)
    kill_when(proc, killed_store, f"{broken.relative_to(killed_store)}/manifest.json",
              lambda m: "epoch=1" in m.get("checkpoints", {}))
    killed = json.loads((broken / "manifest.json").read_text())
    assert killed["status"] == "running" and "epoch=4" not in killed["checkpoints"], "the kill landed too late"
    assert "resuming from" in podium_cli(*cli, store=killed_store, check=True).stdout

    def final(run: Path) -> tuple[dict, str]:
        manifest = json.loads((run / "manifest.json").read_text())
        state = torch.load(run / manifest["checkpoints"]["epoch=4"]["file"], weights_only=True)["state_dict"]
        return state, (run / "logs" / "metrics.csv").read_text()

    (a, log_a), (b, log_b) = final(unbroken), final(broken)
    assert "train_reward" in log_a and log_a == log_b
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def logged(run: podium.api.RunResult, stage: str, column: str) -> list[float]:
    path = next(o.path for o in run.outcomes if o.stage == stage) / "logs" / "metrics.csv"
    with open(path, newline="") as f:
        return [float(row[column]) for row in csv.DictReader(f)]


@pytest.mark.slow
def test_tiny_profile_learns_what_the_images_show(tmp_path: Path):
    """The whole tiny profile (~3.5 min on 2 cores). XE captions name what the test images show: their test
    CIDEr-D beats the commonest training comment said of every image, and they name exactly the right
    kinds of distortion far more often than that comment does. SCST raises its own reward, and both MOS
    paths beat a constant (score 0). SCST does not raise test CIDEr-D at this size (README, IQA)."""
    run = podium.run(RECIPE, profile="tiny", store=tmp_path, console=QUIET, report=False)
    assert {o.state for o in run.outcomes} == {"done"}
    board = run.leaderboard["leaderboard"]
    layout = IqaLayout(next(o.path for o in run.outcomes if o.stage == "data") / "data")
    answers = layout.test_answers()
    commonest = Counter(c for image in layout.train() for c in image.comments).most_common(1)[0][0]
    constant = caption_score(dict.fromkeys(answers, commonest), {n: a.comments for n, a in answers.items()})
    assert board["captions_xe"]["cider_d"] > constant["cider_d"] + 0.2

    truth = {name: {m.kind for m in mentions(recorded[0])} for name, recorded in
             read_distortions(layout.root / DISTORTIONS_CSV).items() if name in answers}
    captions = next(o.path for o in run.outcomes if o.stage == "captions_xe") / "captions.csv"
    with open(captions, newline="") as f:
        said = {row["img_name"]: {m.kind for m in parse_comment(row["comments"])} for row in csv.DictReader(f)}
    right = np.mean([said[name] == kinds for name, kinds in truth.items()])
    clean_share = np.mean([not kinds for kinds in truth.values()])  # what the constant gets right
    assert parse_comment(commonest) == frozenset() and right > clean_share + 0.1

    reward = logged(run, "scst_partial", "train_reward")
    assert reward[-1] > reward[0]
    assert board["mos"]["mos_score"] > 0.3 and board["mos_finetune_test"]["mos_score"] > 0.1


def test_report_shows_captions_under_images_and_mos_against_truth(reduced):
    from .test_report import assert_self_contained

    text = podium.api.report(reduced.recipe, store=reduced.store).read_text()
    page = assert_self_contained(text)
    assert page.items() == {"imagegrid": 1, "scatter": 1}
    assert page.tiles() == 12, "every test image (fewer than the 18 shown at most)"
    board = reduced.leaderboard["leaderboard"]
    best = max((m["caption_score"], p) for p, m in board.items() if "caption_score" in m)[1]
    assert f"{best}: the best captions leaderboard scored" in text
    for name in ("mos", "mos_nfnet_fit", "mos_vit_fit", "mos_swin192_fit", "mos_swin384_fit", "mos_finetune_test"):
        assert f'"name":"{name}"' in text, "one scatter series per MOS prediction"


def test_caption_marks_follow_the_images_distortions():
    from podium.report.items import Span
    from podium.tasks.iqa.report import _caption
    from podium.tasks.iqa.synth import Mention

    truth = frozenset({Mention("blur", "strong", ""), Mention("cast", "slight", "red")})
    spans, wrong = _caption("the image is very blurry and slightly noisy.", "ref.", truth)
    marks = [s for s in spans if s.tone]
    assert marks == [Span("strong blur", "good"), Span("slight red cast", "bad"), Span("slight noise", "extra")]
    assert wrong
    spans, wrong = _caption("the photo has heavy blur and a mild red tint.", "ref.", truth)
    assert not wrong and all(s.tone in ("", "good") for s in spans)
    assert _caption("a clear and well exposed photo.", "ref.", frozenset())[0][-1] == Span("clean", "good")
    assert _caption("anything.", "ref.", None) == ((Span("anything."), Span(" | ref: ref.")), False)
