"""ExpansionNet v2: the original's state-dict names, the layers' formulas, decoding, ensembles, Swin keys."""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

from podium.engine.threads import torch_threads
from podium.errors import ConfigError
from podium.tasks.iqa.models import create_model, model_names
from podium.tasks.iqa.models.decoding import CaptionEnsemble, Captioner
from podium.tasks.iqa.models.expansionnet_v2 import (
    DynamicExpansionBlock,
    ExpansionNetV2,
    ExpansionNetV2E2E,
    StaticExpansionBlock,
    body_state_dict,
    convert_end_to_end_state_dict,
    swin_keys_to_timm,
)

VOCAB, SOS, EOS = 11, 1, 2
TINY = dict(vocab_size=VOCAB, max_seq_len=9, d_model=8, N_enc=2, N_dec=1, ff=12, num_heads=2,
            num_exp_enc_list=(2, 3), num_exp_dec=4, img_feature_dim=6)
TINY_SWIN = dict(embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2))  # the real 384 px / window 12 grid


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is fastest and does not contend for shared cores."""
    with torch_threads(1):
        yield


def tiny(seed: int = 0, eos_bias: float = 0.0, **kwargs) -> ExpansionNetV2:
    """A tiny body in eval mode with random non-default LayerNorms and biases, so every parameter matters."""
    torch.manual_seed(seed)
    model = ExpansionNetV2(**{**TINY, **kwargs})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
        model.vocab_linear.bias[EOS] += eos_bias
    return model.eval()


def features(batch: int = 2, tokens: int = 5, seed: int = 1) -> Tensor:
    return torch.randn(batch, tokens, TINY["img_feature_dim"], generator=torch.Generator().manual_seed(seed))


def teacher_forced_log_probs(model: ExpansionNetV2, feats: Tensor, captions: list[list[int]]) -> list[Tensor]:
    """Per-token log-probs of each caption (SOS first, 0 for SOS) of one image, in one right-padded batch."""
    longest = max(map(len, captions))
    tokens = torch.tensor([c + [0] * (longest - len(c)) for c in captions])
    pads = torch.tensor([longest - len(c) for c in captions])
    with torch.no_grad():
        log_probs = model(feats.expand(len(captions), -1, -1), tokens[:, :-1], token_pads=pads)
    picked = torch.cat([torch.zeros(len(captions), 1), log_probs.gather(-1, tokens[:, 1:, None]).squeeze(-1)], 1)
    return [row[: len(c)] for row, c in zip(picked, captions, strict=True)]


def test_state_dict_names_and_shapes_are_the_originals():
    d, ff, q, e, v, pos, f = 8, 12, 5, 4, VOCAB, 9, 6  # width, ffn, static / dynamic queries, vocab, positions, in
    encoder = [("norm_1.weight", (d,)), ("norm_1.bias", (d,)), ("norm_2.weight", (d,)), ("norm_2.bias", (d,)),
               ("stc_exp.query_exp_vectors.weight", (q, d)), ("stc_exp.bias_exp_vectors.weight", (q, d)),
               ("stc_exp.key_embed.weight", (d, d)), ("stc_exp.key_embed.bias", (d,)),
               ("stc_exp.class_a_embed.weight", (d, d)), ("stc_exp.class_a_embed.bias", (d,)),
               ("stc_exp.class_b_embed.weight", (d, d)), ("stc_exp.class_b_embed.bias", (d,)),
               ("stc_exp.selector_embed.weight", (d, d)), ("stc_exp.selector_embed.bias", (d,)),
               ("ff.linear_1.weight", (ff, d)), ("ff.linear_1.bias", (ff,)),
               ("ff.linear_2.weight", (d, ff)), ("ff.linear_2.bias", (d,))]
    decoder = [("norm_1.weight", (d,)), ("norm_1.bias", (d,)), ("norm_2.weight", (d,)), ("norm_2.bias", (d,)),
               ("norm_3.weight", (d,)), ("norm_3.bias", (d,)),
               ("mha.Wq.weight", (d, d)), ("mha.Wq.bias", (d,)), ("mha.Wk.weight", (d, d)), ("mha.Wk.bias", (d,)),
               ("mha.Wv.weight", (d, d)), ("mha.Wv.bias", (d,)),
               ("mha.out_linear.weight", (d, d)), ("mha.out_linear.bias", (d,)),
               ("dyn_exp.cond_embed.weight", (d, d)), ("dyn_exp.cond_embed.bias", (d,)),
               ("dyn_exp.query_exp_vectors.weight", (e, d)), ("dyn_exp.bias_exp_vectors.weight", (e, d)),
               ("dyn_exp.key_linear.weight", (d, d)), ("dyn_exp.key_linear.bias", (d,)),
               ("dyn_exp.class_a_embed.weight", (d, d)), ("dyn_exp.class_a_embed.bias", (d,)),
               ("dyn_exp.class_b_embed.weight", (d, d)), ("dyn_exp.class_b_embed.bias", (d,)),
               ("dyn_exp.selector_embed.weight", (d, d)), ("dyn_exp.selector_embed.bias", (d,)),
               ("ff.linear_1.weight", (ff, d)), ("ff.linear_1.bias", (ff,)),
               ("ff.linear_2.weight", (d, ff)), ("ff.linear_2.bias", (d,))]
    expected = [(f"encoders.{i}.{name}", shape) for i in range(2) for name, shape in encoder]
    expected += [(f"decoders.0.{name}", shape) for name, shape in decoder]
    expected += [("input_linear.weight", (d, f)), ("input_linear.bias", (d,)),
                 ("vocab_linear.weight", (v, d)), ("vocab_linear.bias", (v,)),
                 ("out_embedder.embed.weight", (v, d)), ("pos_encoder.weight", (pos, d)),
                 ("enc_reduce_group.weight", (d, 2 * d)), ("enc_reduce_group.bias", (d,)),
                 ("enc_reduce_norm.weight", (d,)), ("enc_reduce_norm.bias", (d,)),
                 ("dec_reduce_group.weight", (d, d)), ("dec_reduce_group.bias", (d,)),
                 ("dec_reduce_norm.weight", (d,)), ("dec_reduce_norm.bias", (d,))]
    assert [(k, tuple(t.shape)) for k, t in ExpansionNetV2(**TINY).state_dict().items()] == expected


def test_default_size_is_the_originals():
    with torch.device("meta"):
        model = create_model("expansionnet_v2", vocab_size=10_000)
    assert sum(p.numel() for p in model.parameters()) == 28_354_560 + 1025 * 10_000  # 38.6 M for COCO
    shapes = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    assert shapes["encoders.2.stc_exp.query_exp_vectors.weight"] == (992, 512)
    assert shapes["decoders.2.dyn_exp.query_exp_vectors.weight"] == (16, 512)
    assert shapes["pos_encoder.weight"] == (74, 512) and shapes["input_linear.weight"] == (512, 1536)
    assert "encoders.3.norm_1.weight" not in shapes


def test_registry():
    assert {"expansionnet_v2", "expansionnet_v2_e2e"} <= set(model_names())
    with pytest.raises(ConfigError, match="unknown IQA model"):
        create_model("expansionnet_v3")


def test_static_expansion_matches_the_spec_formula():
    torch.manual_seed(0)
    block = StaticExpansionBlock(4, [2, 3], dropout=0.0)
    x = torch.randn(2, 5, 4)
    keep = torch.tensor([[True] * 5, [True] * 3 + [False] * 2]).unsqueeze(1)
    with torch.no_grad():
        out = block(x, keep)
        queries, bias = block.query_exp_vectors.weight, block.bias_exp_vectors.weight
        for b in range(2):
            n = int(keep[b].sum())
            z = queries @ block.key_embed(x[b]).T / 2.0  # (5 queries, 5 tokens), sqrt(d) = 2
            result = []
            for sign, embed in ((1, block.class_a_embed), (-1, block.class_b_embed)):
                fw = (sign * z[:, :n]).clamp(min=0)
                expanded = fw / (fw.sum(1, keepdim=True) + 1e-9) @ embed(x[b, :n]) + bias
                bw = (sign * z.T).clamp(min=0)
                blocks = [bw[:, :2] / (bw[:, :2].sum(1, keepdim=True) + 1e-9),
                          bw[:, 2:] / (bw[:, 2:].sum(1, keepdim=True) + 1e-9)]
                result.append(torch.cat(blocks, 1) @ expanded / 2)
            gate = torch.sigmoid(block.selector_embed(x[b]))
            torch.testing.assert_close(out[b], gate * result[0] + (1 - gate) * result[1])


def test_dynamic_expansion_matches_the_spec_formula():
    torch.manual_seed(0)
    block = DynamicExpansionBlock(4, 3, dropout=0.0)
    x = torch.randn(1, 4, 4)
    causal = torch.ones(4, 4, dtype=torch.bool).tril().unsqueeze(0)
    with torch.no_grad():
        out = block(x, causal)[0]
        cond = block.cond_embed(x[0])
        keys = block.key_linear(x[0])
        for t in range(4):  # token t: its own queries read tokens <= t, then it reads the queries of tokens <= t
            result = []
            for sign, embed in ((1, block.class_a_embed), (-1, block.class_b_embed)):
                expanded, weights = [], []
                for s in range(t + 1):
                    queries = block.query_exp_vectors.weight + cond[s]
                    fw = (sign * queries @ keys[: s + 1].T / 2.0).clamp(min=0)
                    expanded.append(fw / (fw.sum(1, keepdim=True) + 1e-9) @ embed(x[0, : s + 1])
                                    + block.bias_exp_vectors.weight + cond[s])
                    weights.append((sign * queries @ keys[t] / 2.0).clamp(min=0))
                w = torch.cat(weights)
                result.append(w / (w.sum() + 1e-9) @ torch.cat(expanded))
            gate = torch.sigmoid(block.selector_embed(x[0, t]))
            torch.testing.assert_close(out[t], gate * result[0] + (1 - gate) * result[1])


def test_forward_gives_log_probs_per_position_independent_of_padding_and_batch():
    model = tiny()
    feats = features(3, 5)
    tokens = torch.randint(0, VOCAB, (3, 6), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(feats, tokens)
        padded = model(torch.cat([feats, torch.randn(3, 2, 6)], 1), tokens, input_pads=torch.tensor([2, 2, 2]),
                       token_pads=torch.tensor([0, 2, 1]))
        single = model(feats[1:2], tokens[1:2, :4])
    assert out.shape == (3, 6, VOCAB)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(3, 6))
    torch.testing.assert_close(padded[0], out[0])
    torch.testing.assert_close(padded[1, :4], out[1, :4])  # causal: pads after position 4 change nothing before
    torch.testing.assert_close(single[0], out[1, :4])
    with pytest.raises(ValueError, match="max_seq_len=9"):
        model(feats, torch.zeros(3, 10, dtype=torch.long))


class Bigram(Captioner):
    """A toy captioner whose next word depends on the last word only, through a fixed table."""

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.register_buffer("table", (table / table.sum(-1, keepdim=True)).log())

    def encode(self, inputs: Tensor, input_pads: Tensor | None = None) -> Tensor:
        return inputs

    def log_probs(self, memory, tokens, memory_pads=None, token_pads=None) -> Tensor:
        return self.table[tokens]


def test_beam_search_finds_the_known_best_caption_that_greedy_misses():
    # ids: 0 PAD, 1 SOS, 2 EOS, 3 "a", 4 "b". After SOS "a" is likelier, but "b" is nearly always followed by EOS.
    table = torch.tensor([[1e-6, 1e-6, 1.0, 1e-6, 1e-6],
                          [1e-6, 1e-6, 0.1, 0.5, 0.4],
                          [1e-6, 1e-6, 1.0, 1e-6, 1e-6],
                          [1e-6, 1e-6, 0.3, 0.36, 0.34],
                          [1e-6, 1e-6, 0.9, 0.05, 0.05]])
    toy = Bigram(table)
    greedy = toy.beam_search(torch.zeros(1, 1), SOS, EOS, beam_size=1, max_len=6)
    assert greedy.sequences == [[[1, 3, 3, 3, 3, 3]]]  # never ends: max_len ids, SOS included
    beam = toy.beam_search(torch.zeros(1, 1), SOS, EOS, beam_size=2, max_len=6, num_outputs=2)
    assert beam.sequences == [[[1, 4, 2], [1, 3, 3, 3, 3, 3]]]
    expected = torch.tensor([[(0.4 * 0.9) ** (1 / 3), (0.5 * 0.36**4) ** (1 / 6)]]).log()
    torch.testing.assert_close(beam.scores, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(beam.log_probs[0, 0], torch.tensor([0, 0.4, 0.9, 0, 0, 0]).log().nan_to_num(0, 0, 0),
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_beam_search_top_caption_is_the_exhaustive_best(seed):
    # With beam_size = vocabulary and one word after the first, pruning by summed log-prob cannot drop the
    # caption with the best summed log-prob / length, so beam search must return it.
    vocab = 5
    model = tiny(seed, eos_bias=1.0 + seed, vocab_size=vocab)
    feats = features(1, 4, seed)
    captions = [[SOS, EOS]] + [[SOS, w1, w2] for w1, w2 in itertools.product(range(vocab), repeat=2) if w1 != EOS]
    log_probs = teacher_forced_log_probs(model, feats, captions)
    scores = [lp.sum().item() / len(c) for lp, c in zip(log_probs, captions, strict=True)]
    best = max(range(len(captions)), key=scores.__getitem__)
    result = model.beam_search(feats, SOS, EOS, beam_size=vocab, max_len=3)
    assert result.sequences[0][0] == captions[best]
    assert result.scores[0, 0].item() == pytest.approx(scores[best], abs=1e-5)


def test_beam_search_returns_k_sorted_captions_ending_in_eos_or_max_len():
    model = tiny(eos_bias=1.5)
    feats = features(3, 5)
    k, max_len = 4, 8
    result = model.beam_search(feats, SOS, EOS, beam_size=k, max_len=max_len, num_outputs=k)
    assert result.scores.shape == (3, k) and (result.scores.diff(dim=1) <= 0).all()
    ends = set()
    for i, captions in enumerate(result.sequences):
        assert len(captions) == k and len({tuple(c) for c in captions}) == k
        expected_log_probs = teacher_forced_log_probs(model, feats[i], captions)
        for j, (caption, expected) in enumerate(zip(captions, expected_log_probs, strict=True)):
            assert caption[0] == SOS and EOS not in caption[1:-1]
            assert caption[-1] == EOS or len(caption) == max_len
            ends.add(caption[-1] == EOS)
            torch.testing.assert_close(result.log_probs[i, j, : len(caption)], expected, rtol=0, atol=1e-5)
            assert result.scores[i, j].item() == pytest.approx(expected.sum().item() / len(caption), abs=1e-5)
    assert ends == {True, False}  # both stopping rules were exercised
    with pytest.raises(ValueError, match="num_outputs"):
        model.beam_search(feats, SOS, EOS, beam_size=2, num_outputs=3)


def test_sampling_is_seeded_and_its_log_probs_are_the_models():
    model = tiny(eos_bias=2.5)  # EOS is frequent: finished captions keep being sampled after it
    feats = features(2, 5)
    runs = [model.sample(feats, SOS, EOS, num_samples=8, max_len=7, generator=torch.Generator().manual_seed(s))
            for s in (3, 3, 4)]
    assert runs[0].sequences == runs[1].sequences and torch.equal(runs[0].log_probs, runs[1].log_probs)
    assert runs[0].sequences != runs[2].sequences
    sampled = runs[0]
    assert sampled.log_probs.requires_grad and sampled.log_probs.shape[:2] == (2, 8)
    ends = set()
    for i, captions in enumerate(sampled.sequences):
        expected_log_probs = teacher_forced_log_probs(model, feats[i], captions)
        for j, (caption, expected) in enumerate(zip(captions, expected_log_probs, strict=True)):
            assert caption[0] == SOS and EOS not in caption[1:-1]  # cut at the first EOS
            assert caption[-1] == EOS or len(caption) == 7 + 1  # max_len words after SOS
            ends.add(caption[-1] == EOS)
            row = sampled.log_probs[i, j].detach()
            torch.testing.assert_close(row[: len(caption)], expected, rtol=0, atol=1e-5)
            assert (row[len(caption):] == 0).all()
    assert ends == {True, False}
    sampled.log_probs.sum().backward()
    assert model.out_embedder.embed.weight.grad is not None


def test_scored_samples_match_incremental_sampling_values_and_gradients():
    """One teacher-forced pass over the drawn captions gives ``sample``'s log-probs and gradients (dropout 0,
    training mode), through the encoder too, with the same captions from the same generator."""
    no_dropout = dict.fromkeys(("enc_drop", "dec_drop", "enc_input_drop", "dec_input_drop", "drop_other"), 0.0)
    model = tiny(eos_bias=2.0, **no_dropout).train()
    feats = features(2, 5)
    results, grads = [], []
    for draw in (model.sample, model.sample_scored):
        model.zero_grad()
        result = draw(feats, SOS, EOS, num_samples=6, max_len=7, generator=torch.Generator().manual_seed(5))
        weights = torch.randn(result.log_probs.shape, generator=torch.Generator().manual_seed(6))
        (weights * result.log_probs).sum().backward()
        results.append(result)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    incremental, scored = results
    assert scored.sequences == incremental.sequences
    assert {c[-1] == EOS for captions in scored.sequences for c in captions} == {True, False}
    torch.testing.assert_close(scored.log_probs, incremental.log_probs, rtol=0, atol=1e-5)
    assert grads[0].keys() == grads[1].keys() and "encoders.0.stc_exp.key_embed.weight" in grads[0]
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_decoder_input_is_scaled_embedding_plus_position():
    model = tiny()
    tokens = torch.tensor([[SOS, 4, 5]])
    captured = []
    model.decoders[0].register_forward_pre_hook(lambda _, args: captured.append(args[0]))
    with torch.no_grad():
        model(features(1, 5), tokens)
    expected = model.out_embedder.embed.weight[tokens] * 8**0.5 + model.pos_encoder.weight[:3]
    torch.testing.assert_close(captured[0], expected)


def test_ensemble_of_identical_members_decodes_as_one_and_averages_probabilities():
    one, other = tiny(eos_bias=2.0), tiny(seed=5, eos_bias=2.0)
    twin = ExpansionNetV2(**TINY).eval()
    twin.load_state_dict(one.state_dict())
    feats = features(2, 5)
    single = one.beam_search(feats, SOS, EOS, beam_size=3, max_len=8, num_outputs=3)
    double = CaptionEnsemble([one, twin]).beam_search(feats, SOS, EOS, beam_size=3, max_len=8, num_outputs=3)
    assert double.sequences == single.sequences
    torch.testing.assert_close(double.log_probs, single.log_probs, rtol=0, atol=1e-5)
    mixed = CaptionEnsemble([one, other])
    tokens = torch.tensor([[SOS, 4, 5]])
    with torch.no_grad():
        got = mixed.log_probs(mixed.encode(feats[:1]), tokens)
        expected = ((one(feats[:1], tokens).exp() + other(feats[:1], tokens).exp()) / 2).log()
    torch.testing.assert_close(got, expected)


def test_strict_load_round_trip_gives_the_same_outputs():
    model = tiny(eos_bias=1.0)
    buffer = io.BytesIO()
    torch.save({"model_state_dict": model.state_dict()}, buffer)
    buffer.seek(0)
    loaded = ExpansionNetV2(**TINY).eval()  # other random weights until loaded
    loaded.load_state_dict(torch.load(buffer, weights_only=True)["model_state_dict"], strict=True)
    feats = features(2, 5)
    tokens = torch.randint(0, VOCAB, (2, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(feats, tokens), model(feats, tokens))
    assert (loaded.beam_search(feats, SOS, EOS, beam_size=3, max_len=8).sequences
            == model.beam_search(feats, SOS, EOS, beam_size=3, max_len=8).sequences)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        loaded.load_state_dict({**model.state_dict(), "extra.weight": torch.zeros(1)}, strict=True)


def microsoft_layout(timm_swin: torch.nn.Module) -> dict[str, Tensor]:
    """A timm Swin's state dict in Microsoft's layout: downsample at the end of the previous stage, plus the
    relative-position indexes and attention masks, which Microsoft's Swin keeps as persistent buffers."""
    out = {re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", k): v
           for k, v in timm_swin.state_dict().items()}
    out |= {k: v for k, v in timm_swin.named_buffers() if k.endswith(("relative_position_index", "attn_mask"))}
    return out


