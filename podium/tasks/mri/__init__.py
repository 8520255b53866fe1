"""FastMRI challenge (SNU 2025 and fastMRI layouts): data, masks, VarNet, leaderboard SSIM.

The ``mri`` task wires them to the stage kinds: ``synth`` writes the SNU ``Data/`` layout, ``train``
fits a VarNet on ``train/`` and selects checkpoints by the leaderboard SSIM on ``val/``, ``predict``
reconstructs ``leaderboard/{acc4,acc8}`` into ``reconstructions_leaderboard/`` (timed against the
3,600 s budget), and ``evaluate`` scores them with the 2025 metric next to the zero-filled input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, field_validator, model_validator

from podium.engine.trainer import TrainerConfig
from podium.errors import ConfigError, DataError
from podium.metrics.ssim import leaderboard_ssim, score_leaderboard
from podium.recipe import Strict
from podium.registry import Task, register_task
from podium.stages.predict import PredictConfig
from podium.stages.synth import SynthConfig
from podium.stages.train import TrainConfig
from podium.store import StageRun
from podium.tasks.mri.augment import AugmentConfig
from podium.tasks.mri.data import MriReader, scan_snu
from podium.tasks.mri.dataset import Augmentation, SliceDataset
from podium.tasks.mri.experts import ExpertSystem, expert_class, expert_key
from podium.tasks.mri.masks import (
    FIXED_CENTER_FRACTION,
    MASK_FAMILIES,
    HelperMaskSampler,
    MaskAugmenter,
    is_fixed_pattern,
)
from podium.tasks.mri.module import MriModule
from podium.tasks.mri.reconstruct import (
    RECON_DIR,
    ROUTING_FILE,
    TIMING_FILE,
    fastmri_metrics,
    leaderboard_folders,
    reconstruct_leaderboard,
    routing_metrics,
)
from podium.tasks.mri.synth import synthesize_fastmri

TRAIN_SPLITS = ("train", "val")


class MriSynth(SynthConfig):
    """Counts are per (anatomy, acceleration): the real set has 85 train, 15 val, 29 leaderboard each."""

    num_train: int = Field(85, ge=1)
    num_val: int = Field(15, ge=1)
    num_leaderboard: int = Field(29, ge=1)
    height: int = Field(768, ge=8)
    width: int = Field(396, ge=8)
    target_size: int = Field(384, ge=8)
    coils: int = Field(16, ge=1)
    slices: int = Field(16, ge=1)
    leaderboard_robust: int = Field(0, ge=0)  # leaderboard files (the last, per anatomy and acc) under another mask
    progress: bool = True

    unhashed = ("progress",)

    @model_validator(mode="after")
    def _target_fits(self) -> MriSynth:
        if self.leaderboard_robust > self.num_leaderboard:
            raise ValueError(f"leaderboard_robust {self.leaderboard_robust} is more than num_leaderboard "
                             f"{self.num_leaderboard}")
        if self.target_size > min(self.height, self.width):
            raise ValueError(f"target_size {self.target_size} is larger than the {self.height} x {self.width} "
                             "k-space it is cropped from")
        return self


class ModelConfig(Strict):
    """A registered model's name and constructor arguments."""

    name: str

    def kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude={"name"})


class VarNetConfig(ModelConfig):
    """``create_model`` arguments; the defaults are fastMRI's E2E VarNet with the challenge's 384 crop."""

    name: Literal["varnet"] = "varnet"
    num_cascades: int = Field(12, ge=1)
    chans: int = Field(18, ge=1)
    pools: int = Field(4, ge=1)
    sens_chans: int = Field(8, ge=1)
    sens_pools: int = Field(4, ge=1)
    mask_center: bool = True
    crop_size: int | tuple[int, int] | None = 384


