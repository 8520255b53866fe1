"""``extract``: a frozen backbone over a split of the task's images into an HDF5 feature store.

One dataset ``{item}_features`` per image (``engine.feature_store``): the backbone's tokens (``pool:
none``; Swin-L at 384 px gives the 144 x 1536 that ExpansionNet v2 reads), or one pooled vector (``pool:
mean`` over the tokens, or ``head``: the model's own pooling, e.g. a ViT's class token), which
``tta: hflip`` averages over the image and its mirror (the MOS regressors' input).

The backbone is a timm model built offline (``backbone:``, weights from a local file) or the one inside a
trained model (``model: stage@best|@last|@epoch=N``, through the task's ``trained_backbone``: the seed's
"re-extract features from the end-to-end model"). Its weights are in the stage hash either way (the
file's sha256, recorded in the config when the recipe loads, or the model stage's hash): new weights make
a new store, the same weights reuse the finished one. A backbone without weights is seeded by the stage.

Commits of ``commit_every`` images: features are written in place, fsynced, then the commit (its end and
the sha256 of its bytes) goes into the manifest. A killed run resumes after its last commit whose bytes
still verify, and ends with the same bytes as an uninterrupted run; the file's sha256 is recorded last.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from podium.engine.backbones import LocalWeights, TimmName, backbone_tokens, create_timm_model
from podium.engine.feature_store import STORE, Layout, StoreWriter, create_store, region_sha256, store_offsets
from podium.engine.progress import progress_bar
from podium.engine.seeding import seeded
from podium.ensemble.tta import tta_predict
from podium.errors import ConfigError
from podium.recipe import Ref, StageConfig, Strict
from podium.registry import CHECKPOINT_KINDS, get_task, register_stage
from podium.store import remove_stale_temps, sha256_file

AUTOCAST = {"32-true": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def weights_sha256(path: str) -> str:
    """A weight file's sha256, hashed once per process while its size and mtime stay the same."""
    st = Path(path).stat()
    return _file_sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


class TimmBackbone(Strict):
    """A timm backbone without its head; ``kwargs`` go to ``timm.create_model``.

    A tiny Swin with the real 12 x 12 grid for tests and tiny profiles: ``name:
    swin_tiny_patch4_window7_224, kwargs: {img_size: 384, window_size: 12, embed_dim: 8, depths: [1, 1,
    1, 1], num_heads: [1, 1, 1, 1]}`` (144 tokens of 64, 81k parameters).
    """

    name: TimmName = "swin_large_patch4_window12_384"
    pretrained_file: LocalWeights = None
    sha256: str | None = None  # of pretrained_file: filled in when the recipe loads; a given value must match
    kwargs: dict[str, Any] = {}

    @model_validator(mode="after")
    def _pin_weights(self) -> TimmBackbone:
        """The weights' digest joins the config, hence the stage hash: a changed file is a new store."""
        if self.pretrained_file is None:
            if self.sha256 is not None:
                raise ValueError("sha256 is the digest of pretrained_file; give the file too")
            return self
        found = weights_sha256(self.pretrained_file)
        if self.sha256 is not None and self.sha256 != found:
            raise ValueError(f"{self.pretrained_file} has sha256 {found}, the recipe pins {self.sha256}")
        self.sha256 = found
        return self


class ExtractConfig(StageConfig):
    kind: Literal["extract"] = "extract"
    backbone: TimmBackbone = TimmBackbone()
    model: str | None = None  # a trained model's backbone (stage@best|@last|@epoch=N) instead of `backbone`
    split: str = "all"  # the task's split names
    image_size: int = Field(384, ge=16)
    pool: Literal["none", "mean", "head"] = "none"
    tta: Literal["none", "hflip"] = "none"
    dtype: Literal["float16", "float32"] = "float32"
    precision: Literal["32-true", "bf16-mixed", "16-mixed"] = "32-true"
    batch_size: int = Field(16, ge=1)
    commit_every: int = Field(1024, ge=1)  # images per commit: at most this much work is lost to a kill
    num_workers: int = Field(0, ge=0)
    device: str = "auto"  # auto: the GPU when there is one

    # the weights are identified by backbone.sha256, never by where their file lies
    unhashed = ("batch_size", "commit_every", "num_workers", "device", "backbone.pretrained_file")

    @model_validator(mode="after")
    def _consistent(self) -> ExtractConfig:
        if self.model is not None and "backbone" in self.model_fields_set:
            raise ValueError("give backbone: (a timm model) or model: (a trained model's backbone), not both")
        if self.tta != "none" and self.pool == "none":
            raise ValueError("tta: hflip averages pooled features; a mirrored image's tokens are not the "
                             "image's (set pool: mean or head)")
        return self

    def references(self):
        return [("model", self.model, CHECKPOINT_KINDS)] if self.model else []


def timm_backbone(backbone: TimmBackbone, seed: int) -> torch.nn.Module:
    """An extract stage's timm backbone, headless: its weights file's, or seeded ones without a file, so
    that a train stage can rebuild the very backbone a store was extracted with (IQA end to end)."""
    with seeded(seed):
        return create_timm_model(backbone.name, backbone.pretrained_file, num_classes=0, **backbone.kwargs)


