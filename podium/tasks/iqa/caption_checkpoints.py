"""Vocabularies inside checkpoints, and weights moved between vocabularies.

The original's checkpoints do not hold their vocabulary (iqa-verified.md 0.2): its indices depend on the
sorted word list, so a checkpoint without it decodes to the wrong words. podium keeps the vocabulary in
the state dict itself (:func:`encode_vocabulary`: the word list as UTF-8 JSON in a uint8 tensor), so it
travels wherever weights go: ``init:``, predict, soups, a file copied elsewhere.

Starting from weights trained with another vocabulary (the released COCO checkpoints, or a podium
checkpoint built on other captions) is an explicit choice: :func:`map_vocabulary_rows` copies the rows of
the words both vocabularies share into the new order and leaves the new words' rows as initialised, and
:class:`VocabularyMapping` says how many were new. The original's loader instead skipped the mismatched
tensors silently, leaving the whole output layer random (iqa-verified.md 0.9).
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from podium.engine.checkpoint import load_checkpoint
from podium.errors import DataError
from podium.tasks.iqa.data import Vocabulary

# the vocabulary-indexed tensors of ExpansionNetV2, each with one row per word
VOCABULARY_ROWS = ("vocab_linear.weight", "vocab_linear.bias", "out_embedder.embed.weight")


def encode_vocabulary(vocabulary: Vocabulary) -> Tensor:
    """The word list as a uint8 tensor (JSON, UTF-8): loadable with ``weights_only``, kept as is by soups."""
    return torch.frombuffer(bytearray(json.dumps(list(vocabulary.words)).encode()), dtype=torch.uint8)


def decode_vocabulary(encoded: Tensor) -> Vocabulary:
    return Vocabulary(json.loads(bytes(encoded.to(torch.uint8).tolist()).decode()))


@dataclass(frozen=True)
class VocabularyMapping:
    """How a checkpoint's vocabulary met the model's: ``shared`` rows copied, ``new`` rows left as
    initialised, ``dropped`` checkpoint words the model does not have."""

    shared: int
    new: int
    dropped: int

    def __str__(self) -> str:
        return (f"{self.shared} words shared with the checkpoint's vocabulary (rows copied), {self.new} new "
                f"(rows freshly initialised), {self.dropped} of the checkpoint's words dropped")


def map_vocabulary_rows(state_dict: dict[str, Tensor], old_words: Sequence[str], new_words: Sequence[str],
                        fresh: Mapping[str, Tensor], prefix: str = "") -> VocabularyMapping:
    """Re-index ``state_dict``'s vocabulary rows (``prefix`` + :data:`VOCABULARY_ROWS`) in place from
    ``old_words`` to ``new_words``; a new word's row comes from ``fresh`` (the model's own tensors)."""
    old_index = {word: i for i, word in enumerate(old_words)}
    kept = [(i, old_index[w]) for i, w in enumerate(new_words) if w in old_index]
    rows_new = torch.tensor([i for i, _ in kept], dtype=torch.long)
    rows_old = torch.tensor([j for _, j in kept], dtype=torch.long)
    for name in VOCABULARY_ROWS:
        old = state_dict[prefix + name]
        if old.shape[0] != len(old_words):
            raise DataError(f"{prefix + name} has {old.shape[0]} rows for a vocabulary of {len(old_words)} words: "
                            "the vocabulary file does not belong to these weights")
        mapped = fresh[name].detach().to(device=old.device, dtype=old.dtype, copy=True)
        mapped[rows_new] = old[rows_old]
        state_dict[prefix + name] = mapped
    return VocabularyMapping(len(kept), len(new_words) - len(kept), len(old_words) - len(kept))


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles builtin containers and scalars only: a vocabulary file never needs to run code."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a vocabulary holds plain data only")


def read_original_vocabulary(path: str | os.PathLike) -> list[str]:
    """The words of an ExpansionNet vocabulary file by index: its pickle (``demo_coco_tokens.pickle``, a dict
    with ``idx2word_list``, or a plain list of words) or a text file with one word per line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: vocabulary file not found")
    if path.suffix in (".pickle", ".pkl"):
        try:
            with open(path, "rb") as f:
                content = _PlainUnpickler(f).load()
        except (pickle.UnpicklingError, EOFError, ValueError) as e:
            raise DataError(f"{path}: not a plain vocabulary pickle ({e})") from e
        words = content.get("idx2word_list") if isinstance(content, dict) else content
    else:
        words = path.read_text(encoding="utf-8").splitlines()
    if not isinstance(words, list) or not words or not all(isinstance(w, str) for w in words):
        raise DataError(f"{path}: expected a list of words (ExpansionNet's 'idx2word_list')")
    return words


def read_original_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """``model_state_dict`` of an ExpansionNet v2 checkpoint (``xe_model.pth``, ``rf_model.pth``), loaded
    with ``weights_only``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found (weights are never downloaded: give a local file)")
    try:
        checkpoint = load_checkpoint(path)
    except pickle.UnpicklingError as e:
        raise DataError(f"{path}: holds objects other than tensors and plain data, which are never unpickled "
                        f"({e})") from e
    if not isinstance(checkpoint, dict) or "model_state_dict" not in checkpoint:
        raise DataError(f"{path}: no 'model_state_dict': not an ExpansionNet v2 checkpoint")
    return dict(checkpoint["model_state_dict"])
