"""Caption and MOS metrics: podium's CIDEr-D against pycocoevalcap's and by hand, the leaderboard's caption
score against pycocoevalcap's own scorers (Java), and the MOS score against scipy and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
from scipy import stats

from podium.errors import PodiumError
from podium.metrics.caption import CiderD, caption_score, cider_d
from podium.metrics.regression import mos_score


def reference_cider(candidates: list[str], references: list[list[str]]) -> np.ndarray:
    """pycocoevalcap's CIDEr-D per candidate, one image per candidate."""
    _, scores = Cider().compute_score(dict(enumerate(references)), {i: [c] for i, c in enumerate(candidates)})
    return np.asarray(scores)


def zipf_captions(seed: int, images: int, vocab: int = 60) -> tuple[list[str], list[list[str]]]:
    """Candidates and 1..6 references per image that share words and n-grams as real captions do."""
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(vocab)])
    p = 1.0 / np.arange(1, vocab + 1)
    p /= p.sum()
    base = [rng.choice(words, size=rng.integers(3, 12), p=p) for _ in range(images)]

    def variant(sentence: np.ndarray) -> str:
        kept = [w for w in sentence if rng.random() > 0.3]
        return " ".join(kept + list(rng.choice(words, size=rng.integers(0, 3), p=p)))

    references = [[variant(b) for _ in range(rng.integers(1, 7))] for b in base]
    return [variant(b) for b in base], references


