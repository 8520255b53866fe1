"""The caption side of the ``iqa`` task as stages see it: binding a stage to its inputs, caption predictions
(beam search, an ensemble of checkpoints), their score, the submission and the competition's ranking rule.

A caption stage names its inputs as stage references (``features: an_extract_stage``, ``backbone_from:``,
``models: [...]``), so the recipe orders and hashes them; ``bind_train`` / ``bind_predict`` receive what
they name (``podium.stages.inputs``). The training vocabulary is bound from the data once, when a train
stage starts, and recorded in its manifest's config: predict, soup and extract rebuild the model from
that config without the data.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, PrivateAttr, model_validator
from torch import Tensor

from podium.engine.checkpoint import load_checkpoint
from podium.engine.feature_store import STORE
from podium.engine.progress import progress_bar
from podium.ensemble.predictions import Predictions
from podium.errors import ConfigError, DataError
from podium.metrics.caption import caption_score
from podium.recipe import validate
from podium.registry import CHECKPOINT_KINDS
from podium.stages.extract import ExtractConfig, timm_backbone
from podium.stages.predict import PredictConfig
from podium.store import StageRun, atomic_write
from podium.tasks.iqa.caption_data import FeatureStore, ImageSource, Item
from podium.tasks.iqa.captioning import BACKBONE, CaptionTrain, caption_images, load_captioner, training_vocabulary
from podium.tasks.iqa.data import IqaLayout, Vocabulary, split_train_val
from podium.tasks.iqa.models.decoding import CaptionEnsemble, Captioner
from podium.tasks.iqa.models.expansionnet_v2 import ExpansionNetV2E2E


class CaptionPredict(PredictConfig):
    """Captions of ``split`` by beam search (the seed: beam 5, 74 positions). ``models`` are more
    checkpoints decoded with ``model`` as one ensemble (mean of their softmax, as the original's
    ``EsembleCaptioningModel``); partial models read the extract stage ``features``, end-to-end ones images."""

    split: Literal["val", "test"] = "test"
    features: str | None = None
    models: list[str] = []
    beam_size: int = Field(5, ge=1)
    max_len: int = Field(74, ge=2)

    _features_path: Path | None = PrivateAttr(None)
    _member_paths: list[Path] = PrivateAttr(default_factory=list)
    _split_seed: int = PrivateAttr(0)

    @model_validator(mode="after")
    def _no_tta(self) -> CaptionPredict:
        if self.tta != "none":
            raise ValueError("captions have no test-time augmentation (tta: none)")
        return self

    def references(self):
        refs = super().references()
        if self.features:
            refs.append(("features", self.features, ("extract",)))
        return refs + [(f"models[{i}]", m, CHECKPOINT_KINDS) for i, m in enumerate(self.models)]

    def bound(self, features_path: Path | None, member_paths: list[Path], split_seed: int) -> CaptionPredict:
        """A copy with the resolved inputs; ``split_seed`` draws the validation split as its train stage did."""
        out = self.model_copy()
        out._features_path, out._member_paths, out._split_seed = features_path, member_paths, split_seed
        return out

    @property
    def features_path(self) -> Path | None:
        return self._features_path

    @property
    def member_paths(self) -> list[Path]:
        return self._member_paths

    @property
    def split_seed(self) -> int:
        return self._split_seed


# ------------------------------------------------------------------------------------------- binding


def _store(inputs: dict[str, Any]) -> Path | None:
    run = inputs.get("features")
    return run.output(STORE) if run is not None else None


def _backbone_weights(cfg: CaptionTrain, source: Path | StageRun | None) -> Callable[[], dict[str, Tensor]] | None:
    """A loader of the Swin weights ``backbone_from`` names: a checkpoint's ``swin_transf``, or the backbone
    an extract stage built (its weights file, or its seeded initialisation)."""
    if source is None:
        return None
    if isinstance(source, Path):
        def from_checkpoint() -> dict[str, Tensor]:
            prefix = "model." + BACKBONE
            weights = load_checkpoint(source)["state_dict"]
            state = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
            if not state:
                raise ConfigError(f"backbone_from {cfg.backbone_from!r}: {source} holds no backbone (a partial "
                                  "stage's)")
            return state
        return from_checkpoint
    manifest = source.read_manifest()
    extract = validate(ExtractConfig, manifest["config"], f"{source.path}/manifest.json:")
    if extract.model is not None:
        raise ConfigError(f"backbone_from {cfg.backbone_from!r}: that extract stage takes its backbone from "
                          f"{extract.model!r}; name that stage instead")
    if extract.image_size != cfg.model.image_size:
        raise ConfigError(f"backbone_from {cfg.backbone_from!r}: extracted at {extract.image_size} px, this stage "
                          f"reads images at model.image_size {cfg.model.image_size}")
    return lambda: timm_backbone(extract.backbone, manifest["seed"]).state_dict()


def bind_train(cfg: CaptionTrain, data_root: Path, seed: int, inputs: dict[str, Any]) -> CaptionTrain:
    """The training split's vocabulary (unless the recipe gives one), the features store and the backbone."""
    if cfg.vocabulary.words is None:
        train, _ = split_train_val(IqaLayout(data_root).train(), cfg.val_fraction, seed)
        vocabulary = training_vocabulary(cfg, train)
    else:
        vocabulary = Vocabulary(cfg.vocabulary.words)
    return cfg.bound(vocabulary, _store(inputs), _backbone_weights(cfg, inputs.get("backbone_from")))


