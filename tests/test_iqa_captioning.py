"""Caption training (podium.tasks.iqa.captioning): XE then SCST on a toy grammar, the schedule, RAdam's start,
accumulation, the label-smoothed loss, the SCST reward and baseline, and vocabularies in checkpoints.

The toy set: an image's 4 x 16 features carry one-hot codes of a colour, a level and a flaw (plus noise),
and its two comments name them in two fixed sentence shapes, so a caption is a function of the features.
"""

from __future__ import annotations

import itertools
import math
import pickle
import re
from collections.abc import Iterator
from pathlib import Path

import h5py
import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from PIL import Image

from podium.engine.seeding import SampleKey
from podium.engine.threads import torch_threads
from podium.engine.trainer import DataModule, TrainerConfig
from podium.errors import ConfigError
from podium.metrics.caption import cider_d
from podium.recipe import validate
from podium.tasks.iqa.caption_checkpoints import VocabularyMapping, decode_vocabulary, encode_vocabulary
from podium.tasks.iqa.caption_data import CaptionedImages, CaptionPairs, FeatureStore, trim_captions
from podium.tasks.iqa.caption_losses import (
    ScstReward,
    label_smoothed_xe,
    sampled_words,
    scst_advantages,
    scst_loss,
)
from podium.tasks.iqa.caption_optim import RAdam, custom_warmup_anneal
from podium.tasks.iqa.captioning import (
    CaptionModule,
    CaptionTrain,
    caption_images,
    datasets,
    format_caption,
    load_captioner,
    training_vocabulary,
)
from podium.tasks.iqa.data import TrainImage, Vocabulary, build_vocabulary, clean_caption
from podium.tasks.iqa.models.expansionnet_v2 import ExpansionNetV2

COLOURS = ("red", "green", "blue", "gray")
LEVELS = ("slightly", "very")
FLAWS = ("blurry", "noisy", "dark")
TOKENS, DIM = 4, 16

TINY = {
    "kind": "train",
    "model": {"max_seq_len": 16, "d_model": 32, "N_enc": 1, "N_dec": 1, "ff": 64, "num_heads": 2,
              "num_exp_enc_list": [4, 8], "num_exp_dec": 4, "img_feature_dim": DIM, "enc_drop": 0.0,
              "dec_drop": 0.0, "enc_input_drop": 0.0, "dec_input_drop": 0.0, "drop_other": 0.0},
    "vocabulary": {"max_words": 12},
    "optim": {"lr": 3e-3, "warmup": 20, "anneal_coeff": 0.8, "anneal_every_epoch": 4},
    "decode": {"beam_size": 2, "max_len": 14},
    "scst": {"num_samples": 5, "max_len": 12},
}


def tiny_cfg(**overrides) -> CaptionTrain:
    raw = {**TINY, **overrides}
    for key in ("model", "vocabulary", "optim", "decode", "scst"):
        raw[key] = {**TINY.get(key, {}), **overrides.get(key, {})}
    return validate(CaptionTrain, raw, "test")


def comments(colour: int, level: int, flaw: int) -> tuple[str, str]:
    c, lv, f = COLOURS[colour], LEVELS[level], FLAWS[flaw]
    return f"The photo is {lv} {f}, with a {c} tint.", f"A {c} tint and a {lv} {f} look"


def toy_images(copies: int, offset: int) -> tuple[list[TrainImage], np.ndarray]:
    """``copies`` images per (colour, level, flaw) and their features (deterministic noise)."""
    rng = np.random.default_rng(offset)
    images, features = [], []
    combos = [combo for _ in range(copies) for combo in itertools.product(range(4), range(2), range(3))]
    for k, (c, lv, f) in enumerate(combos):
        x = rng.normal(0, 0.1, (TOKENS, DIM)).astype(np.float32)
        x[0, c] += 1
        x[1, 4 + lv] += 1
        x[2, 6 + f] += 1
        name = f"img{offset + k:04d}"
        images.append(TrainImage(name, Path(f"{name}.jpg"), 5.0, comments(c, lv, f)))
        features.append(x)
    return images, np.stack(features)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is fastest and does not contend for shared cores."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict:
    train, train_x = toy_images(4, 0)
    val, val_x = toy_images(1, 1000)
    path = tmp_path_factory.mktemp("store") / "features.h5"
    with h5py.File(path, "w") as f:
        for image, x in zip([*train, *val], [*train_x, *val_x], strict=True):
            f[f"{image.name}_features"] = x
    return {"train": train, "val": val, "path": path, "vocab": build_vocabulary(c for i in train for c in i.comments)}


