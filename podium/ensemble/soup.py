"""Model soups (Wortsman et al. 2022): average the weights of fine-tuned members into one model.

Members live in files and are loaded one at a time, so memory stays at a few state dicts however
many members there are (72 in the mask seed). Only floating-point tensors are averaged; integer and
bool buffers (BatchNorm ``num_batches_tracked``) are copied from the first ingredient, because their
mean means nothing.

Arithmetic: the soup is kept as a float64 *sum* of its ingredients and divided once per candidate,
so a soup of n members is the float64 mean rounded once to the members' dtype: no running-mean drift,
and a greedy soup that accepts every member in path order equals the uniform soup bit for bit.
``soup * n/(n+1) + member/(n+1)`` in the paper is that same quantity. The price is an accumulator
twice the size of a float32 state dict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from podium.errors import PodiumError

StateDict = dict[str, Tensor]
Loader = Callable[[Path], StateDict]
Evaluator = Callable[[StateDict], float]


@dataclass(frozen=True)
class SoupStep:
    """One member's turn in the greedy soup, in the order the members were tried."""

    member: int
    score: float
    candidate_score: float
    accepted: bool
    soup_score: float


@dataclass
class GreedySoupResult:
    """The soup's state dict, the member indices that joined (in order) and every step taken."""

    state_dict: StateDict
    ingredients: list[int]
    steps: list[SoupStep] = field(default_factory=list)

    @property
    def score(self) -> float:
        """Held-out score of the final soup."""
        return self.steps[-1].soup_score


class _Accumulator:
    """Float64 sum of the ingredients' floating tensors plus the first ingredient's other tensors."""

    def __init__(self, first: StateDict, path: Path):
        for key, value in first.items():
            if not isinstance(value, Tensor):
                raise PodiumError(f"{path}: key {key!r} holds a {type(value).__name__}, not a tensor")
        self.path = path
        self.reference = {k: (v.shape, v.dtype) for k, v in first.items()}
        self.sums = {
            k: v.to(torch.float64, copy=True) for k, v in first.items() if torch.is_floating_point(v)
        }
        self.fixed = {k: v.clone() for k, v in first.items() if not torch.is_floating_point(v)}
        self.count = 1

    def check(self, member: StateDict, path: Path) -> None:
        """Raise naming ``path`` and the key unless ``member`` has the first ingredient's layout."""
        missing = sorted(self.reference.keys() - member.keys())
        if missing:
            raise PodiumError(f"{path}: key {missing[0]!r} is missing (present in {self.path})")
        extra = sorted(member.keys() - self.reference.keys())
        if extra:
            raise PodiumError(f"{path}: unexpected key {extra[0]!r} (absent from {self.path})")
        for key, (shape, dtype) in self.reference.items():
            value = member[key]
            if not isinstance(value, Tensor):
                raise PodiumError(f"{path}: key {key!r} holds a {type(value).__name__}, not a tensor")
            if value.shape != shape:
                raise PodiumError(
                    f"{path}: key {key!r} has shape {tuple(value.shape)}, expected {tuple(shape)}"
                    f" as in {self.path}"
                )
            if value.dtype != dtype:
                raise PodiumError(f"{path}: key {key!r} has dtype {value.dtype}, expected {dtype}")

    def mean_with(self, member: StateDict | None) -> StateDict:
        """The mean of the ingredients (and ``member``, if given) in the members' own dtypes.

        In-place ops on one float64 scratch tensor at a time: the same bits as ``(sum + m) / n``,
        without the extra temporaries per tensor that made this step several times slower.
        """
        count = self.count + (member is not None)
        out: StateDict = {}
        for key, (_, dtype) in self.reference.items():
            if key in self.fixed:
                out[key] = self.fixed[key]
                continue
            total = self.sums[key]
            if member is None:
                scratch = total.clone()
            else:
                scratch = member[key].to(total, copy=True)
                scratch += total
            scratch /= count
            out[key] = scratch.to(dtype)
        return out

    def add(self, member: StateDict) -> None:
        for key, total in self.sums.items():
            total += member[key].to(total.device)
        self.count += 1


def _load_checked(load: Loader, path: Path) -> StateDict:
    member = load(path)
    if not isinstance(member, dict):
        raise PodiumError(f"{path}: loaded a {type(member).__name__}, expected a state dict")
    return member


def uniform_soup(paths: Sequence[Path], load: Loader) -> StateDict:
    """Element-wise mean of all members' floating tensors; other tensors come from ``paths[0]``."""
    if not paths:
        raise PodiumError("uniform soup: no members given")
    first = _load_checked(load, paths[0])
    soup = _Accumulator(first, paths[0])
    del first
    for path in paths[1:]:
        member = _load_checked(load, path)
        soup.check(member, path)
        soup.add(member)
        del member
    return soup.mean_with(None)


def _rank(
    paths: Sequence[Path], load: Loader, evaluate: Evaluator, scores: Sequence[float] | None
) -> list[float]:
    if scores is None:
        individual = []
        for path in paths:
            member = _load_checked(load, path)
            individual.append(float(evaluate(member)))
            del member
        scores = individual
    if len(scores) != len(paths):
        raise PodiumError(f"greedy soup: {len(scores)} scores for {len(paths)} members")
    for path, score in zip(paths, scores, strict=True):
        if math.isnan(float(score)):
            raise PodiumError(f"{path}: held-out score is NaN, the members cannot be ranked")
    return [float(s) for s in scores]


def greedy_soup(
    paths: Sequence[Path],
    load: Loader,
    evaluate: Evaluator,
    scores: Sequence[float] | None = None,
    strict: bool = True,
) -> GreedySoupResult:
    """Greedy soup: add members best first, keeping each one only if the held-out score improves.

    Members are ranked by score descending, ties broken by the lower index in ``paths`` (so the
    result never depends on sort stability or file names). ``scores`` are the members' held-out
    scores from the same ``evaluate``; when None each member is loaded and evaluated once to get them.
    A candidate is kept if its score is ``>`` the soup's (the paper's rule), or ``>=`` with
    ``strict=False``. At most the accumulator, one candidate and one member are alive at a time.
    """
    if not paths:
        raise PodiumError("greedy soup: no members given")
    member_scores = _rank(paths, load, evaluate, scores)
    order = sorted(range(len(paths)), key=lambda i: (-member_scores[i], i))

    best = order[0]
    first = _load_checked(load, paths[best])
    soup = _Accumulator(first, paths[best])
    del first
    soup_score = member_scores[best]
    ingredients = [best]
    steps = [SoupStep(best, soup_score, soup_score, True, soup_score)]

    for index in order[1:]:
        path = paths[index]
        member = _load_checked(load, path)
        soup.check(member, path)
        candidate = soup.mean_with(member)
        candidate_score = float(evaluate(candidate))
        del candidate
        accepted = candidate_score > soup_score if strict else candidate_score >= soup_score
        if accepted:
            soup.add(member)
            soup_score = candidate_score
            ingredients.append(index)
        del member
        steps.append(SoupStep(index, member_scores[index], candidate_score, accepted, soup_score))

    return GreedySoupResult(state_dict=soup.mean_with(None), ingredients=ingredients, steps=steps)