def test_original_swin_keys_map_onto_timms_and_the_end_to_end_model_loads_them():
    torch.manual_seed(0)
    model = create_model("expansionnet_v2_e2e", backbone_kwargs=TINY_SWIN,
                         **{k: v for k, v in TINY.items() if k != "img_feature_dim"}).eval()
    original = microsoft_layout(model.swin_transf)
    assert "layers.0.downsample.reduction.weight" in original and "layers.3.downsample.norm.weight" not in original
    assert "layers.0.blocks.1.attn_mask" in original and "layers.3.blocks.0.attn.relative_position_index" in original
    mapped = swin_keys_to_timm(original | {"head.weight": torch.zeros(3, 64)})
    assert mapped.keys() == model.swin_transf.state_dict().keys() | {"head.fc.weight"}
    assert mapped["layers.1.downsample.reduction.weight"] is original["layers.0.downsample.reduction.weight"]

    body = {k: v for k, v in model.state_dict().items() if not k.startswith("swin_transf.")}
    end_to_end = {f"swin_transf.{k}": v.clone() for k, v in original.items()} | body
    reloaded = ExpansionNetV2E2E(backbone_kwargs=TINY_SWIN, **{k: v for k, v in TINY.items() if k != "img_feature_dim"})
    reloaded.load_state_dict(convert_end_to_end_state_dict(end_to_end), strict=True)
    reloaded.eval()
    images = torch.randn(1, 3, 384, 384, generator=torch.Generator().manual_seed(0))
    tokens = torch.tensor([[SOS, 4, 5]])
    with torch.no_grad():
        assert model.image_tokens(images).shape == (1, 144, 64)  # 12 x 12 tokens of width 8 * 2**3
        torch.testing.assert_close(reloaded(images, tokens), model(images, tokens), rtol=0, atol=0)
        on_features = ExpansionNetV2(**{**TINY, "img_feature_dim": 64})
        on_features.load_state_dict(body_state_dict(end_to_end), strict=True)
        torch.testing.assert_close(on_features.eval()(model.image_tokens(images), tokens), model(images, tokens))
    with pytest.raises(ValueError, match="no padding"):
        model.encode(images, torch.tensor([1]))
