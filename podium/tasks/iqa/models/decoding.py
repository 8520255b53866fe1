"""Caption decoding shared by single captioners and ensembles: beam search and multinomial sampling (SCST).

Both follow ExpansionNet v2's ``captioning_model.py`` step for step, so that a released checkpoint gives
the original's captions: the decoder re-reads the whole prefix at every step (no cache), a finished beam
offers one candidate that keeps its score (and k - 1 at -999), and beams are ranked at the end by their
summed log-probability divided by their length counted with SOS and EOS.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

Memory = Tensor | list[Tensor]  # an encoder's output; a list of them for an ensemble

FINISHED_LOG_PROB = -999.0  # the score of a finished beam's k - 1 padding candidates


class BeamResult(NamedTuple):
    """Beam-search captions per image, best first."""

    sequences: list[list[list[int]]]  # [image][output] ids from SOS through EOS (or through max_len tokens)
    log_probs: Tensor  # (images, outputs, longest) per-token log-probs, 0 for SOS and after the end
    scores: Tensor  # (images, outputs) summed log-prob / length (SOS and EOS counted), descending


class SampleResult(NamedTuple):
    """Sampled captions per image, with log-probs that carry gradients (for SCST)."""

    sequences: list[list[list[int]]]  # [image][sample] ids from SOS through the first EOS (or max_len words)
    log_probs: Tensor  # (images, samples, steps + 1) per-token log-probs, 0 for SOS and after the first EOS


def repeat_memory(memory: Memory, times: int) -> Memory:
    """Repeat each image's encoder output ``times`` times in a row (image-major, as beams and samples are)."""
    if isinstance(memory, Tensor):
        return memory.repeat_interleave(times, dim=0)
    return [m.repeat_interleave(times, dim=0) for m in memory]


def _repeat_pads(pads: Tensor | None, times: int) -> Tensor | None:
    return None if pads is None else pads.repeat_interleave(times, dim=0)