def fit(module: CaptionModule, train, val, epochs: int, batch_size: int, **trainer_kwargs) -> L.Trainer:
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        deterministic=True, **trainer_kwargs)
    trainer.fit(module, datamodule=DataModule(train, val, TrainerConfig(batch_size=batch_size), seed=0))
    return trainer


def val_cider(module: CaptionModule, toy: dict) -> float:
    """CIDEr-D of the module's beam-search captions on the toy validation images, outside Lightning."""
    module.eval()
    _, val = datasets(module.cfg, toy["path"], toy["train"], toy["val"], module.vocabulary)
    inputs = torch.stack([val[i]["inputs"] for i in range(len(val))])
    captions = caption_images(module.model, module.vocabulary, inputs, beam_size=2, max_len=14)
    return float(cider_d([clean_caption(c) for c in captions], val.references).mean())


class EpochMetrics(Callback):
    """One logged metric at the end of every training epoch."""

    def __init__(self, name: str) -> None:
        self.name, self.values = name, []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.values.append(float(trainer.callback_metrics[self.name]))


@pytest.fixture(scope="module")
def xe_run(toy) -> dict:
    """Six epochs of XE on the toy set (about 1.5 s)."""
    with torch_threads(1):
        L.seed_everything(0, verbose=False)
        module = CaptionModule(tiny_cfg(), toy["vocab"])
        train, val = datasets(module.cfg, toy["path"], toy["train"], toy["val"], toy["vocab"])
        losses = EpochMetrics("train_loss")
        trainer = fit(module, train, val, epochs=6, batch_size=16, callbacks=[losses])
    return {"module": module, "trainer": trainer, "losses": losses.values,
            "cider": float(trainer.callback_metrics["val_cider"])}


def test_xe_learns_the_toy_grammar(xe_run, toy):
    losses = xe_run["losses"]
    assert all(b < a for a, b in itertools.pairwise(losses)) and losses[-1] < 0.2 * losses[0]
    # a caption in either reference shape scores 7.44 here; a wrong word costs much more
    assert xe_run["cider"] > 7.0
    assert xe_run["cider"] == pytest.approx(val_cider(xe_run["module"], toy), abs=1e-5)  # as logged (float32)
    trainer, o = xe_run["trainer"], xe_run["module"].cfg.optim
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(o.learning_rate(trainer.global_step, 12))


def test_scst_after_xe_raises_cider(xe_run, toy):
    """Six XE epochs leave a few toy captions wrong; two SCST epochs raise the sampled reward and bring every
    validation caption to the ceiling (the score of a reference itself)."""
    _, val = datasets(tiny_cfg(), toy["path"], toy["train"], toy["val"], toy["vocab"])
    ceiling = float(cider_d([refs[0] for refs in val.references], val.references).mean())
    assert xe_run["cider"] < ceiling - 0.1
    L.seed_everything(0, verbose=False)
    scst = CaptionModule(tiny_cfg(mode="scst", optim={"lr": 1e-3, "warmup": 1}), toy["vocab"])
    scst.load_state_dict(xe_run["module"].state_dict())
    train, val = datasets(scst.cfg, toy["path"], toy["train"], toy["val"], toy["vocab"])
    assert isinstance(train, CaptionedImages) and len(train) == len(toy["train"])
    rewards = EpochMetrics("train_reward")
    trainer = fit(scst, train, val, epochs=2, batch_size=8, callbacks=[rewards])
    assert rewards.values[1] > rewards.values[0]
    assert float(trainer.callback_metrics["val_cider"]) == pytest.approx(ceiling, abs=1e-5)