def bind_predict(cfg: CaptionPredict, seed: int, inputs: dict[str, Any]) -> CaptionPredict:
    members = [inputs[f"models[{i}]"] for i in range(len(cfg.models))]
    return cfg.bound(_store(inputs), members, seed)


# ---------------------------------------------------------------------------------------- predicting


def split_items(layout: IqaLayout, split: str, val_fraction: float, seed: int) -> list[Item]:
    """test.csv's images in file order, or the validation images a train stage with ``seed`` held out."""
    if split == "test":
        return list(layout.test())
    return split_train_val(layout.train(), val_fraction, seed)[1]


def _captioner(model: Captioner, vocabulary: Vocabulary, member_paths: Sequence[Path]) -> Captioner:
    """``model`` alone, or the ensemble of it and the checkpoints' captioners (one vocabulary, one input kind)."""
    members = [model]
    for path in member_paths:
        member, words = load_captioner(path)
        if words != vocabulary:
            raise ConfigError(f"models: {path} was trained with another vocabulary ({len(words)} words, the first "
                              f"model {len(vocabulary)}); an ensemble averages the same words' probabilities")
        reads_images = isinstance(member, ExpansionNetV2E2E)
        if reads_images != isinstance(model, ExpansionNetV2E2E):
            raise ConfigError(f"models: {path} reads {'images' if reads_images else 'features'}, the first model "
                              "does not; ensemble models of one scope")
        members.append(member)
    return model if len(members) == 1 else CaptionEnsemble(members).eval()


def predict_captions(model: Captioner, train_cfg: CaptionTrain, cfg: CaptionPredict, data_root: Path) -> Predictions:
    """Each image's best beam, formatted as the seed's captions, as ``Predictions`` of kind ``captions``."""
    items = split_items(IqaLayout(data_root), cfg.split, train_cfg.val_fraction, cfg.split_seed)
    vocabulary = Vocabulary(train_cfg.vocabulary.words)
    captioner = _captioner(model, vocabulary, cfg.member_paths)
    if isinstance(model, ExpansionNetV2E2E):
        source: Callable[[Item], Tensor] = ImageSource(train_cfg.model.image_size)
    elif cfg.features_path is None:
        raise ConfigError("features: a partial model reads features: name the extract stage of its backbone")
    else:
        source = FeatureStore(cfg.features_path, [item.name for item in items])
    captions: list[str] = []
    with torch.inference_mode(), progress_bar() as bar:
        task = bar.add_task(f"captions ({cfg.split})", total=len(items))
        for start in range(0, len(items), cfg.batch_size):
            batch = items[start:start + cfg.batch_size]
            inputs = torch.stack([source(item) for item in batch])
            captions += caption_images(captioner, vocabulary, inputs, cfg.beam_size, cfg.max_len)
            bar.advance(task, len(batch))
    return Predictions(np.array([item.name for item in items]), np.array(captions), "captions", cfg.split)