def test_cider_d_by_hand():
    # Two images, N = 2, L = ln 2. Document frequencies over the images' reference sets: "a" occurs in
    # both (idf ln 2 - ln 2 = 0); every other n-gram in one or none (idf ln 2 - ln max(1, df) = L).
    references = [["a cat sat", "the cat"], ["a dog"]]
    candidates = ["cat cat cat", "a dog"]
    # Candidate 1 "cat cat cat": tf-idf 1-grams {cat: 3L} (norm 3L), 2-grams {cat cat: 2L}, 3-grams
    # {cat cat cat: L}, no 4-gram. Its length is counted in bigrams: 2.
    # Ref "a cat sat": 1-grams {a: 0, cat: L, sat: L} (norm sqrt(2) L); it shares only "cat".
    #   1-gram cosine: min(3L, L) * L / (3L * sqrt(2) L) = 1 / (3 sqrt 2) (the clipping at work);
    #   2-, 3-grams share nothing, no 4-grams: 0. Bigram lengths 2 and 2: penalty 1.
    # Ref "the cat": 1-grams {the: L, cat: L}: the same 1-gram cosine 1 / (3 sqrt 2), nothing else;
    #   lengths 2 and 1: penalty exp(-1 / (2 * 6^2)).
    # Score: 10 * mean over refs of (mean over the 4 orders).
    per_order = 1 / (3 * math.sqrt(2)) / 4
    first = 10 * (per_order * 1 + per_order * math.exp(-1 / 72)) / 2
    # Candidate 2 "a dog" = its only reference: 1-grams {a: 0, dog: L} against the same, cosine 1;
    # 2-grams {a dog: L}, cosine 1; no 3- or 4-grams: 0. Score 10 * (1 + 1 + 0 + 0) / 4 = 5.
    expected = np.array([first, 5.0])
    assert first == pytest.approx(0.585192, abs=1e-6)
    np.testing.assert_allclose(cider_d(candidates, references), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(CiderD(references).score(candidates, references), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(reference_cider(candidates, references), expected, rtol=0, atol=1e-12)


CASES = {
    "repeated n-grams": (
        ["a a a a a", "the cat the cat the cat", "dog dog"],
        [["a a b"], ["the cat sat on the mat", "a cat"], ["dog", "dog dog dog dog"]],
    ),
    "no overlap": (["red green blue", "x"], [["one two three"], ["y z"]]),
    "candidate longer than refs": (
        ["a very long caption that keeps going on and on about the blurry dark image", "short"],
        [["a blurry image", "dark"], ["a short caption of some length here"]],
    ),
    "many references, some shared": (
        ["the image is blurry", "the image is too dark", "colours look washed out"],
        [
            ["the image is blurry", "blurry image", "an out of focus image", "the photo is blurry", "soft"],
            ["the image is dark", "too dark"],
            ["washed out colours", "the colours look faded and washed out", "the image is blurry"],
        ],
    ),
    "empty candidate, one-word captions": (["", "blur", "dark"], [["blur"], ["blur"], ["dark", "dark image"]]),
}


@pytest.mark.parametrize("name", CASES)
def test_cider_d_matches_pycocoevalcap(name):
    candidates, references = CASES[name]
    expected = reference_cider(candidates, references)
    np.testing.assert_allclose(cider_d(candidates, references), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(CiderD(references).score(candidates, references), expected, rtol=0, atol=1e-9)


def test_cider_d_matches_pycocoevalcap_on_a_batch():
    candidates, references = zipf_captions(seed=3, images=200)
    expected = reference_cider(candidates, references)
    assert expected.std() > 0.1  # the batch has a spread of scores, not all zeros
    np.testing.assert_allclose(cider_d(candidates, references), expected, rtol=0, atol=1e-9)
    tokens = [c.split() for c in candidates], [[r.split() for r in refs] for refs in references]
    np.testing.assert_allclose(cider_d(*tokens), expected, rtol=0, atol=1e-9)


def test_corpus_df_scores_any_batch_as_pycocoevalcap_scores_the_corpus():
    # The SCST reward: df from all training references once, then batches of a few images x samples.
    # A candidate's CIDEr-D depends on the other images only through df, so pycocoevalcap scoring the
    # whole corpus (sample s as every image's candidate) gives each sample's expected reward.
    corpus_candidates, corpus = zipf_captions(seed=5, images=40)
    reward = CiderD(corpus)
    batch, samples = [7, 3, 31], 3
    rng = np.random.default_rng(0)
    drawn = {(i, s): " ".join(rng.permutation(corpus[i][0].split())) for i in batch for s in range(samples)}
    drawn[(3, 1)] = corpus_candidates[3]
    got = reward.score(list(drawn.values()), [corpus[i] for i, _ in drawn])
    for s in range(samples):
        candidates = [drawn.get((i, s), corpus_candidates[i]) for i in range(len(corpus))]
        expected = reference_cider(candidates, corpus)
        for i in batch:
            assert got[list(drawn).index((i, s))] == pytest.approx(expected[i], abs=1e-9)


def test_corpus_df_of_words_outside_the_corpus_is_zero():
    # N = 2; "a" is in both images (idf 0); "bird" and "a bird" are nowhere (df 0 -> idf ln 2), so the
    # candidate equals its reference on 1- and 2-grams: 10 * (1 + 1 + 0 + 0) / 4.
    reward = CiderD([["a cat"], ["a dog"]])
    assert reward.score(["a bird"], [["a bird"]])[0] == pytest.approx(5.0, abs=1e-12)
    assert reward.score(["a bird"], [["a fish"]])[0] == 0.0  # "a" has weight 0, nothing else matches
    # The corpus has no 3- or 4-grams at all; the batch's are outside it and match: cosine 1 at every order.
    assert reward.score(["a bird flew by"], [["a bird flew by"]])[0] == pytest.approx(10.0, abs=1e-12)


def test_cider_d_validates():
    with pytest.raises(PodiumError, match="2 candidates for 1 reference lists"):
        cider_d(["a", "b"], [["a"]])
    with pytest.raises(PodiumError, match="image 1 of the references has no reference caption"):
        cider_d(["a", "b"], [["a"], []])
    with pytest.raises(PodiumError, match="the corpus has no images"):
        CiderD([])


PREDICTIONS = {
    "img_a": "The image is blurry and too dark.",
    "img_b": "Colours look washed-out; the photo's exposure is high!",
    "img_c": "A sharp, well-lit picture",
}
REFERENCES = {
    "img_a": ["The image is blurry.", "It's too dark and out of focus", "Dark, blurry photo."],
    "img_b": ["The colours are washed out and it is overexposed.", "Too bright (overexposed)."],
    "img_c": ["A sharp picture with good lighting.", "Well-lit and sharp", "Nice clear photo", "sharp"],
}


def test_caption_score_matches_pycocoevalcap_scorers(monkeypatch):
    calls = []

    class RecordingMeteor(Meteor):
        """pycocoevalcap's METEOR, keeping what it was asked and answered (one JVM load, ~5 s, not two)."""

        def compute_score(self, gts, res):
            calls.append((gts, res, super().compute_score(gts, res)))
            return calls[-1][2]

    monkeypatch.setattr("podium.metrics.caption.Meteor", RecordingMeteor)
    result = caption_score(PREDICTIONS, REFERENCES)
    tokenizer = PTBTokenizer()  # as COCOEvalCap: references and predictions tokenised apart
    gts = tokenizer.tokenize({k: [{"caption": c} for c in refs] for k, refs in REFERENCES.items()})
    res = tokenizer.tokenize({k: [{"caption": c}] for k, c in PREDICTIONS.items()})
    assert gts["img_b"][0] == "the colours are washed out and it is overexposed"
    [(meteor_gts, meteor_res, (meteor, _))] = calls
    assert (meteor_gts, meteor_res) == (gts, res)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    expected = {
        "cider_d": Cider().compute_score(gts, res)[0],
        "meteor": meteor,
        "bleu3": bleu[2],
        "bleu4": bleu[3],
        "rouge_l": Rouge().compute_score(gts, res)[0],
    }
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, abs=1e-12), name
    assert 0 < result["meteor"] < 1
    assert result["cider_d"] > 0
    total = 4 * expected["cider_d"] + 3 * expected["meteor"] + 2 * (expected["bleu3"] + expected["bleu4"]) / 2
    assert result["score"] == pytest.approx(total + expected["rouge_l"], abs=1e-12)
    assert result["images"] == 3


def test_caption_score_without_java_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PodiumError, match="caption_score needs Java"):
        caption_score(PREDICTIONS, REFERENCES)


def test_caption_score_validates_images():
    with pytest.raises(PodiumError, match=r"images without a prediction \['img_c'\]"):
        caption_score({k: PREDICTIONS[k] for k in ("img_a", "img_b")}, REFERENCES)
    with pytest.raises(PodiumError, match=r"without a reference caption: \['img_a'\]"):
        caption_score({"img_a": "x"}, {"img_a": []})


def test_mos_score_matches_scipy():
    rng = np.random.default_rng(0)
    targets = rng.normal(5.6, 0.8, size=300)
    predictions = targets + rng.normal(0, 0.6, size=300)
    result = mos_score(predictions, targets)
    plcc, srcc = stats.pearsonr(predictions, targets)[0], stats.spearmanr(predictions, targets)[0]
    assert result["plcc"] == pytest.approx(plcc, abs=1e-12)
    assert result["srcc"] == pytest.approx(srcc, abs=1e-12)
    assert result["score"] == pytest.approx((plcc + srcc) / 2, abs=1e-12)


def test_mos_score_by_hand():
    # Monotone: SRCC 1. PLCC: deviations x (-1.5, -0.5, 0.5, 1.5), y (-1.75, -0.75, 0.25, 2.25);
    # sum xy = 6.5, sum x^2 = 5, sum y^2 = 8.75, r = 6.5 / sqrt(43.75).
    result = mos_score([1, 2, 3, 4], [1, 2, 3, 5])
    assert result["srcc"] == pytest.approx(1.0, abs=1e-12)
    assert result["plcc"] == pytest.approx(6.5 / math.sqrt(43.75), abs=1e-12)
    assert result["score"] == pytest.approx((6.5 / math.sqrt(43.75) + 1) / 2, abs=1e-12)
    # An outlier makes PLCC positive while the ranks disagree: rank differences (4, 2, 0, -2, -4, 0),
    # SRCC = 1 - 6 * 40 / (6 * 35) = -1/7, clipped to 0 in the score.
    result = mos_score([5, 4, 3, 2, 1, 100], [1, 2, 3, 4, 5, 100])
    assert result["srcc"] == pytest.approx(-1 / 7, abs=1e-12)
    assert result["plcc"] > 0.9
    assert result["score"] == pytest.approx(result["plcc"] / 2, abs=1e-12)
    assert mos_score([4, 3, 2, 1], [1, 2, 3, 4])["score"] == 0.0  # both negative


def test_mos_score_constant_predictor_scores_zero():
    result = mos_score(np.full(5, 5.58), [4.0, 5.0, 6.0, 7.0, 5.5])
    assert result == {"score": 0.0, "plcc": 0.0, "srcc": 0.0, "constant_predictions": True}


def test_mos_score_validates():
    with pytest.raises(PodiumError, match="all targets equal 5.0"):
        mos_score([1, 2, 3], [5, 5, 5])
    with pytest.raises(PodiumError, match=r"predictions\[1\] is not finite"):
        mos_score([1, np.nan, 3], [1, 2, 3])
    with pytest.raises(PodiumError, match="must be the same 1-D shape"):
        mos_score([1, 2], [1, 2, 3])
    with pytest.raises(PodiumError, match="at least 2 images"):
        mos_score([1], [1])