class Captioner(nn.Module, ABC):
    """An encoder-decoder captioner: ``encode`` once per image, then ``log_probs`` of the next words."""

    @abstractmethod
    def encode(self, inputs: Tensor, input_pads: Tensor | None = None) -> Memory:
        """Encode a batch of inputs; ``input_pads`` (batch,) counts padded positions at the end of each."""

    @abstractmethod
    def log_probs(
        self, memory: Memory, tokens: Tensor, memory_pads: Tensor | None = None, token_pads: Tensor | None = None
    ) -> Tensor:
        """Log-probabilities (batch, length, vocab) of the word after each prefix of ``tokens`` (batch, length)."""

    @torch.no_grad()
    def beam_search(
        self,
        inputs: Tensor,
        sos_idx: int,
        eos_idx: int,
        beam_size: int = 5,
        max_len: int = 20,
        num_outputs: int = 1,
        input_pads: Tensor | None = None,
    ) -> BeamResult:
        """Keep the ``beam_size`` best of beam_size ** 2 candidates per step; sequences hold at most ``max_len`` ids.

        ``max_len`` counts SOS (the original's ``beam_max_seq_len``); the search stops early once every beam
        holds an EOS. Returns the ``num_outputs`` best beams per image.
        """
        if not 1 <= num_outputs <= beam_size:
            raise ValueError(f"num_outputs must be in 1..beam_size={beam_size}, got {num_outputs}")
        batch, k = inputs.shape[0], beam_size
        memory = self.encode(inputs, input_pads)
        sos = torch.full((batch, 1), sos_idx, dtype=torch.long, device=inputs.device)
        first_log_probs, first_words = self.log_probs(memory, sos, input_pads)[:, 0].topk(k)
        tokens = torch.cat([sos.expand(batch, k).unsqueeze(-1), first_words.unsqueeze(-1)], dim=-1)
        token_log_probs = F.pad(first_log_probs.unsqueeze(-1), (1, 0))  # SOS has log-prob 0
        memory, memory_pads = repeat_memory(memory, k), _repeat_pads(input_pads, k)
        lengths = torch.full((batch, k), 2, dtype=torch.long, device=inputs.device)  # SOS + words up to EOS
        rows = torch.arange(batch, device=inputs.device).unsqueeze(-1)
        for step in range(2, max_len):
            # Positions after a beam's EOS are pads: masked in the decoder, as the original does.
            step_log_probs = self.log_probs(memory, tokens.reshape(batch * k, step), memory_pads,
                                            (step - lengths).reshape(-1))[:, step - 1]
            word_log_probs, words = step_log_probs.topk(k)
            word_log_probs, words = word_log_probs.reshape(batch, k, k), words.reshape(batch, k, k)
            finished = (tokens == eos_idx).any(dim=-1, keepdim=True)
            word_log_probs[:, :, :1].masked_fill_(finished, 0.0)
            word_log_probs[:, :, 1:].masked_fill_(finished, FINISHED_LOG_PROB)
            candidates = (token_log_probs.sum(dim=-1, keepdim=True) + word_log_probs).reshape(batch, k * k)
            best = candidates.topk(k).indices
            parent, choice = best // k, (best % k).unsqueeze(-1)
            new_words = words[rows, parent].gather(-1, choice)
            new_log_probs = word_log_probs[rows, parent].gather(-1, choice)
            tokens = torch.cat([tokens[rows, parent], new_words], dim=-1)
            token_log_probs = torch.cat([token_log_probs[rows, parent], new_log_probs], dim=-1)
            lengths = lengths[rows, parent] + (~finished.squeeze(-1)[rows, parent]).long()
            if (lengths != step + 1).all():
                break
        scores, order = (token_log_probs.sum(dim=-1) / lengths).topk(k)
        order = order[:, :num_outputs]
        sequences = [[tokens[i, j, : lengths[i, j]].tolist() for j in order[i].tolist()] for i in range(batch)]
        kept = [token_log_probs[i, j, : lengths[i, j]] for i in range(batch) for j in order[i].tolist()]
        log_probs = pad_sequence(kept, batch_first=True).reshape(batch, num_outputs, -1)
        return BeamResult(sequences, log_probs, scores[:, :num_outputs])

    def sample(
        self,
        inputs: Tensor,
        sos_idx: int,
        eos_idx: int,
        num_samples: int = 5,
        max_len: int = 20,
        input_pads: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        """Draw ``num_samples`` captions per image word by word (temperature 1), at most ``max_len`` words after SOS.

        Stops when every caption holds an EOS. Runs with gradients through every step, as the original's
        SCST does: :meth:`sample_scored` gives the same log-probs and gradients far faster.
        """
        memory = repeat_memory(self.encode(inputs, input_pads), num_samples)
        tokens, end, log_probs = self._draw(memory, _repeat_pads(input_pads, num_samples), sos_idx, eos_idx,
                                            max_len, generator)
        return _sample_result(tokens, end, log_probs, num_samples)

    def sample_scored(
        self,
        inputs: Tensor,
        sos_idx: int,
        eos_idx: int,
        num_samples: int = 5,
        max_len: int = 20,
        input_pads: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        """:meth:`sample`'s captions, drawn without gradients, then scored with gradients in one teacher-forced pass.

        The decoder is causal, so position t of the pass sees what step t of the draw saw: with dropout 0 the
        log-probs and their gradients are :meth:`sample`'s (to float tolerance), at a fraction of the time
        and memory (no graph through ``max_len`` growing decoder passes). With dropout in training mode the
        encoder's masks are shared (one encoding) but the decoder's differ: the draw and the score each
        take their own, where :meth:`sample` (the original) scores with the masks it drew under.
        """
        memory = repeat_memory(self.encode(inputs, input_pads), num_samples)
        memory_pads = _repeat_pads(input_pads, num_samples)
        with torch.no_grad():
            tokens, end, _ = self._draw(memory, memory_pads, sos_idx, eos_idx, max_len, generator)
        next_log_probs = self.log_probs(memory, tokens[:, :-1], memory_pads).gather(-1, tokens[:, 1:, None])
        return _sample_result(tokens, end, F.pad(next_log_probs.squeeze(-1), (1, 0)), num_samples)

    def _draw(
        self,
        memory: Memory,
        memory_pads: Tensor | None,
        sos_idx: int,
        eos_idx: int,
        max_len: int,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(tokens (rows, steps + 1) from SOS, index of each row's first EOS (max_len if none), per-token
        log-probs (rows, steps + 1), 0 for SOS, unmasked after the EOS) of captions drawn from ``memory``."""
        rows = len(memory if isinstance(memory, Tensor) else memory[0])
        device = memory.device if isinstance(memory, Tensor) else memory[0].device
        tokens = torch.full((rows, 1), sos_idx, dtype=torch.long, device=device)
        picked = [torch.zeros(rows, device=device)]
        end = torch.full((rows,), max_len, dtype=torch.long, device=device)
        done = torch.zeros(rows, dtype=torch.bool, device=device)
        step = 0
        while step < max_len and not done.all():
            log_probs = self.log_probs(memory, tokens, memory_pads)[:, step]
            probs = log_probs.detach().exp()
            words = torch.multinomial(probs / probs.sum(dim=-1, keepdim=True), 1, True, generator=generator)
            tokens = torch.cat([tokens, words], dim=-1)
            picked.append(log_probs.gather(-1, words).squeeze(-1))
            step += 1
            is_eos = words.squeeze(-1) == eos_idx
            end = torch.where(is_eos & ~done, step, end)
            done |= is_eos
        return tokens, end, torch.stack(picked, dim=-1)


def _sample_result(tokens: Tensor, end: Tensor, log_probs: Tensor, num_samples: int) -> SampleResult:
    """Image-major sequences cut after their first EOS, and ``log_probs`` zeroed after it."""
    after_end = torch.arange(tokens.shape[1], device=tokens.device) > end.unsqueeze(-1)
    ends = end.tolist()
    sequences = [[tokens[i + j, : ends[i + j] + 1].tolist() for j in range(num_samples)]
                 for i in range(0, len(tokens), num_samples)]
    return SampleResult(sequences, log_probs.masked_fill(after_end, 0.0).reshape(len(sequences), num_samples, -1))


class LogitsCaptioner(Captioner):
    """A single captioner whose decoder gives logits; its log-probs are their log-softmax, in float32."""

    @abstractmethod
    def logits(
        self, memory: Tensor, tokens: Tensor, memory_pads: Tensor | None = None, token_pads: Tensor | None = None
    ) -> Tensor:
        """Next-word logits (batch, length, vocab) for each prefix of ``tokens``."""

    def log_probs(
        self, memory: Memory, tokens: Tensor, memory_pads: Tensor | None = None, token_pads: Tensor | None = None
    ) -> Tensor:
        assert isinstance(memory, Tensor)
        return torch.log_softmax(self.logits(memory, tokens, memory_pads, token_pads).float(), dim=-1)


class CaptionEnsemble(Captioner):
    """Members' softmax probabilities averaged, then the log: decodes like one captioner.

    Members share the vocabulary; put them in eval mode for inference (the original does so on construction).
    """

    def __init__(self, members: Sequence[LogitsCaptioner]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def encode(self, inputs: Tensor, input_pads: Tensor | None = None) -> list[Tensor]:
        return [member.encode(inputs, input_pads) for member in self.members]

    def log_probs(
        self, memory: Memory, tokens: Tensor, memory_pads: Tensor | None = None, token_pads: Tensor | None = None
    ) -> Tensor:
        assert isinstance(memory, list)
        probs = [member.logits(m, tokens, memory_pads, token_pads).float().softmax(dim=-1)
                 for member, m in zip(self.members, memory, strict=True)]
        return torch.stack(probs).mean(dim=0).log()
