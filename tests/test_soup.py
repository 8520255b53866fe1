"""Model soups on hand-made members whose greedy path is worked out below, step by step."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest
import torch

from podium.ensemble.soup import SoupStep, greedy_soup, uniform_soup
from podium.errors import PodiumError

# Each member is w = [x, -x] plus a BatchNorm-style counter. The held-out "score" of a state dict
# is a lookup on x, so every candidate the soup may build must be one of these x values exactly:
SCORE_OF_X = {3.0: 0.70, 5.0: 0.65, 7.0: 0.65, 10.0: 0.60, -2.0: 0.50, 4.0: 0.75, 6.0: 0.75, 2.0: 0.80}
MEMBER_X = [10.0, 3.0, -2.0, 5.0, 7.0]  # individual scores 0.60, 0.70, 0.50, 0.65, 0.65


def member(x: float, index: int) -> dict[str, torch.Tensor]:
    return {
        "w": torch.tensor([x, -x], dtype=torch.float32),
        "bn.num_batches_tracked": torch.tensor(100 + index, dtype=torch.int64),
    }


class Members:
    """Members "stored" under fake paths; counts loads and evaluations."""

    def __init__(self, xs: list[float]):
        self.paths = [Path(f"m{i}.pt") for i in range(len(xs))]
        self.xs = dict(zip(self.paths, xs, strict=True))
        self.loads: list[Path] = []
        self.evaluated: list[float] = []

    def load(self, path: Path) -> dict[str, torch.Tensor]:
        self.loads.append(path)
        return member(self.xs[path], self.paths.index(path))

    def evaluate(self, state_dict: dict[str, torch.Tensor]) -> float:
        x, minus_x = state_dict["w"].tolist()
        assert minus_x == -x
        self.evaluated.append(x)
        return SCORE_OF_X[x]


def test_greedy_soup_strict_path():
    # Ranked by individual score, ties by index: m1 (0.70), m3 (0.65), m4 (0.65), m0 (0.60), m2 (0.50).
    # m1: soup x = 3, score 0.70.
    # m3: candidate (3 + 5) / 2 = 4 -> 0.75 > 0.70, accepted; soup sum 8 over 2.
    # m4: candidate (8 + 7) / 3 = 5 -> 0.65 < 0.75, rejected.
    # m0: candidate (8 + 10) / 3 = 6 -> 0.75, a tie: not > 0.75, rejected under strict.
    # m2: candidate (8 - 2) / 3 = 2 -> 0.80 > 0.75, accepted; final x = (3 + 5 - 2) / 3 = 2.
    members = Members(MEMBER_X)
    result = greedy_soup(members.paths, members.load, members.evaluate)
    assert result.ingredients == [1, 3, 2]
    assert result.steps == [
        SoupStep(1, 0.70, 0.70, True, 0.70),
        SoupStep(3, 0.65, 0.75, True, 0.75),
        SoupStep(4, 0.65, 0.65, False, 0.75),
        SoupStep(0, 0.60, 0.75, False, 0.75),
        SoupStep(2, 0.50, 0.80, True, 0.80),
    ]
    assert result.score == 0.80
    assert result.state_dict["w"].tolist() == [2.0, -2.0]
    assert result.state_dict["w"].dtype == torch.float32
    # 5 individual evaluations (in path order), then the 4 candidates.
    assert members.evaluated == [10.0, 3.0, -2.0, 5.0, 7.0, 4.0, 5.0, 6.0, 2.0]


def test_greedy_soup_tie_accepted_with_greater_or_equal():
    # Same ranking; m0's tie (candidate 6 -> 0.75) is now kept: soup sum 18 over 3.
    # m2: candidate (18 - 2) / 4 = 4 -> 0.75 >= 0.75, kept too; final x = 16 / 4 = 4.
    members = Members(MEMBER_X)
    result = greedy_soup(members.paths, members.load, members.evaluate, strict=False)
    assert result.ingredients == [1, 3, 0, 2]
    assert [s.accepted for s in result.steps] == [True, True, False, True, True]
    assert [s.candidate_score for s in result.steps] == [0.70, 0.75, 0.65, 0.75, 0.75]
    assert result.state_dict["w"].tolist() == [4.0, -4.0]


def test_greedy_soup_uses_given_scores_without_reevaluating_members():
    members = Members(MEMBER_X)
    scores = [SCORE_OF_X[x] for x in MEMBER_X]
    result = greedy_soup(members.paths, members.load, members.evaluate, scores=scores)
    assert result.ingredients == [1, 3, 2]
    assert members.evaluated == [4.0, 5.0, 6.0, 2.0]
    assert members.loads == [Path("m1.pt"), Path("m3.pt"), Path("m4.pt"), Path("m0.pt"), Path("m2.pt")]


def test_greedy_soup_keeps_integer_buffers_of_the_best_member_bit_exact():
    members = Members(MEMBER_X)
    result = greedy_soup(members.paths, members.load, members.evaluate)
    counter = result.state_dict["bn.num_batches_tracked"]
    assert counter.dtype == torch.int64
    assert counter.item() == 101  # m1 ranked first; averaging 101, 103, 102 would give 102


def test_greedy_soup_rejects_bad_scores():
    members = Members(MEMBER_X)
    with pytest.raises(PodiumError, match="4 scores for 5 members"):
        greedy_soup(members.paths, members.load, members.evaluate, scores=[0.1] * 4)
    with pytest.raises(PodiumError, match=r"m2\.pt: held-out score is NaN"):
        greedy_soup(members.paths, members.load, members.evaluate, scores=[0.1, 0.2, float("nan"), 0.3, 0.4])


def test_uniform_soup_is_the_elementwise_mean(tmp_path):
    states = [
        {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([[0.5]]), "n": torch.tensor(7)},
        {"w": torch.tensor([2.0, 4.0]), "b": torch.tensor([[1.5]]), "n": torch.tensor(9)},
        {"w": torch.tensor([6.0, 0.0]), "b": torch.tensor([[4.0]]), "n": torch.tensor(11)},
    ]
    paths = []
    for i, state in enumerate(states):
        paths.append(tmp_path / f"member{i}.pt")
        torch.save(state, paths[-1])
    soup = uniform_soup(paths, lambda p: torch.load(p, weights_only=True))
    # w: [(1 + 2 + 6) / 3, (2 + 4 + 0) / 3] = [3, 2]; b: (0.5 + 1.5 + 4) / 3 = 2; n copied from member 0.
    assert soup["w"].tolist() == [3.0, 2.0]
    assert soup["b"].tolist() == [[2.0]]
    assert soup["n"].item() == 7 and soup["n"].dtype == torch.int64


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_soup_rounds_once_and_matches_greedy_soup_that_accepts_everyone(dtype):
    generator = torch.Generator().manual_seed(0)
    states = [{"w": torch.randn(64, generator=generator, dtype=dtype)} for _ in range(5)]
    originals = [s["w"].clone() for s in states]
    paths = [Path(f"s{i}.pt") for i in range(5)]
    by_path = dict(zip(paths, states, strict=True))
    soup = uniform_soup(paths, by_path.__getitem__)
    expected = (sum(s["w"].double() for s in states) / 5).to(dtype)
    assert torch.equal(soup["w"], expected)
    greedy = greedy_soup(paths, by_path.__getitem__, lambda sd: 1.0, scores=[1.0] * 5, strict=False)
    assert greedy.ingredients == [0, 1, 2, 3, 4]
    assert torch.equal(greedy.state_dict["w"], soup["w"])
    # The loaded tensors themselves are never written to (a caching loader stays correct).
    assert all(torch.equal(s["w"], o) for s, o in zip(states, originals, strict=True))


def test_mismatched_keys_and_shapes_name_the_member_file():
    good = {"w": torch.zeros(2), "bn.num_batches_tracked": torch.tensor(0)}
    missing = {"w": torch.zeros(2)}
    reshaped = {"w": torch.zeros(3), "bn.num_batches_tracked": torch.tensor(0)}
    extra = {**good, "head.bias": torch.zeros(1)}
    files = {Path("a.pt"): good, Path("b.pt"): missing, Path("c.pt"): reshaped, Path("d.pt"): extra}
    with pytest.raises(PodiumError, match=r"b\.pt: key 'bn\.num_batches_tracked' is missing"):
        uniform_soup([Path("a.pt"), Path("b.pt")], files.__getitem__)
    with pytest.raises(PodiumError, match=r"c\.pt: key 'w' has shape \(3,\), expected \(2,\)"):
        greedy_soup([Path("a.pt"), Path("c.pt")], files.__getitem__, lambda sd: 0.0, scores=[1.0, 0.0])
    with pytest.raises(PodiumError, match=r"d\.pt: unexpected key 'head\.bias'"):
        uniform_soup([Path("a.pt"), Path("d.pt")], files.__getitem__)


def test_at_most_one_loaded_member_and_one_candidate_alive_at_a_time():
    # Together with the soup's own accumulator that is 3 state dicts, whatever the number of members.
    members = Members([float(x) for x in range(8)])
    alive: list[weakref.ref] = []
    peak = {"load": 0, "evaluate": 0}

    def count_alive() -> int:
        gc.collect()
        return len({id(obj) for ref in alive if (obj := ref()) is not None})

    def load(path: Path) -> dict[str, torch.Tensor]:
        peak["load"] = max(peak["load"], count_alive())
        state = members.load(path)
        alive.append(weakref.ref(state["w"]))
        return state

    def evaluate(state_dict: dict[str, torch.Tensor]) -> float:
        alive.append(weakref.ref(state_dict["w"]))
        peak["evaluate"] = max(peak["evaluate"], count_alive())
        return -abs(state_dict["w"][0].item() - 3.5)

    result = greedy_soup(members.paths, load, evaluate)
    assert len(members.loads) == 16  # 8 to rank, 8 to soup: each member read once per pass
    assert peak["load"] == 0  # nothing loaded earlier survives into the next load
    assert peak["evaluate"] <= 2  # the member being tried and its candidate
    assert len(result.ingredients) >= 2
