"""ExpansionNet v2's training objectives: label-smoothed cross-entropy (XE) and self-critical sequence training.

XE (iqa-verified.md 1.4): every class gets ``s / (V - 1)`` (PAD included), the target ``1 - s``; the loss is
KL(smoothed || predicted) summed over the non-PAD target tokens and divided by their number.

SCST (1.6): each image's ``n`` sampled captions are rewarded with CIDEr-D against its training references,
both with the EOS word appended (a sampled caption keeps the EOS it ended with), document frequencies from
all training references computed once; the baseline of a sample is the mean reward of the image's other
``n - 1`` samples, and the loss is the mean over samples of ``(r - b) * sum_t -log p_t``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from podium.metrics.caption import CiderD
from podium.tasks.iqa.data import EOS


def _xlogx(x: float) -> float:
    return x * math.log(x) if x > 0 else 0.0


def label_smoothed_xe(log_probs: Tensor, labels: Tensor, pad: int, smoothing: float) -> Tensor:
    """KL(smoothed labels || exp(log_probs)) per non-PAD label, averaged over them.

    ``log_probs`` (batch, length, V), ``labels`` (batch, length). The smoothed distribution's entropy term
    is a constant, kept so the value is the original's; the sum over classes is done without building
    the (batch, length, V) target.
    """
    vocab = log_probs.shape[-1]
    off, on = smoothing / (vocab - 1), 1.0 - smoothing
    target = log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    cross = on * target + off * (log_probs.sum(dim=-1) - target)
    per_token = _xlogx(on) + (vocab - 1) * _xlogx(off) - cross
    keep = labels != pad
    return (per_token * keep).sum() / keep.sum().clamp_min(1)


def scst_advantages(rewards: Tensor) -> Tensor:
    """``r - b`` per sample of ``rewards`` (images, samples): b is the mean reward of the image's other samples."""
    samples = rewards.shape[-1]
    if samples < 2:
        raise ValueError("the SCST baseline needs at least 2 samples per image")
    return rewards - (rewards.sum(dim=-1, keepdim=True) - rewards) / (samples - 1)


def scst_loss(log_probs: Tensor, advantages: Tensor) -> Tensor:
    """Mean over samples of ``advantage * sum_t -log p_t``; ``log_probs`` (images, samples, steps) holds
    0 for SOS and after the first EOS, ``advantages`` (images, samples) carries no gradient."""
    return (advantages.detach() * -log_probs.sum(dim=-1)).mean()


class ScstReward:
    """CIDEr-D of sampled captions against their image's training references, EOS appended to both.

    ``references`` holds every training image's references (cleaned words, no SOS / EOS): the document
    frequencies come from them once, so a batch costs only its own n-grams.
    """

    def __init__(self, references: Sequence[Sequence[Sequence[str]]]):
        self.cider = CiderD([[[*ref, EOS] for ref in refs] for refs in references])

    def __call__(self, captions: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]]) -> np.ndarray:
        """Reward per caption; ``captions`` are the words after SOS (through the EOS word if one was
        sampled), ``references[i]`` the cleaned references of caption i's image."""
        return self.cider.score(captions, [[[*ref, EOS] for ref in refs] for refs in references])


def sampled_words(sequences: Sequence[Sequence[Sequence[int]]], words: Sequence[str]) -> list[list[str]]:
    """The words of ``sample``'s sequences (image-major), SOS dropped and the EOS word kept, as rewarded."""
    return [[words[i] for i in sequence[1:]] for image in sequences for sequence in image]


def rewards_tensor(rewards: np.ndarray, images: int, like: Tensor) -> Tensor:
    """Image-major rewards as a (images, samples) float tensor on ``like``'s device."""
    return torch.as_tensor(rewards, dtype=torch.float32, device=like.device).reshape(images, -1)