def frozen_backbone(ctx) -> torch.nn.Module:
    """The stage's backbone in eval mode without gradients: timm's (seeded when it has no weights) or
    the one the task finds inside the referenced trained model."""
    cfg = ctx.cfg
    if cfg.model is not None:
        ref = Ref.parse(cfg.model, f"stages.{ctx.name}.model")
        model, train_cfg = ctx.model(ref)
        backbone = get_task(ctx.recipe.stages[ref.stage].task).trained_backbone(model, train_cfg)
    else:
        backbone = timm_backbone(cfg.backbone, ctx.seed)
    return backbone.eval().requires_grad_(False)


def encoder(backbone: torch.nn.Module, cfg: ExtractConfig,
            device: torch.device) -> Callable[[torch.Tensor], np.ndarray]:
    """Images -> float32 features per image: tokens, or pooled vectors averaged over the TTA views."""

    def features(images: torch.Tensor) -> torch.Tensor:
        if cfg.pool == "head":
            return backbone.forward_head(backbone.forward_features(images), pre_logits=True)
        tokens = backbone_tokens(backbone, images)
        return tokens.mean(1) if cfg.pool == "mean" else tokens

    autocast = AUTOCAST[cfg.precision]

    def encode(images: torch.Tensor) -> np.ndarray:
        mixed = torch.autocast(device.type, autocast) if autocast else contextlib.nullcontext()
        with torch.inference_mode(), mixed:
            return tta_predict(features, images.to(device), cfg.tta).float().cpu().numpy()

    return encode


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"device: {name!r} is not a torch device ({e})") from None


def verified_commits(ctx, path: Path, layout: Layout, offsets: list[int], commits: list[dict]) -> list[dict]:
    """The recorded commits whose bytes the file still holds, up to the first that it does not."""
    good, start = [], 0
    for commit in commits:
        if region_sha256(path, layout, offsets, start, commit["end"]) != commit["sha256"]:
            ctx.warn(f"{path}: items {start}..{commit['end'] - 1} differ from their commit; extracting again "
                     "from there")
            break
        good.append(commit)
        start = commit["end"]
    return good


def open_store(ctx, path: Path, layout: Layout) -> tuple[list[int], list[dict]]:
    """(item offsets, verified commits): the store of an earlier attempt with this layout, or a new one."""
    remove_stale_temps(path.parent)  # a layout whose creation a kill interrupted
    state = ctx.run.read_manifest().get("extract", {})
    offsets = store_offsets(path, layout) if state.get("layout") == layout.digest() else None
    if offsets is None:
        offsets, commits = create_store(path, layout), []
    else:
        commits = verified_commits(ctx, path, layout, offsets, state.get("commits", []))
    ctx.run.update_manifest(extract={"layout": layout.digest(), "commits": commits})
    return offsets, commits


def commit_plan(start: int, total: int, commit_every: int, batch_size: int) -> tuple[list[list[int]], set[int]]:
    """(batches of item indices from ``start``, the item counts at which to commit). Batches never straddle
    a commit, so what each batch holds (and the bits of batched computation) does not depend on where an
    earlier attempt stopped."""
    batches, ends = [], set()
    for begin in range(start, total, commit_every):
        end = min(begin + commit_every, total)
        batches += [list(range(i, min(i + batch_size, end))) for i in range(begin, end, batch_size)]
        ends.add(end)
    return batches, ends


@register_stage("extract", ExtractConfig)
def run(ctx) -> dict:
    cfg = ctx.cfg
    ids, images = ctx.task.extract_items(cfg, ctx.data_root, cfg.split)
    device = resolve_device(cfg.device)
    encode = encoder(frozen_backbone(ctx).to(device), cfg, device)
    probe = encode(images[0][None])  # the features' shape, before the layout exists
    source = cfg.model or cfg.backbone.name
    layout = Layout(tuple(ids), probe.shape[1:], np.dtype(cfg.dtype).newbyteorder("<").str,
                    {"backbone": source, "pool": cfg.pool, "tta": cfg.tta, "image_size": cfg.image_size})
    path = ctx.run.path / STORE
    offsets, commits = open_store(ctx, path, layout)
    done = commits[-1]["end"] if commits else 0
    if done:
        ctx.info(f"resuming after {done} of {len(ids)} committed images")
    batches, ends = commit_plan(done, len(ids), cfg.commit_every, cfg.batch_size)
    loader = torch.utils.data.DataLoader(images, batch_sampler=batches, num_workers=cfg.num_workers)
    digest, index = hashlib.sha256(), done
    with StoreWriter(path, layout, offsets) as writer, progress_bar() as bar:
        task = bar.add_task(f"extract {ctx.name}", total=len(ids), completed=done)
        for batch in loader:
            for features in encode(batch):
                digest.update(writer.write(index, features))
                index += 1
            bar.advance(task, len(batch))
            if index in ends:
                writer.sync()
                commits.append({"end": index, "sha256": digest.hexdigest()})
                ctx.run.update_manifest(extract={"layout": layout.digest(), "commits": commits})
                digest = hashlib.sha256()
    ctx.run.record_outputs([path])
    ctx.info(f"{len(ids)} images -> {path.name}: {source}, {layout.shape} {cfg.dtype} per image")
    return {"items": len(ids), "shape": list(layout.shape), "dtype": cfg.dtype}
