"""Caption training for the IQA task: ExpansionNet v2 with label-smoothed XE, then SCST on CIDEr-D.

The facts are iqa-verified.md sections 1.3 to 1.9; podium differs from the original on purpose here:

- **Optimizer**: the original's RAdam (:class:`~podium.tasks.iqa.caption_optim.RAdam`), which leaves the
  weights untouched for the first five steps (beta2 0.98); ``torch.optim.RAdam`` would take momentum-SGD
  steps there. From step 6 both are the same.
- **Batch and accumulation**: ``trainer.batch_size`` is podium's per-process micro-batch, so one optimizer
  step sees ``batch_size x accumulate_grad_batches x processes`` captions (XE) or images (SCST), and
  Lightning divides each micro-batch's loss by ``accumulate_grad_batches``: the step's gradient is the
  mean over its micro-batches, that of one batch of ``batch_size x accumulate_grad_batches`` (exactly, for
  SCST, and for XE when the micro-batches hold as many target tokens, since XE is a mean per token). The
  original's ``batch_size`` is the global batch over its GPUs, its gradients are summed over ``num_accum``
  micro-batches (a step ``num_accum`` times larger), and it steps after the very first micro-batch, then
  every ``num_accum`` (iqa-verified.md 0.3, 0.4).
- **Schedule**: ``custom_warmup_anneal`` is evaluated per optimizer step, with ``batches_per_epoch`` counted
  in optimizer steps, so the anneal still happens at the same epochs; the original advances it every
  micro-batch, so its warm-up ``W`` corresponds to ``W / num_accum`` here.
- **Vocabulary**: kept in every checkpoint (see ``caption_checkpoints``); weights trained with another
  vocabulary load only with ``vocabulary.map_init: true``, which maps the shared words and reports the
  new ones, never the original's silent skip of the output layers.

A checkpoint of :class:`CaptionModule` is usable alone: its state dict holds the vocabulary and
``on_save_checkpoint`` adds the captioner's registry name and constructor arguments, from which
:func:`load_captioner` rebuilds the model.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from pydantic import AfterValidator, Field, PrivateAttr, field_validator, model_validator
from torch import Tensor

from podium.engine.backbones import TimmName
from podium.engine.checkpoint import load_checkpoint
from podium.engine.seeding import derive_seed
from podium.errors import ConfigError, DataError
from podium.metrics.caption import cider_d
from podium.recipe import Strict
from podium.registry import CHECKPOINT_KINDS
from podium.stages.train import TrainConfig
from podium.tasks.iqa.caption_checkpoints import (
    VOCABULARY_ROWS,
    VocabularyMapping,
    decode_vocabulary,
    encode_vocabulary,
    map_vocabulary_rows,
    read_original_state_dict,
    read_original_vocabulary,
)
from podium.tasks.iqa.caption_data import (
    CaptionedImages,
    CaptionPairs,
    FeatureStore,
    ImageSource,
    trim_captions,
)
from podium.tasks.iqa.caption_losses import (
    ScstReward,
    label_smoothed_xe,
    rewards_tensor,
    sampled_words,
    scst_advantages,
    scst_loss,
)
from podium.tasks.iqa.caption_optim import RAdam, custom_warmup_anneal
from podium.tasks.iqa.data import TrainImage, Vocabulary, build_vocabulary
from podium.tasks.iqa.models import create_model
from podium.tasks.iqa.models.decoding import Captioner, LogitsCaptioner
from podium.tasks.iqa.models.expansionnet_v2 import body_state_dict, convert_end_to_end_state_dict

VOCABULARY_KEY = "_extra_state"  # torch's key for a module's get_extra_state(): here the vocabulary
CAPTIONER_KEY = "captioner"  # checkpoint entry: the model's registry name and constructor arguments
BACKBONE = "swin_transf."


def _local_file(path: str) -> str:
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file (weights are never downloaded: give a local file)")
    return path


LocalFile = Annotated[str, AfterValidator(_local_file)]


# ------------------------------------------------------------------------------------------ config


class ExpansionNetConfig(Strict):
    """ExpansionNetV2's sizes (defaults: the original's, with the COCO checkpoints' 74 positions) and, end
    to end, the timm backbone in front of it (``img_feature_dim`` is then the backbone's width)."""

    max_seq_len: int = Field(74, ge=2)
    d_model: int = Field(512, ge=1)
    N_enc: int = Field(3, ge=1)
    N_dec: int = Field(3, ge=1)
    ff: int = Field(2048, ge=1)
    num_heads: int = Field(8, ge=1)
    num_exp_enc_list: tuple[int, ...] = (32, 64, 128, 256, 512)
    num_exp_dec: int = Field(16, ge=1)
    img_feature_dim: int = Field(1536, ge=1)
    enc_drop: float = Field(0.1, ge=0, lt=1)
    dec_drop: float = Field(0.1, ge=0, lt=1)
    enc_input_drop: float = Field(0.1, ge=0, lt=1)
    dec_input_drop: float = Field(0.1, ge=0, lt=1)
    drop_other: float = Field(0.1, ge=0, lt=1)
    backbone: TimmName = "swin_large_patch4_window12_384"
    backbone_kwargs: dict[str, Any] = {}  # the original trains end to end with drop_path_rate 0.1
    image_size: int = Field(384, ge=1)


class VocabularyConfig(Strict):
    """Words of the training split's captions seen ``min_count`` times (the seed: 1; ExpansionNet on COCO:
    5); captions cut to their first ``max_words`` words (the seed: 70). ``map_init``: initial weights
    with another vocabulary keep the rows of the shared words and initialise the others (reported)."""

    min_count: int = Field(1, ge=1)
    max_words: int | None = Field(70, ge=1)
    map_init: bool = False
    # None: the training split's, built when the stage starts and recorded in its manifest's config (so a
    # model is rebuilt without the data); given: these words, sorted, with PAD, SOS, EOS and UNK
    words: list[str] | None = None

    @field_validator("words")
    @classmethod
    def _a_vocabulary(cls, words: list[str] | None) -> list[str] | None:
        if words is not None:
            Vocabulary(words)
        return words


class CaptionOptimConfig(Strict):
    """RAdam at base rate 1 scaled by ``custom_warmup_anneal`` per optimizer step; defaults: the seed's XE
    stage on features (lr 5e-4, W 300, x0.8 every 2 epochs), the original's min_lr, betas and eps."""

    lr: float = Field(5e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = Field(1e-9, ge=0)
    warmup: int = Field(300, ge=0)
    anneal_coeff: float = Field(0.8, gt=0, le=1)
    anneal_every_epoch: float = Field(2.0, gt=0)
    min_lr: float = Field(5e-7, ge=0)

    def learning_rate(self, step: int, steps_per_epoch: int) -> float:
        return custom_warmup_anneal(step, lr=self.lr, warmup=self.warmup, anneal_coeff=self.anneal_coeff,
                                    anneal_every_epoch=self.anneal_every_epoch, steps_per_epoch=steps_per_epoch,
                                    min_lr=self.min_lr)


class ScstConfig(Strict):
    """Samples drawn per image (temperature 1) and their most words after SOS (the original: 5 and 20)."""

    num_samples: int = Field(5, ge=2)
    max_len: int = Field(20, ge=1)


class DecodeConfig(Strict):
    """Validation beam search (the original: beam 3 in XE, 5 in SCST); ``max_len`` counts SOS."""

    beam_size: int = Field(3, ge=1)
    max_len: int = Field(20, ge=2)


class OriginalCheckpoint(Strict):
    """A released ExpansionNet v2 checkpoint (``xe_model.pth``, ``rf_model.pth``) loaded when training starts.

    ``parts: all`` loads the body (and, end to end, the backbone) and needs the checkpoint's
    ``vocabulary`` file (``demo_coco_tokens.pickle``, or one word per line); ``backbone`` loads only the
    Swin (an end-to-end stage whose body comes from ``init:``, as the seed's XE end-to-end stage).
    """

    path: LocalFile
    vocabulary: LocalFile | None = None
    parts: Literal["all", "backbone"] = "all"

    @model_validator(mode="after")
    def _vocabulary_for_body(self) -> OriginalCheckpoint:
        if self.parts == "all" and self.vocabulary is None:
            raise ValueError("parts 'all' loads the output layers: give the checkpoint's vocabulary file "
                             "(its word order is not in the checkpoint)")
        return self


class CaptionTrain(TrainConfig):
    """A caption train stage. ``mode``: ``xe`` (one item per caption) or ``scst`` (one per image);
    ``scope``: ``partial`` trains the body on the features of the extract stage ``features``, ``end_to_end``
    the backbone and the body on images. ``backbone_from`` (end to end) takes the Swin from another stage
    when training starts: a train stage's checkpoint (the seed's SCST end-to-end stage: backbone of the XE
    end-to-end stage, body from ``init``) or the backbone an extract stage used (so a body trained on its
    features sees the same tokens). ``val_fraction`` of train.csv's images (drawn with the stage's seed)
    are validated on; the rest are trained on and make the vocabulary.
    """

    mode: Literal["xe", "scst"] = "xe"
    scope: Literal["partial", "end_to_end"] = "partial"
    model: ExpansionNetConfig = ExpansionNetConfig()
    vocabulary: VocabularyConfig = VocabularyConfig()
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    optim: CaptionOptimConfig = CaptionOptimConfig()
    scst: ScstConfig = ScstConfig()
    decode: DecodeConfig = DecodeConfig()
    pretrained: OriginalCheckpoint | None = None
    features: str | None = None
    backbone_from: str | None = None
    val_fraction: float = Field(0.1, gt=0, lt=1)

    # what the task binds when the stage starts (never hashed, never recorded): the features store's path
    # and a loader of the backbone's weights
    _features_path: Path | None = PrivateAttr(None)
    _backbone_weights: Callable[[], dict[str, Tensor]] | None = PrivateAttr(None)

    def references(self):
        refs = super().references()
        if self.features:
            refs.append(("features", self.features, ("extract",)))
        if self.backbone_from:
            refs.append(("backbone_from", self.backbone_from, (*CHECKPOINT_KINDS, "extract")))
        return refs

    def bound(self, vocabulary: Vocabulary, features_path: Path | None,
              backbone_weights: Callable[[], dict[str, Tensor]] | None) -> CaptionTrain:
        """A copy with the training vocabulary (recorded) and the resolved inputs (not recorded)."""
        words = self.vocabulary.words or list(vocabulary.words)
        out = self.model_copy(update={"vocabulary": self.vocabulary.model_copy(update={"words": words})})
        out._features_path, out._backbone_weights = features_path, backbone_weights
        return out

    @property
    def features_path(self) -> Path | None:
        return self._features_path

    @property
    def backbone_weights(self) -> Callable[[], dict[str, Tensor]] | None:
        return self._backbone_weights

    @model_validator(mode="after")
    def _fits(self) -> CaptionTrain:
        positions = self.model.max_seq_len
        words = self.vocabulary.max_words
        if words is not None and words + 1 > positions:
            raise ValueError(f"vocabulary.max_words {words}: SOS and the words take {words + 1} decoder positions, "
                             f"more than model.max_seq_len {positions}")
        for name, length in (("scst.max_len", self.scst.max_len), ("decode.max_len", self.decode.max_len)):
            if length > positions:
                raise ValueError(f"{name} {length} is more than model.max_seq_len {positions}")
        if self.scope == "end_to_end" and self.features:
            raise ValueError("features: an end-to-end stage reads images, not an extract stage's features")
        if self.backbone_from and (self.scope == "partial" or self.pretrained is not None):
            raise ValueError("backbone_from sets an end-to-end stage's backbone; a partial stage has none, and "
                             "pretrained would set it too")
        if self.pretrained is not None:
            if self.pretrained.parts == "backbone" and self.scope == "partial":
                raise ValueError("pretrained.parts 'backbone': a partial stage has no backbone")
            if self.pretrained.parts == "all" and self.init:
                raise ValueError("init and pretrained (parts 'all') would both set the weights; give one, or "
                                 "pretrained.parts 'backbone' for an end-to-end stage whose body comes from init")
        return self


def captioner_spec(cfg: CaptionTrain) -> tuple[str, dict[str, Any]]:
    """The registry name and the constructor arguments (all but ``vocab_size``) of ``cfg``'s captioner."""
    m = cfg.model
    body = m.model_dump(mode="json", exclude={"backbone", "backbone_kwargs", "image_size"})
    if cfg.scope == "partial":
        return "expansionnet_v2", body
    body.pop("img_feature_dim")
    return "expansionnet_v2_e2e", {**body, "backbone": m.backbone,
                                   "backbone_kwargs": {"img_size": m.image_size, **m.backbone_kwargs}}


def training_vocabulary(cfg: CaptionTrain, train_items: Iterable[TrainImage]) -> Vocabulary:
    """The vocabulary of the training split's comments (never the validation's), as ``cfg`` asks."""
    return build_vocabulary((c for item in train_items for c in item.comments), cfg.vocabulary.min_count)


# ------------------------------------------------------------------------------------------ module


class CaptionModule(L.LightningModule):
    """Trains ``self.model`` (ExpansionNetV2, or its end-to-end variant) with XE or SCST; validation decodes
    with beam search and logs ``val_cider`` (CIDEr-D x10, document frequencies over the validation
    references, as pycocoevalcap; words cleaned as the vocabulary's, without the PTB tokenizer).

    ``vocabulary`` must be the training split's; it is this module's extra state, so it is saved in the
    state dict and checked (or mapped, with ``vocabulary.map_init``) whenever one is loaded.
    """

    def __init__(self, cfg: CaptionTrain, vocabulary: Vocabulary):
        super().__init__()
        self.cfg = cfg
        self.vocabulary = vocabulary
        name, kwargs = captioner_spec(cfg)
        self.model: LogitsCaptioner = create_model(name, vocab_size=len(vocabulary), **kwargs)
        self.vocabulary_mapping: VocabularyMapping | None = None
        self._reward: ScstReward | None = None
        self._train_references: list[list[list[str]]] = []
        self._val_captions: dict[int, list[str]] = {}
        self.register_load_state_dict_pre_hook(self._adapt_state_dict)

    # ----------------------------------------------------------------- vocabulary and initial weights

    def get_extra_state(self) -> Tensor:
        return encode_vocabulary(self.vocabulary)

    def set_extra_state(self, state: Tensor) -> None:
        if decode_vocabulary(state) != self.vocabulary:  # the pre-hook has mapped or refused any other
            raise ConfigError("the state dict's vocabulary is not this model's")

    def _map_vocabulary(self, state_dict: dict[str, Tensor], words: Sequence[str], prefix: str, source: str) -> None:
        """Re-index ``state_dict``'s output rows from ``words`` to this vocabulary, if the config allows."""
        mine = self.vocabulary.words
        if not self.cfg.vocabulary.map_init:
            known = set(words)
            unknown = sum(w not in known for w in mine)
            raise ConfigError(f"{source}: its vocabulary ({len(words)} words) is not this stage's ({len(mine)} "
                              f"words, {unknown} of them not in the checkpoint's); set vocabulary.map_init: true to "
                              "copy the shared words' weights and initialise the others")
        own = self.model.state_dict()
        self.vocabulary_mapping = map_vocabulary_rows(state_dict, words, mine, {k: own[k] for k in VOCABULARY_ROWS},
                                                      prefix)
        rank_zero_warn(f"{source}: {self.vocabulary_mapping}")

    def _adapt_state_dict(self, module: L.LightningModule, state_dict: dict[str, Tensor], prefix: str,
                          *_: Any) -> None:
        """Before a state dict loads: map another vocabulary's rows (or refuse), and fit the backbone.

        A partial model takes the body of an end-to-end checkpoint; an end-to-end model takes a partial
        checkpoint's body only when ``pretrained`` (parts ``backbone``) supplies the backbone at fit start.
        """
        key = prefix + VOCABULARY_KEY
        if key in state_dict:
            theirs = decode_vocabulary(state_dict[key])
            if theirs != self.vocabulary:
                self._map_vocabulary(state_dict, theirs.words, prefix + "model.", "the loaded checkpoint")
                state_dict[key] = self.get_extra_state()
        backbone = prefix + "model." + BACKBONE
        keys = [k for k in state_dict if k.startswith(backbone)]
        if self.cfg.scope == "partial":
            for k in keys:
                del state_dict[k]
        elif not keys:
            pretrained = self.cfg.pretrained
            if self.cfg.backbone_from is None and (pretrained is None or pretrained.parts != "backbone"):
                raise ConfigError("the loaded checkpoint holds no backbone (a partial stage's): an end-to-end stage "
                                  "starting from it needs backbone_from, or pretrained with parts 'backbone'")
            swin = self.model.get_submodule(BACKBONE[:-1])
            state_dict.update({backbone + k: v for k, v in swin.state_dict().items()})  # replaced at fit start

    def load_original(self, original: OriginalCheckpoint) -> None:
        """Load a released ExpansionNet v2 checkpoint as ``original`` says (strict, after mapping words)."""
        state = read_original_state_dict(original.path)
        converted = convert_end_to_end_state_dict(state)
        if original.parts == "backbone":
            swin = {k[len(BACKBONE):]: v for k, v in converted.items() if k.startswith(BACKBONE)}
            if not swin:
                raise DataError(f"{original.path}: no '{BACKBONE}' weights: not an end-to-end checkpoint")
            self.model.get_submodule(BACKBONE[:-1]).load_state_dict(swin)
            return
        state = body_state_dict(state) if self.cfg.scope == "partial" else converted
        words = read_original_vocabulary(original.vocabulary)
        if words != list(self.vocabulary.words):
            self._map_vocabulary(state, words, "", str(original.path))
        try:
            self.model.load_state_dict(state)
        except RuntimeError as e:
            raise DataError(f"{original.path}: does not fit model ({self.cfg.scope}): {e}") from None

    def setup(self, stage: str) -> None:
        # after init: weights (loaded before fit) and before a resumed checkpoint is restored (which wins)
        if stage != "fit":
            return
        if self.cfg.pretrained is not None:
            self.load_original(self.cfg.pretrained)
        if self.cfg.backbone_weights is not None:
            try:
                self.model.get_submodule(BACKBONE[:-1]).load_state_dict(self.cfg.backbone_weights())
            except RuntimeError as e:
                raise ConfigError(f"backbone_from {self.cfg.backbone_from!r}: its backbone does not fit model.backbone "
                                  f"and model.backbone_kwargs: {e}") from None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # a resume or ``init_state: full`` also restores per-word optimizer moments: they cannot be mapped
        if checkpoint.get("optimizer_states") and vocabulary_of(checkpoint["state_dict"]) != self.vocabulary:
            raise ConfigError("a full-state start needs the checkpoint's own vocabulary (the optimizer's moments "
                              "are per word): use init_state 'weights' with vocabulary.map_init: true")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        name, kwargs = captioner_spec(self.cfg)
        checkpoint[CAPTIONER_KEY] = {"name": name, "kwargs": kwargs}

    # ---------------------------------------------------------------------------------- training

    def on_train_start(self) -> None:
        if self.cfg.mode == "scst":
            dataset = self.trainer.train_dataloader.dataset
            if not isinstance(dataset, CaptionedImages):
                raise ConfigError("mode 'scst' trains on images (CaptionedImages), one item per image")
            self._train_references = dataset.references
            self._reward = ScstReward(self._train_references)  # document frequencies, once

    def xe_loss(self, batch: dict[str, Tensor]) -> Tensor:
        tokens, pads = trim_captions(batch["tokens"], batch["length"])
        log_probs = self.model(batch["inputs"], tokens[:, :-1], token_pads=pads)
        return label_smoothed_xe(log_probs, tokens[:, 1:], self.vocabulary.pad, self.cfg.label_smoothing)

    def scst_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(loss, mean reward) of samples drawn from a generator seeded by the batch's sample seeds.

        The samples are drawn without gradients and scored in one teacher-forced pass (``sample_scored``):
        the original's gradients with dropout 0; with dropout the scoring pass draws its own decoder masks.
        """
        assert self._reward is not None, "on_train_start builds the reward"
        samples = self.cfg.scst.num_samples
        generator = torch.Generator(device=self.device).manual_seed(derive_seed("scst", *batch["seed"].tolist()))
        result = self.model.sample_scored(batch["inputs"], self.vocabulary.sos, self.vocabulary.eos, samples,
                                   self.cfg.scst.max_len, generator=generator)
        references = [self._train_references[i] for i in batch["index"].tolist() for _ in range(samples)]
        rewards = self._reward(sampled_words(result.sequences, self.vocabulary.words), references)
        rewards = rewards_tensor(rewards, len(result.sequences), result.log_probs)
        return scst_loss(result.log_probs, scst_advantages(rewards)), rewards.mean()

    def training_step(self, batch: dict[str, Tensor], _: int) -> Tensor:
        size = len(batch["inputs"])
        if self.cfg.mode == "xe":
            loss = self.xe_loss(batch)
        else:
            loss, reward = self.scst_loss(batch)
            self.log("train_reward", reward, on_step=False, on_epoch=True, batch_size=size)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=size)
        return loss

    # -------------------------------------------------------------------------------- validation

    def validation_step(self, batch: dict[str, Tensor], _: int) -> None:
        d = self.cfg.decode
        result = self.model.beam_search(batch["inputs"], self.vocabulary.sos, self.vocabulary.eos, d.beam_size,
                                        d.max_len)
        for index, beams in zip(batch["index"].tolist(), result.sequences, strict=True):
            self._val_captions[index] = self.vocabulary.decode(beams[0])

    def on_validation_epoch_end(self) -> None:
        if not self._val_captions:
            return
        # every rank decodes the whole validation set (engine.trainer.DataModule): no gathering
        references = self.trainer.val_dataloaders.dataset.references
        indices = sorted(self._val_captions)
        scores = cider_d([self._val_captions[i] for i in indices], [references[i] for i in indices])
        self._val_captions.clear()
        self.log("val_cider", float(scores.mean()))

    # -------------------------------------------------------------------------------- optimizer

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.cfg.optim
        optimizer = RAdam(self.parameters(), lr=1.0, betas=o.betas, eps=o.eps)
        self.trainer.estimated_stepping_batches  # noqa: B018 -- sets up the training loader, for its length
        steps_per_epoch = max(1, math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, functools.partial(o.learning_rate, steps_per_epoch=steps_per_epoch))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


# ------------------------------------------------------------------------------- task functions


def datasets(cfg: CaptionTrain, features_path: str | os.PathLike | None, train_items: Sequence[TrainImage],
             val_items: Sequence[TrainImage], vocabulary: Vocabulary
             ) -> tuple[CaptionPairs | CaptionedImages, CaptionedImages | None]:
    """(train, validation) data sets of a caption stage: per caption (XE) or per image (SCST) for training,
    per image for validation (None without validation images); features from ``features_path`` (partial)
    or images (end to end)."""
    if cfg.scope == "partial":
        if features_path is None:
            raise ConfigError("scope 'partial' trains on features: the stage needs an extract stage's store")
        source = FeatureStore(features_path, [item.name for item in [*train_items, *val_items]])
    else:
        source = ImageSource(cfg.model.image_size)
    if cfg.mode == "xe":
        train = CaptionPairs(train_items, source, vocabulary, cfg.vocabulary.max_words)
        if train.length - 1 > cfg.model.max_seq_len:
            raise ConfigError(f"the longest training caption takes {train.length - 1} decoder positions, more than "
                              f"model.max_seq_len {cfg.model.max_seq_len}: set vocabulary.max_words")
    else:
        train = CaptionedImages(train_items, source)
    return train, CaptionedImages(val_items, source) if val_items else None


def format_caption(words: Sequence[str]) -> str:
    """The seed's text: words joined, a period after the last, first letter capitalised (str.capitalize,
    which lower-cases the rest). An empty caption stays empty (the original raised IndexError)."""
    if not words:
        return ""
    return " ".join([*words[:-1], words[-1] + "."]).capitalize()


def caption_images(captioner: Captioner, vocabulary: Vocabulary, inputs: Tensor, beam_size: int = 5,
                   max_len: int = 74) -> list[str]:
    """The best beam's caption of each input (features, or images end to end), formatted as the seed's;
    ``captioner`` (a model or a ``CaptionEnsemble``) should be in eval mode. Defaults: the seed's inference."""
    result = captioner.beam_search(inputs, vocabulary.sos, vocabulary.eos, beam_size, max_len)
    return [format_caption(vocabulary.decode(beams[0])) for beams in result.sequences]


def vocabulary_of(state_dict: dict[str, Tensor]) -> Vocabulary:
    """The vocabulary a :class:`CaptionModule` state dict (a train or soup checkpoint's) was trained with."""
    if VOCABULARY_KEY not in state_dict:
        raise DataError(f"no {VOCABULARY_KEY!r} entry: not a caption model's state dict")
    return decode_vocabulary(state_dict[VOCABULARY_KEY])


def load_captioner(path: str | os.PathLike) -> tuple[LogitsCaptioner, Vocabulary]:
    """The captioner of a train stage's checkpoint file, in eval mode, and its vocabulary: nothing else needed."""
    checkpoint = load_checkpoint(Path(path))
    if CAPTIONER_KEY not in checkpoint:
        raise DataError(f"{path}: no {CAPTIONER_KEY!r} entry (a soup's checkpoint holds weights only): build the "
                        "model from its train config and vocabulary_of(state_dict)")
    state = checkpoint["state_dict"]
    vocabulary = vocabulary_of(state)
    spec = checkpoint[CAPTIONER_KEY]
    model = create_model(spec["name"], vocab_size=len(vocabulary), **spec["kwargs"])
    model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    return model.eval(), vocabulary