def test_schedule_is_the_original_formula():
    """lr(it) = max((it >= W) * min_lr, lr / max(W - it, 1) * coeff ** (it // (steps_per_epoch * every)))."""
    kwargs = dict(lr=8e-3, warmup=4, anneal_coeff=0.5, anneal_every_epoch=1.5, steps_per_epoch=4, min_lr=1e-4)
    expected = {0: 8e-3 / 4, 1: 8e-3 / 3, 2: 8e-3 / 2, 3: 8e-3, 4: 8e-3, 5: 8e-3, 6: 4e-3, 11: 4e-3, 12: 2e-3,
                18: 1e-3, 24: 5e-4, 30: 2.5e-4, 36: 1.25e-4, 42: 1e-4, 100: 1e-4}
    assert {it: custom_warmup_anneal(it, **kwargs) for it in expected} == pytest.approx(expected, rel=1e-12)
    # before the end of warm-up the floor does not apply
    assert custom_warmup_anneal(0, **{**kwargs, "warmup": 1000}) == pytest.approx(8e-6)


def test_radam_holds_the_first_five_steps_then_matches_torch():
    """The original's RAdam does not move a weight while rho_t < 5 (steps 1..5 at beta2 0.98); torch's
    takes momentum-SGD steps there. From step 6 on both make the same update."""
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 4, generator=g) for _ in range(8)]
    ours, theirs = torch.zeros(3, 4, requires_grad=True), torch.zeros(3, 4, requires_grad=True)
    opt = RAdam([ours], lr=0.1)
    ref = torch.optim.RAdam([theirs], lr=0.1, betas=(0.9, 0.98), eps=1e-9)
    for step, grad in enumerate(grads, start=1):
        before_ours, before_theirs = ours.detach().clone(), theirs.detach().clone()
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        opt.step()
        ref.step()
        if step <= 5:
            assert torch.equal(ours, before_ours)
            assert not torch.equal(theirs, before_theirs)
        else:
            torch.testing.assert_close(ours - before_ours, theirs - before_theirs, rtol=1e-5, atol=1e-8)
    assert opt.state_dict()["state"][0]["step"] == 8


