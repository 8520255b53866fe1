"""Voting rules on hand-made predictions, ties included."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from podium.ensemble.vote import age_weighted, hard_vote, soft_vote, split_vote, weighted_mean
from podium.errors import PodiumError


def test_weighted_mean_normalises_weights():
    # Weights 3, 1 -> 0.75, 0.25: [0.75*0.25 + 0.25*0.75, 0.75*1 + 0.25*0] = [0.375, 0.75] (exact in binary).
    out = weighted_mean([np.array([[0.25, 1.0]]), np.array([[0.75, 0.0]])], [3, 1])
    assert out.tolist() == [[0.375, 0.75]]
    assert out.dtype == np.float64


def test_weighted_mean_dirty_mnist_weights_and_default():
    # The seed's 1.5, 1, 1, 1, 1: (1.5 * 0.9 + 0.2 + 0.4 + 0.6 + 0.8) / 5.5 = 3.35 / 5.5.
    probs = [np.array([0.9]), np.array([0.2]), np.array([0.4]), np.array([0.6]), np.array([0.8])]
    assert weighted_mean(probs, [1.5, 1, 1, 1, 1])[0] == pytest.approx(3.35 / 5.5, abs=1e-15)
    assert weighted_mean(probs)[0] == pytest.approx(2.9 / 5, abs=1e-15)
    assert weighted_mean([torch.tensor([0.5]), torch.tensor([1.0])]).tolist() == [0.75]


def test_weighted_mean_validates():
    with pytest.raises(PodiumError, match="input 1 has shape"):
        weighted_mean([np.zeros(3), np.zeros(4)])
    with pytest.raises(PodiumError, match="2 weights for 3 inputs"):
        weighted_mean([np.zeros(3)] * 3, [1, 1])
    with pytest.raises(PodiumError, match="not all 0"):
        weighted_mean([np.zeros(3)] * 2, [1, -1])
    with pytest.raises(PodiumError, match="no inputs"):
        weighted_mean([])


def test_soft_vote_softmax_is_the_mean_probability():
    # softmax([0, ln 3]) = [1/4, 3/4]; softmax([0, 0]) = [1/2, 1/2]; mean = [3/8, 5/8].
    scores = soft_vote([np.array([[0.0, math.log(3)]]), np.array([[0.0, 0.0]])])
    np.testing.assert_allclose(scores, [[0.375, 0.625]], rtol=0, atol=1e-15)


def test_soft_vote_minmax_scales_each_model_per_item_then_sums():
    # Model A [1, 3, 2] -> (x - 1) / 2 = [0, 1, 0.5]; model B [-2, -4, 0] -> (x + 4) / 4 = [0.5, 0, 1].
    # A constant row [5, 5, 5] carries no preference and scales to zeros.
    a = np.array([[1.0, 3.0, 2.0], [5.0, 5.0, 5.0]])
    b = np.array([[-2.0, -4.0, 0.0], [0.0, 2.0, 1.0]])
    scores = soft_vote([a, b], method="minmax")
    assert scores.tolist() == [[0.5, 1.0, 1.5], [0.0, 1.0, 0.5]]
    assert scores.argmax(axis=1).tolist() == [2, 1]


def test_soft_vote_rejects_unknown_method_and_bad_shapes():
    with pytest.raises(PodiumError, match="unknown method 'mean'"):
        soft_vote([np.zeros((1, 2))], method="mean")
    with pytest.raises(PodiumError, match="expected 2"):
        soft_vote([np.zeros(3)])


def test_hard_vote_majority_and_ties_go_to_the_earliest_model():
    a = [0, 1, 2, 3]
    b = [0, 2, 1, 3]
    c = [1, 2, 3, 0]
    # item 0: 0,0,1 -> 0.  item 1: 1,2,2 -> 2.  item 3: 3,3,0 -> 3.
    # item 2: 2,1,3 all tied -> model A's 2 (the smallest-class rule would say 1).
    assert hard_vote([a, b, c], num_classes=4).tolist() == [0, 2, 2, 3]
    # Two models disagreeing: the first one wins.
    assert hard_vote([[3], [1]], num_classes=4).tolist() == [3]
    # Votes 1, 0, 0, 2, 2: classes 0 and 2 tie with two votes; model 0 voted 1 (not tied), the
    # earliest model voting a tied class is model 1 -> 0.
    assert hard_vote([[1], [0], [0], [2], [2]], num_classes=3).tolist() == [0]


def test_hard_vote_validates_classes():
    with pytest.raises(PodiumError, match="input 1 item 0 has class 4, outside 0..3"):
        hard_vote([[0], [4]], num_classes=4)
    with pytest.raises(PodiumError, match="must be integers"):
        hard_vote([[0.0], [1.0]], num_classes=4)


def test_split_vote_votes_mask_gender_age_separately():
    # class = mask*6 + gender*3 + age.
    # A = 5 (mask 0, gender 1, age 2); B = 9 (mask 1, gender 1, age 0); C = 8 (mask 1, gender 0, age 2).
    # mask 0,1,1 -> 1; gender 1,1,0 -> 1; age 2,0,2 -> 2 -> 6 + 3 + 2 = 11, a class nobody predicted.
    # A plain hard vote sees three different classes and takes A's: 5.
    assert split_vote([[5], [9], [8]]).tolist() == [11]
    assert hard_vote([[5], [9], [8]], num_classes=18).tolist() == [5]
    # A = 5 (0, 1, 2), B = 12 (2, 0, 0): every head ties -> A's head values -> 5.
    # Then A = 1 (0,0,1), B = 17 (2,1,2), C = 15 (2,1,0), D = 4 (0,1,1):
    # mask 0,2,2,0 tie -> A's 0; gender 0,1,1,1 -> 1; age 1,2,0,1 -> 1 -> 0 + 3 + 1 = 4.
    assert split_vote([[5], [12]]).tolist() == [5]
    assert split_vote([[1], [17], [15], [4]]).tolist() == [4]
    with pytest.raises(PodiumError, match="class 18, outside 0..17"):
        split_vote([[18]])


def test_age_weighted_multiplies_each_class_by_its_age_weight():
    # Age logits [1, 2, 1] sum to 4 -> weights 1 + [1/4, 2/4, 1/4] = [1.25, 1.5, 1.25];
    # class c uses the weight of age c % 3.
    logits = np.arange(18, dtype=np.float64)[None, :]
    out = age_weighted(logits, np.array([[1.0, 2.0, 1.0]]))
    expected = [c * (1.25, 1.5, 1.25)[c % 3] for c in range(18)]
    assert out[0].tolist() == expected
    assert out[0, 4] == 6.0  # class 4 = mask 0, gender 1, age 1: 4 * 1.5
    with pytest.raises(PodiumError, match="item 0 has age logits summing to 0"):
        age_weighted(logits, np.array([[1.0, -1.0, 0.0]]))
    with pytest.raises(PodiumError, match=r"must be \(items, 18\)"):
        age_weighted(np.zeros((1, 17)), np.ones((1, 3)))