class FIVarNetConfig(ModelConfig):
    """fastMRI's feature VarNets (``fi_varnet`` is the paper's best; its training script uses chans 32);
    ``crop_size`` crops the output to the challenge's 384 x 384 (fastMRI's classes do not crop)."""

    name: Literal["fi_varnet", "if_varnet", "feature_varnet_sh_w", "feature_varnet_n_sh_w"]
    num_cascades: int = Field(12, ge=1)
    sens_chans: int = Field(8, ge=1)
    sens_pools: int = Field(4, ge=1)
    chans: int = Field(18, ge=1)
    pools: int = Field(4, ge=1)
    acceleration: int = Field(4, ge=1)  # AttentionPE's group size (fi_varnet, if_varnet)
    mask_center: bool = True
    image_conv_cascades: list[int] | None = None
    kspace_mult_factor: float = Field(1e6, gt=0)
    crop_size: int | tuple[int, int] | None = 384

    def kwargs(self) -> dict[str, Any]:
        out = super().kwargs()
        if not self.name.endswith("i_varnet"):
            out.pop("acceleration")
        return out


class FeatureVarNetConfig(ModelConfig):
    """GeekSeek's FastMRI 2025 model (67.6 M parameters at these defaults)."""

    name: Literal["feature_varnet"]
    cascade_counts: tuple[int, int, int] = (5, 10, 3)
    feature_chans: int = Field(12, ge=1)
    unet_chans: int = Field(24, ge=1)
    image_chans: int = Field(18, ge=1)
    pools: int = Field(4, ge=1)
    sens_chans: int = Field(8, ge=1)
    sens_pools: int = Field(4, ge=1)
    lska_kernel: Literal[7, 11, 23, 35, 41, 53] = 7
    mask_center: bool = True
    image_conv_cascades: list[int] | None = None
    kspace_mult_factor: float = Field(1e6, gt=0)
    crop_size: int | tuple[int, int] | None = 384


class PromptMRConfig(ModelConfig):
    """PromptMR+ with team sMaRtIfy's configuration (6.01 M parameters); names as in their train.py."""

    name: Literal["promptmr_plus"]
    num_cascades: int = Field(8, ge=1)
    n_feat0: int = Field(8, ge=1)
    feature_dim: tuple[int, int, int] = (24, 32, 40)
    prompt_dim: tuple[int, int, int] = (8, 16, 24)
    sens_n_feat0: int = Field(8, ge=1)
    sens_feature_dim: tuple[int, int, int] = (12, 16, 20)
    sens_prompt_dim: tuple[int, int, int] = (4, 8, 12)
    len_prompt: tuple[int, int, int] = (3, 3, 3)
    prompt_size: tuple[int, int, int] = (16, 8, 4)
    n_enc_cab: tuple[int, int, int] = (2, 3, 3)
    n_dec_cab: tuple[int, int, int] = (2, 2, 3)
    n_skip_cab: tuple[int, int, int] = (1, 1, 1)
    n_bottleneck_cab: int = Field(3, ge=1)
    no_use_ca: bool = False
    reduction: int = Field(2, ge=1)
    adaptive_input: bool = True
    n_buffer: int = Field(4, ge=3)
    n_history: int = Field(3, ge=0)
    use_sens_adj: bool = True
    mask_center: bool = True
    crop_size: int | tuple[int, int] | None = 384


MriModelConfig = Annotated[VarNetConfig | FIVarNetConfig | FeatureVarNetConfig | PromptMRConfig,
                           Field(discriminator="name")]


class ScheduleConfig(Strict):
    """MRAugment's schedule of a probability: 0 before ``delay``, then ``constant`` p_max, a linear ``ramp``
    or ``exp`` up to p_max at epoch ``max_epochs`` (default: the trainer's)."""

    schedule: Literal["constant", "ramp", "exp"] = "constant"
    delay: int = Field(0, ge=0)
    exp_decay: float = Field(5.0, gt=0)
    max_epochs: int | None = Field(None, ge=1)


class MaskAugmentConfig(ScheduleConfig):
    """GeekSeek's mask augmentation: with probability p(epoch) a fresh mask of the item's acceleration,
    its family drawn by weight, its centre fraction from ``center_fraction``. Off at p_max 0."""

    schedule: Literal["constant", "ramp", "exp"] = "ramp"
    p_max: float = Field(0.0, ge=0, le=1)
    families: dict[str, float] = {"equispaced": 0.25, "equispaced_fraction": 0.25, "random": 0.25,
                                  "magic": 0.125, "magic_fraction": 0.125}
    center_fraction: tuple[float, float] = (0.07, 0.10)

    @model_validator(mode="after")
    def _families(self) -> MaskAugmentConfig:
        unknown = sorted(set(self.families) - set(MASK_FAMILIES))
        if unknown:
            raise ValueError(f"unknown mask families {unknown}; expected some of {sorted(MASK_FAMILIES)}")
        if min(self.families.values(), default=-1) < 0 or sum(self.families.values()) <= 0:
            raise ValueError(f"family weights must be >= 0 and not all 0, got {self.families}")
        if not 0 < self.center_fraction[0] <= self.center_fraction[1] < 1:
            raise ValueError(f"center_fraction must be a range within (0, 1), got {self.center_fraction}")
        return self

    def augmenter(self) -> MaskAugmenter | None:
        if self.p_max == 0:
            return None
        return MaskAugmenter(self.families, self.center_fraction, self.schedule, self.p_max, self.delay,
                             self.exp_decay, self.max_epochs)