def test_accumulation_divides_the_loss(toy, tmp_path):
    """Two micro-batches of b under accumulate_grad_batches 2 give the gradient of one batch of 2b."""
    one_shape = [TrainImage(i.name, i.path, i.mos, i.comments[:1]) for i in toy["train"]]  # as many tokens each

    class Grads(Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
            self.grads = {n: p.grad.clone() for n, p in pl_module.named_parameters()}

    results = []
    for batch_size, accumulate in ((8, 2), (16, 1)):
        L.seed_everything(0, verbose=False)
        module = CaptionModule(tiny_cfg(), toy["vocab"])
        train, _ = datasets(module.cfg, toy["path"], one_shape, [], toy["vocab"])
        grads = Grads()
        fit(module, train, None, epochs=1, batch_size=batch_size, max_steps=1, accumulate_grad_batches=accumulate,
            callbacks=[grads], limit_val_batches=0)
        results.append(grads.grads)
    assert results[0].keys() == results[1].keys()
    for name, grad in results[0].items():
        torch.testing.assert_close(grad, results[1][name], rtol=1e-5, atol=1e-7, msg=name)


def test_label_smoothed_xe_by_hand():
    """0.1 / (V - 1) on every class (PAD too), 0.9 on the target, KL summed over non-PAD labels / their count."""
    logits = torch.tensor([[[2.0, 0.0, -1.0, 0.5], [0.1, 0.2, 0.3, 0.4], [1.0, 1.0, 1.0, 1.0]]])
    labels = torch.tensor([[2, 0, 1]])  # PAD = 1
    log_probs = logits.log_softmax(-1)
    value = label_smoothed_xe(log_probs, labels, pad=1, smoothing=0.1)
    target = torch.full((1, 3, 4), 0.1 / 3).scatter(-1, labels.unsqueeze(-1), 0.9)
    kl = F.kl_div(log_probs, target, reduction="none").sum(-1) * (labels != 1)
    assert value.item() == pytest.approx(kl.sum().item() / 2, rel=1e-6)
    # the first token by hand: sum_c t_c (log t_c - log p_c)
    p = [math.exp(x) for x in (2.0, 0.0, -1.0, 0.5)]
    lp = [math.log(x / sum(p)) for x in p]
    t = [0.1 / 3, 0.1 / 3, 0.9, 0.1 / 3]
    first = sum(tc * (math.log(tc) - lpc) for tc, lpc in zip(t, lp, strict=True))
    assert kl[0, 0].item() == pytest.approx(first, rel=1e-6)
    assert label_smoothed_xe(log_probs, labels, pad=1, smoothing=0.0).item() == pytest.approx(
        -(lp[2] + log_probs[0, 1, 0].item()) / 2, rel=1e-6)


def test_scst_reward_and_baseline_by_hand():
    # baseline of each sample: the mean of the other four
    rewards = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    advantages = scst_advantages(rewards)
    assert advantages.tolist() == [[1 - 3.5, 2 - 3.25, 3 - 3.0, 4 - 2.75, 5 - 2.5]]
    log_probs = torch.zeros(1, 5, 3)
    log_probs[0, :, 1] = -torch.arange(1.0, 6.0)  # sum_t -log p_t = 1..5
    assert scst_loss(log_probs, advantages).item() == pytest.approx((-2.5 * 1 - 1.25 * 2 + 0 + 1.25 * 4 + 2.5 * 5) / 5)
    # CIDEr-D with EOS on both sides, df over the training references: "a b EOS" against its own reference has
    # cosine 1 for n = 1..3 (EOS is in every image: idf 0), no 4-gram: 10 * 3 / 4
    reward = ScstReward([[["a", "b"]], [["c", "d"]]])
    rewards = reward([["a", "b", "EOS"], ["c", "d", "EOS"]], [[["a", "b"]], [["a", "b"]]])
    assert rewards.tolist() == pytest.approx([7.5, 0.0])
    words = ("EOS", "PAD", "SOS", "UNK", "a", "b")
    assert sampled_words([[[2, 4, 5, 0], [2, 5, 5]]], words) == [["a", "b", "EOS"], ["b", "b"]]


def test_pairs_collate_to_the_pads_expansionnet_takes(toy):
    """Fixed-size items (default collate), cut to the batch's longest caption: pads count the padded ends,
    and a padded row decodes as it does alone."""
    cfg = tiny_cfg()
    train, _ = datasets(cfg, toy["path"], toy["train"][:2], [], toy["vocab"])
    assert isinstance(train, CaptionPairs) and len(train) == 4
    items = [train[SampleKey(1, 7)], train[0]]  # 8 words, then 9
    assert [i["length"] for i in items] == [10, 11]
    batch = torch.utils.data.default_collate(items)
    tokens, pads = trim_captions(batch["tokens"], batch["length"])
    assert tokens.shape == (2, 11) and pads.tolist() == [1, 0]
    assert tokens[0, 10].item() == toy["vocab"].pad and tokens[0, 9].item() == toy["vocab"].eos
    model = CaptionModule(cfg, toy["vocab"]).model.eval()
    together = model(batch["inputs"], tokens[:, :-1], token_pads=pads)
    alone = model(batch["inputs"][:1], tokens[:1, :9])
    torch.testing.assert_close(together[:1, :9], alone, rtol=1e-5, atol=1e-6)


def test_feature_store_checks_names_and_reopens_per_process(toy, tmp_path):
    with pytest.raises(Exception, match="no dataset 'nope_features'"):
        FeatureStore(toy["path"], ["img0000", "nope"])
    store = FeatureStore(toy["path"], [i.name for i in toy["train"]])
    first = store(toy["train"][0])
    assert first.shape == (TOKENS, DIM) and first.dtype == torch.float32
    clone = pickle.loads(pickle.dumps(store))  # what a DataLoader worker receives: no open handle
    assert clone._file is None and torch.equal(clone(toy["train"][0]), first)
    with pytest.raises(ConfigError, match="extract stage"):
        datasets(tiny_cfg(), None, toy["train"], [], toy["vocab"])


def test_vocabulary_travels_in_the_checkpoint(xe_run, toy, tmp_path):
    module, trainer = xe_run["module"], xe_run["trainer"]
    path = tmp_path / "xe.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert decode_vocabulary(checkpoint["state_dict"]["_extra_state"]) == toy["vocab"]
    model, vocabulary = load_captioner(path)  # the file alone
    assert vocabulary == toy["vocab"] and isinstance(model, ExpansionNetV2) and not model.training
    _, val = datasets(module.cfg, toy["path"], toy["train"], toy["val"], toy["vocab"])
    inputs = torch.stack([val[i]["inputs"] for i in range(4)])
    module.eval()
    expected = caption_images(module.model, toy["vocab"], inputs, beam_size=2, max_len=14)
    assert caption_images(model, vocabulary, inputs, beam_size=2, max_len=14) == expected
    assert expected[0] == "The photo is slightly blurry with a red tint."
    odd = Vocabulary(sorted(["EOS", "PAD", "SOS", "UNK", "\n", "été", '"']))  # any word survives the encoding
    assert decode_vocabulary(encode_vocabulary(odd)) == odd


def test_another_vocabulary_maps_shared_words_only_when_asked(xe_run, toy):
    """A checkpoint with other words loads with vocabulary.map_init: shared rows copied, the count of new ones
    reported; without it, an error that says what to set."""
    words = sorted({*toy["vocab"].words, "purple", "hazy"} - {"gray", "dark"})
    other = Vocabulary(words)
    state = xe_run["module"].state_dict()
    with pytest.raises(ConfigError, match="vocabulary.map_init"):
        CaptionModule(tiny_cfg(), other).load_state_dict(state)
    module = CaptionModule(tiny_cfg(vocabulary={"map_init": True}), other)
    fresh = module.model.vocab_linear.weight.detach().clone()
    with pytest.warns(UserWarning, match="2 new"):
        module.load_state_dict(state)
    assert module.vocabulary_mapping == VocabularyMapping(shared=len(words) - 2, new=2, dropped=2)
    old = xe_run["module"].model.vocab_linear.weight
    new = module.model.vocab_linear.weight
    for word in ("red", "EOS", "tint"):
        assert torch.equal(new[other.encode([word])[0]], old[toy["vocab"].encode([word])[0]])
    purple = other.encode(["purple"])[0]
    assert torch.equal(new[purple], fresh[purple])
    assert decode_vocabulary(module.state_dict()["_extra_state"]) == other
    with pytest.raises(ConfigError, match="init_state 'weights'"):  # per-word optimizer moments cannot be mapped
        module.on_load_checkpoint({"state_dict": state, "optimizer_states": [{"state": {}}]})


def test_original_checkpoint_loads_with_its_own_vocabulary(toy, tmp_path):
    """A released checkpoint (model_state_dict, end to end: swin_transf.* dropped for features) with its
    vocabulary pickle; the COCO words the toy lacks are dropped, the toy's missing ones counted new."""
    coco = sorted({"EOS", "PAD", "SOS", "UNK", "1", "a", "cat", "red", "the", "photo", "tint"})
    original = ExpansionNetV2(len(coco), **{k: v for k, v in tiny_cfg().model.model_dump().items()
                                          if k not in ("backbone", "backbone_kwargs", "image_size")})
    state = {**original.state_dict(), "swin_transf.patch_embed.proj.weight": torch.zeros(1)}
    torch.save({"model_state_dict": state, "optimizer_state_dict": {}}, tmp_path / "xe_model.pth")
    with open(tmp_path / "tokens.pickle", "wb") as f:
        pickle.dump({"idx2word_list": coco, "word2idx_dict": {w: i for i, w in enumerate(coco)}, "sos_str": "SOS",
                     "eos_str": "EOS"}, f)
    pretrained = {"path": str(tmp_path / "xe_model.pth"), "vocabulary": str(tmp_path / "tokens.pickle")}
    with pytest.raises(ConfigError, match="map_init"):
        CaptionModule(tiny_cfg(pretrained=pretrained), toy["vocab"]).setup("fit")
    module = CaptionModule(tiny_cfg(pretrained=pretrained, vocabulary={"map_init": True}), toy["vocab"])
    with pytest.warns(UserWarning, match="dropped"):
        module.setup("fit")
    shared = len(set(coco) & set(toy["vocab"].words))
    assert module.vocabulary_mapping == VocabularyMapping(shared, len(toy["vocab"]) - shared, len(coco) - shared)
    assert torch.equal(module.model.input_linear.weight, original.input_linear.weight)
    red = module.model.out_embedder.embed.weight[toy["vocab"].encode(["red"])[0]]
    assert torch.equal(red, original.out_embedder.embed.weight[coco.index("red")])
    with open(tmp_path / "evil.pickle", "wb") as f:
        pickle.dump({"idx2word_list": Path("x")}, f)
    evil = {**pretrained, "vocabulary": str(tmp_path / "evil.pickle")}
    with pytest.raises(Exception, match="refusing to load"):
        CaptionModule(tiny_cfg(pretrained=evil, vocabulary={"map_init": True}), toy["vocab"]).setup("fit")


def test_config_checks_lengths_and_weight_sources(tmp_path):
    with pytest.raises(ConfigError, match="max_words"):
        tiny_cfg(vocabulary={"max_words": 20})
    with pytest.raises(ConfigError, match="scst.max_len"):
        tiny_cfg(scst={"max_len": 30})
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    with pytest.raises(ConfigError, match="vocabulary file"):
        tiny_cfg(pretrained={"path": str(weights)})
    with pytest.raises(ConfigError, match="both set the weights"):
        tiny_cfg(init="xe@best", pretrained={"path": str(weights), "vocabulary": str(weights)})
    with pytest.raises(ConfigError, match="no backbone"):
        tiny_cfg(pretrained={"path": str(weights), "parts": "backbone"})


def test_caption_text_is_formatted_as_the_seed():
    assert format_caption(["the", "photo", "is", "dark"]) == "The photo is dark."
    assert format_caption(["UNK", "tint"]) == "Unk tint."
    assert format_caption([]) == ""
    assert training_vocabulary(tiny_cfg(), [TrainImage("x", Path("x"), 1.0, ("A dark, dark photo!",))]).words == (
        "EOS", "PAD", "SOS", "UNK", "a", "dark", "photo")


TINY_SWIN = {"backbone": "swin_tiny_patch4_window7_224", "image_size": 64,
             "backbone_kwargs": {"window_size": 4, "embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]}}


def microsoft_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm Swin keys -> the original's (downsampling at the end of the previous stage)."""
    return {re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", k): v
            for k, v in state.items()}


def test_end_to_end_trains_the_backbone_and_takes_a_partial_body(toy, tmp_path):
    """Images through a (tiny) Swin: XE reaches the backbone; a partial checkpoint's body plus an original
    end-to-end checkpoint's backbone (the seed's XE end-to-end stage) make the model; a partial model takes
    the body of an end-to-end one."""
    rng = np.random.default_rng(0)
    images = []
    for image in toy["train"][:4]:
        path = tmp_path / image.path
        Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(path)
        images.append(TrainImage(image.name, path, image.mos, image.comments))
    source = tmp_path / "coco_e2e.pth"
    cfg = tiny_cfg(scope="end_to_end", model=TINY_SWIN)
    original = CaptionModule(cfg, toy["vocab"]).model
    swin = microsoft_layout(original.swin_transf.state_dict())
    torch.save({"model_state_dict": {f"swin_transf.{k}": v for k, v in swin.items()}}, source)

    train, val = datasets(cfg, None, images[:3], images[3:], toy["vocab"])
    assert train[0]["inputs"].shape == (3, 64, 64)
    module = CaptionModule(cfg, toy["vocab"])
    module.xe_loss(torch.utils.data.default_collate([train[i] for i in range(4)])).backward()
    assert module.model.swin_transf.patch_embed.proj.weight.grad.abs().sum() > 0

    partial = CaptionModule(tiny_cfg(model={"img_feature_dim": 128}), toy["vocab"])
    with pytest.raises(ConfigError, match="parts 'backbone'"):
        CaptionModule(cfg, toy["vocab"]).load_state_dict(partial.state_dict())
    seeded = CaptionModule(tiny_cfg(scope="end_to_end", model=TINY_SWIN, init="xe_partial@best",
                                    pretrained={"path": str(source), "parts": "backbone"}), toy["vocab"])
    seeded.load_state_dict(partial.state_dict())  # what `init:` does, before fit
    seeded.setup("fit")  # the backbone from the original checkpoint
    torch.testing.assert_close(seeded.model.swin_transf.state_dict(), original.swin_transf.state_dict())
    assert torch.equal(seeded.model.vocab_linear.weight, partial.model.vocab_linear.weight)

    body = CaptionModule(tiny_cfg(model={"img_feature_dim": 128}), toy["vocab"])
    body.load_state_dict(seeded.state_dict())
    assert torch.equal(body.model.input_linear.weight, seeded.model.input_linear.weight)