# ------------------------------------------------------------------------------------------- scoring


def reference_comments(layout: IqaLayout, split: str) -> dict[str, tuple[str, ...]]:
    """Reference comments by img_name: the hidden answers for test (synthetic data only), else train.csv's."""
    if split == "test":
        return {name: answer.comments for name, answer in layout.test_answers().items()}
    return {image.name: image.comments for image in layout.train()}


def evaluate_captions(preds: Predictions, data_root: Path) -> dict[str, float]:
    """The caption leaderboard's score (4 CIDEr-D + 3 METEOR + 2 (BLEU-3 + BLEU-4) / 2 + ROUGE-L) and its parts."""
    layout = IqaLayout(data_root)
    names = preds.ids.tolist()
    truth = layout.truth_of(names, preds.split, reference_comments(layout, preds.split), "comments")
    scores = caption_score(dict(zip(names, preds.scores.tolist(), strict=True)), dict(zip(names, truth, strict=True)))
    return {"caption_score": scores.pop("score"), **scores}


def ranking_notes(scores: dict[str, dict]) -> list[str]:
    """The competition's ranking rule (iqa-verified 0), with the best of each leaderboard in this table."""
    lines = ["Ranking (Dacon rules): teams are ranked on each leaderboard, MOS ((PLCC + SRCC) / 2) and captions "
             "(4 CIDEr-D + 3 METEOR + 2 (BLEU-3 + BLEU-4) / 2 + ROUGE-L); the smallest MOS rank + caption rank "
             "wins, ties go to the better caption rank. Public = 30% of test, private = the other 70%."]
    for metric, baseline in (("mos_score", "a constant MOS scores 0"), ("caption_score", None)):
        entries = [(m[metric], name) for name, m in scores.items() if metric in m]
        if entries:
            value, name = max(entries)
            lines.append(f"  best {metric}: {value:.4f} ({name})" + (f"; {baseline}" if baseline else ""))
    return lines


# ----------------------------------------------------------------------------------------- writing


def _csv(rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def write_captions(preds: Predictions, out_dir: Path) -> Path:
    """``captions.csv``: img_name,comments (the seed's comment_prediction.csv, names without extension)."""
    return atomic_write(out_dir / "captions.csv", _csv([("img_name", "comments"),
                                                        *zip(preds.ids.tolist(), preds.scores.tolist(), strict=True)]))


def write_submission(sources: Sequence[Predictions], data_root: Path, out_path: Path) -> Path:
    """``img_name,mos,comments`` in sample_submission.csv's order from one MOS and one caption prediction
    of the test split (the seed's make_submission.py, joined by name instead of by position)."""
    by_kind = {p.kind: p for p in sources}
    if len(sources) != 2 or set(by_kind) != {"values", "captions"}:
        raise ConfigError("predictions: the iqa submission joins a MOS stage (values) and a caption stage "
                          f"(captions), e.g. [mos_blend, captions_test]; found {[p.kind for p in sources]}")
    for p in sources:
        if p.split != "test":
            raise ConfigError(f"predictions: a submission predicts the test split; one holds {p.split!r}")
    layout = IqaLayout(data_root)
    names = layout.submission_names()
    mos = dict(zip(by_kind["values"].ids.tolist(), by_kind["values"].scores.tolist(), strict=True))
    comments = dict(zip(by_kind["captions"].ids.tolist(), by_kind["captions"].scores.tolist(), strict=True))
    for what, table in (("MOS", mos), ("caption", comments)):
        missing = [n for n in names if n not in table]
        if missing:
            raise DataError(f"{layout.sample_submission_csv}: no {what} prediction for img_name {missing[0]!r} "
                            f"({len(missing)} of {len(names)})")
    rows = [("img_name", "mos", "comments"), *((n, f"{mos[n]:.6g}", comments[n]) for n in names)]
    return atomic_write(out_path, _csv(rows))