class MaskConfig(ScheduleConfig):
    """Training masks. ``fixed``: the challenge pattern of each item's acceleration (baseline, "Hacker");
    ``file``: the mask stored in the file; ``helper``: with probability p(epoch) (``robust_probability``
    under the schedule) a mask outside that pattern (equispaced with another start, share
    ``equispaced_share``, else random). An item's acceleration is its file's, or drawn per item from
    ``accelerations`` (sMaRtIfy: [4, 8] on fully sampled k-space); ``duplicate`` lists every slice once
    per acceleration given (GeekSeek: [4, 8]). Validation always uses the fixed pattern of the file's
    acceleration (the stored mask for ``file``)."""

    kind: Literal["fixed", "file", "helper"] = "fixed"
    accelerations: list[int] = []
    robust_probability: float = Field(1.0, ge=0, le=1)
    equispaced_share: float = Field(0.5, ge=0, le=1)
    center_fraction: float = Field(FIXED_CENTER_FRACTION, gt=0, lt=1)
    duplicate: list[int] = []
    augment: MaskAugmentConfig = MaskAugmentConfig()

    @field_validator("duplicate", "accelerations")
    @classmethod
    def _accelerations(cls, value: list[int]) -> list[int]:
        if any(a < 2 for a in value) or len(set(value)) != len(value):
            raise ValueError(f"distinct accelerations >= 2, got {value}")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> MaskConfig:
        if self.duplicate and self.accelerations:
            raise ValueError("duplicate and accelerations both set the items' accelerations; use one")
        if self.kind == "file" and (self.duplicate or self.accelerations):
            raise ValueError("kind 'file' uses each file's own mask and acceleration")
        return self


class LossConfig(Strict):
    """``ssim`` x (1 - SSIM) + ``l1`` x mean |output - target| / data range; with ``foreground`` both on
    the images times the leaderboard's foreground mask (GeekSeek: ssim 1, l1 1, foreground true), and
    with ``area_weight`` each slice's loss times sqrt(its foreground area / the largest in its volume)
    (sMaRtIfy: ssim 1, foreground and area_weight true)."""

    ssim: float = Field(1.0, ge=0)
    l1: float = Field(0.0, ge=0)
    foreground: bool = False
    area_weight: bool = False

    @model_validator(mode="after")
    def _weight_needs_masks(self) -> LossConfig:
        if self.area_weight and not self.foreground:
            raise ValueError("area_weight weighs slices by their foreground area: set foreground true")
        return self


class OptimConfig(Strict):
    """The optimizer and its per-epoch schedule. Defaults: fastMRI's VarNet leaderboard recipe (Adam 3e-4,
    x0.1 at epoch 40); GeekSeek: ``nadam`` 1e-3 with momentum_decay 4e-3 and ``exponential`` 0.96.

    ``step``: a linear warm-up from ``warmup_start_factor`` over ``warmup_epochs``, the full rate until
    ``lr_start_epoch``, then x ``lr_gamma`` every ``lr_step_size`` epochs. sMaRtIfy's baselines: adamw 2e-4,
    weight_decay 0.01, step 11, gamma 0.3 from epoch 5 (cuts at 16 and 27); their experts: warm-up 3 epochs
    from 0.1, step 5, gamma 0.3 from epoch 15 (their SequentialLR of LinearLR, ConstantLR and StepLR).
    """

    name: Literal["adam", "adamw", "nadam"] = "adam"
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum_decay: float = Field(4e-3, ge=0)  # NAdam's psi
    scheduler: Literal["step", "exponential"] = "step"
    lr_step_size: int = Field(40, ge=1)
    lr_gamma: float = Field(0.1, gt=0, le=1)
    lr_start_epoch: int = Field(0, ge=0)
    warmup_epochs: int = Field(0, ge=0)
    warmup_start_factor: float = Field(0.1, gt=0, le=1)

    @model_validator(mode="after")
    def _warmup_first(self) -> OptimConfig:
        if self.lr_start_epoch and self.warmup_epochs > self.lr_start_epoch:
            raise ValueError(f"warmup_epochs {self.warmup_epochs} runs past lr_start_epoch {self.lr_start_epoch}")
        return self

    def factor(self, epoch: int) -> float:
        """The learning rate at ``epoch`` (0-based) as a multiple of ``lr``."""
        if self.scheduler == "exponential":
            return self.lr_gamma**epoch
        if epoch < self.warmup_epochs:
            return self.warmup_start_factor + (1 - self.warmup_start_factor) * epoch / self.warmup_epochs
        return self.lr_gamma ** (max(epoch - self.lr_start_epoch, 0) // self.lr_step_size)


class MriDataConfig(Strict):
    """Which folders train and validate, and which volumes of them. GeekSeek trained on ``[train, val]``
    with no validation; the best checkpoint then follows a training metric (``trainer.monitor:
    train_loss``). ``anatomy`` / ``acceleration`` keep only those volumes (by file name), in training
    and validation alike: an expert of a mixture trains on its class only."""

    train_on: list[Literal["train", "val"]] = ["train"]
    validate_on: Literal["val"] | None = "val"
    anatomy: Literal["brain", "knee"] | None = None
    acceleration: int | None = Field(None, ge=2)

    def keep(self, volumes: list) -> list:
        return [v for v in volumes if (self.anatomy is None or v.anatomy == self.anatomy)
                and (self.acceleration is None or v.acceleration == self.acceleration)]


class MriTrainerConfig(TrainerConfig):
    batch_size: int = Field(1, ge=1)  # files differ in coil count and size; the baseline trains slice by slice


class MriTrain(TrainConfig):
    trainer: MriTrainerConfig = MriTrainerConfig()
    model: MriModelConfig = VarNetConfig()
    data: MriDataConfig = MriDataConfig()
    mask: MaskConfig = MaskConfig()
    augment: AugmentConfig = AugmentConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()

    @field_validator("model", mode="before")
    @classmethod
    def _varnet_by_default(cls, value: Any) -> Any:
        return {"name": "varnet", **value} if isinstance(value, dict) and "name" not in value else value

    @model_validator(mode="after")
    def _monitor_exists(self) -> MriTrain:
        if self.data.validate_on is None and not (self.trainer.monitor or "").startswith("train_"):
            raise ValueError("data.validate_on is null, so there is no val_ssim: set trainer.monitor to a training "
                             "metric (train_loss) and trainer.mode to min")
        return self


class MriPredict(PredictConfig):
    """``batch_size`` slices of one file per forward pass; ``device`` auto picks CUDA when present."""

    split: Literal["leaderboard"] = "leaderboard"
    tta: Literal["none"] = "none"
    batch_size: int = Field(1, ge=1)
    device: str = "auto"

    unhashed = ("batch_size", "num_workers", "device")


def _split_files(split_dir: Path) -> list[Path]:
    """k-space and image files of one split, checked as the readers will need them."""
    volumes = scan_snu(split_dir)
    unnamed = [v.kspace_path for v in volumes if v.anatomy is None]
    if unnamed:
        raise DataError(f"{unnamed[0]}: file name must start with brain_ or knee_ ({len(unnamed)} such files)")
    orphans = sorted({p.name for p in (split_dir / "image").glob("*.h5")} - {v.name for v in volumes})
    if orphans:
        raise DataError(f"{split_dir / 'image' / orphans[0]}: image file without k-space "
                        f"(no {split_dir / 'kspace' / orphans[0]}; {len(orphans)} such files)")
    return [p for v in volumes for p in (v.kspace_path, v.target_path)]


@register_task
class MriTask(Task):
    name = "mri"
    version = "2"  # 2: synthetic HDF5 chunked per slice with fletcher32 checksums
    configs = {"synth": MriSynth, "train": MriTrain, "predict": MriPredict}
    monitor = "val_ssim"
    monitor_mode = "max"

    def synth(self, cfg: MriSynth, out_dir: Path, seed: int) -> None:
        synthesize_fastmri(out_dir, cfg.num_train, cfg.num_val, cfg.num_leaderboard, seed, cfg.height, cfg.width,
                           cfg.target_size, cfg.coils, cfg.slices, progress=cfg.progress,
                           leaderboard_robust=cfg.leaderboard_robust)

    def check_data(self, root: Path) -> list[Path]:
        """A real SNU ``Data/`` root: train/, val/ and leaderboard/acc<N>/, each with kspace/ and image/."""
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: data root not found")
        splits = [*TRAIN_SPLITS, *(f"leaderboard/{acc}" for acc in leaderboard_folders(root / "leaderboard"))]
        return sorted(p for split in splits for p in _split_files(root / split))

    def datasets(self, cfg: MriTrain, data_root: Path, seed: int) -> tuple[SliceDataset, SliceDataset | None]:
        """Train on ``data.train_on`` with the configured masks and augmentation, validate on
        ``data.validate_on`` with deterministic masks (or not at all)."""
        train = _selected(cfg.data, [data_root / split for split in cfg.data.train_on])
        _check_crop(cfg.model.crop_size, train[0])
        m = cfg.mask
        epochs = m.max_epochs or cfg.trainer.max_epochs
        helper = None
        if m.kind == "helper":
            helper = HelperMaskSampler(center_fraction=m.center_fraction, equispaced_share=m.equispaced_share,
                                       schedule=m.schedule, p_max=m.robust_probability, delay=m.delay,
                                       max_epochs=epochs, exp_decay=m.exp_decay)
        augmentation = Augmentation(cfg.augment if cfg.augment.p_max > 0 else None, m.augment.augmenter(),
                                    cfg.trainer.max_epochs)
        loss = cfg.loss
        train_ds = SliceDataset(train, m.kind, helper, augmentation, m.duplicate, loss.foreground, loss.area_weight,
                                m.accelerations)
        if cfg.data.validate_on is None:
            return train_ds, None
        val = _selected(cfg.data, [data_root / cfg.data.validate_on])
        return train_ds, SliceDataset(val, "file" if m.kind == "file" else "fixed", foreground=loss.foreground,
                                      area_weight=loss.area_weight)

    def module(self, cfg: MriTrain) -> MriModule:
        return MriModule(cfg)

    def predict(self, model, train_cfg: MriTrain, cfg: MriPredict, data_root: Path, out_dir: Path) -> list[Path]:
        return reconstruct_leaderboard(model, data_root / "leaderboard", out_dir, batch_size=cfg.batch_size,
                                       num_workers=cfg.num_workers, device=cfg.device)

    def collect(self, router: torch.nn.Module | None, experts: list[tuple[torch.nn.Module, MriTrain]]) -> ExpertSystem:
        """sMaRtIfy's system: each expert serves the (mask group, anatomy, acceleration) it trained on."""
        named: dict[str, torch.nn.Module] = {}
        for i, (model, cfg) in enumerate(experts):
            key = expert_key(*expert_class(cfg, f"collect: experts[{i}]"))
            if key in named:
                raise ConfigError(f"collect: experts[{i}] serves {key}, which another expert serves already")
            named[key] = model
        return ExpertSystem(named, router)

    def expert_score(self, model: torch.nn.Module, train_cfg: MriTrain, data_root: Path, split: str) -> float:
        """Leaderboard SSIM of one expert on its class: ``train`` / ``val`` volumes of its anatomy under its
        masks (the fixed pattern, or robust masks drawn per slice) at its acceleration, or the
        ``leaderboard`` volumes of its anatomy and acceleration whose stored mask the broker sends to it."""
        group, anatomy, acc = expert_class(train_cfg, "collect: expert")
        if split in TRAIN_SPLITS:
            volumes = [v for v in scan_snu(data_root / split) if v.anatomy == anatomy]
            helper = HelperMaskSampler(p_max=1.0) if group == "robust" else None
            dataset = SliceDataset(volumes, "helper" if helper else "fixed", helper, accelerations=[acc])
        elif split == "leaderboard":
            reader = MriReader()
            volumes = [v for v in scan_snu(data_root / "leaderboard" / f"acc{acc}") if v.anatomy == anatomy
                       and is_fixed_pattern(reader.mask(v)) == (group == "fixed")]
            reader.close()
            dataset = SliceDataset(volumes, "file")
        else:
            raise ConfigError(f"collect: select.by: {split!r} is not a split of task 'mri' (train, val, leaderboard)")
        if not volumes:
            raise ConfigError(f"collect: select.by {split!r}: no {anatomy} volume at acc{acc} that the broker "
                              f"sends to the {group} experts")
        return _mean_ssim(model, dataset)

    def evaluate(self, preds: Any, data_root: Path, cfg: Any, out_dir: Path) -> dict[str, float]:
        """2025 leaderboard SSIM per acceleration and total, then the zero-filled input's (``image_input``)
        as the baseline, fastMRI's own per-volume SSIM / PSNR / NMSE, then the reconstruction time and its
        share of the 3,600 s budget."""
        if not isinstance(preds, StageRun):
            raise ConfigError("task 'mri' evaluates a predict stage's reconstruction files; "
                              "point evaluate.predictions at a predict stage")
        leaderboard = data_root / "leaderboard"
        folders = leaderboard_folders(leaderboard)
        score = score_leaderboard(preds.path / RECON_DIR, leaderboard, accelerations=folders)
        zero = score_leaderboard(None, leaderboard, accelerations=folders, recon_key="image_input")
        timing = json.loads(preds.output(TIMING_FILE).read_text())
        routed = ROUTING_FILE in preds.read_manifest().get("outputs", {})
        routing = json.loads(preds.output(ROUTING_FILE).read_text()) if routed else {}
        return {
            "ssim_total": score.total,
            **{f"ssim_{acc}": score.ssim[acc] for acc in folders},
            "zero_filled_total": zero.total,
            **{f"zero_filled_{acc}": zero.ssim[acc] for acc in folders},
            **fastmri_metrics(preds.path / RECON_DIR, leaderboard, folders),
            "inference_s": timing["seconds"],
            "budget_share": timing["budget_share"],
            **(routing_metrics(routing) if routing else {}),
        }

    def report_items(self, view: Any) -> list[Any]:
        """Slices (zero-filled, reconstruction, target, |error|, foreground) with their SSIM, SSIM per volume,
        time against the budget, and the zero-filled baseline (``podium.report.items``)."""
        from podium.tasks.mri.report import report_items  # the report's imports, only for a report

        return report_items(view)


def _mean_ssim(model: torch.nn.Module, dataset: SliceDataset) -> float:
    """The leaderboard SSIM of ``model`` averaged over every item of ``dataset``, one slice at a time."""
    device = next(model.parameters()).device
    total = 0.0
    with torch.inference_mode():
        for i in range(len(dataset)):
            item = dataset[i]
            out = model(item["masked_kspace"][None].to(device), item["mask"][None].to(device))[0].float().cpu()
            total += float(leaderboard_ssim(out, item["target"], item["max_value"], item["anatomy"]))
    return total / len(dataset)


def _selected(data: MriDataConfig, folders: list[Path]) -> list:
    """The volumes of ``folders`` that ``data.anatomy`` / ``data.acceleration`` keep; none is an error."""
    volumes = [v for folder in folders for v in scan_snu(folder)]
    kept = data.keep(volumes)
    if not kept:
        raise ConfigError(f"data: no volume in {', '.join(map(str, folders))} is {data.anatomy or 'any anatomy'} "
                          f"at {f'acc{data.acceleration}' if data.acceleration else 'any acceleration'} "
                          f"({len(volumes)} volumes)")
    return kept


def _check_crop(crop_size: int | tuple[int, int] | None, volume) -> None:
    """The model's output crop must be the target's size, or the loss compares misaligned images."""
    reader = MriReader()
    try:
        shape = tuple(reader.target(volume, 0).shape)
    finally:
        reader.close()
    crop = (crop_size, crop_size) if isinstance(crop_size, int) else crop_size
    if crop is None or tuple(crop) != shape:
        raise ConfigError(f"model.crop_size: {crop_size!r} does not match the {shape[0]} x {shape[1]} target "
                          f"images of {volume.target_path}; set it to {shape[0]}")
