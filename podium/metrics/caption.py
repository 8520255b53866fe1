"""Caption metrics: podium's vectorised CIDEr-D (the SCST reward) and the leaderboard's caption score.

``CiderD`` and ``cider_d`` compute exactly pycocoevalcap's CIDEr-D (its ``Cider`` class): n-grams 1..4 of
whitespace tokens, tf-idf weights ``count * (log N - log max(1, df))``, a cosine per n-gram order whose
numerator clips the candidate's weight at the reference's, ``min(h, r) * r``, a gaussian penalty (sigma 6)
on the difference in length counted in bigrams, the mean over orders and references, times 10. They do it
with sparse count matrices instead of a dict per sentence. ``cider_d`` takes the document frequencies from
the references being scored, as pycocoevalcap does; ``CiderD`` takes them once from a corpus (SCST's
reward uses the training references, as ExpansionNet's does) and then scores any number of batches.

``caption_score`` is the competition's formula over pycocoevalcap's own scorers, with its PTB tokenizer and
METEOR 1.5 run on Java.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from podium.errors import PodiumError

Sentence = str | Sequence[str]
"""A caption: a string (split on whitespace, as pycocoevalcap does) or its list of tokens."""

CAPTION_WEIGHTS = {"cider_d": 4.0, "meteor": 3.0, "bleu3": 1.0, "bleu4": 1.0, "rouge_l": 1.0}
"""The competition's caption score: 4 CIDEr-D + 3 METEOR + 2 (BLEU-3 + BLEU-4) / 2 + ROUGE-L."""

_WORD_BITS = 31  # an n-gram's key packs its (n-1)-gram prefix's id above its last word's id


class CiderD:
    """CIDEr-D with document frequencies computed once from a corpus of reference lists.

    ``corpus`` holds one list of reference captions per image: ``df`` counts the images whose references
    contain an n-gram and ``log(len(corpus))`` is the idf's reference length, as in pycocoevalcap when the
    corpus is the scored set. The corpus's words and n-grams are interned as integer ids so that a batch is
    scored with a handful of array and sparse-matrix operations.
    """

    def __init__(self, corpus: Sequence[Sequence[Sentence]], n: int = 4, sigma: float = 6.0):
        _check_references(corpus, "the corpus")
        self.n, self.sigma = n, sigma
        self.log_images = float(np.log(len(corpus)))
        sentences = [_tokens(s) for refs in corpus for s in refs]
        flat = list(itertools.chain.from_iterable(sentences))
        self._vocab = {word: i for i, word in enumerate(sorted(set(flat)))}
        lengths = np.array([len(s) for s in sentences], dtype=np.int64)
        rows, ids, keys = _ngrams(_word_ids(flat, self._vocab), lengths, [np.empty(0, np.int64)] * n)
        self._keys = keys  # per order, the corpus's n-gram keys, sorted: an n-gram's id is its position
        widths = [len(k) for k in keys]
        counts = _count_matrix(rows, ids, widths, len(sentences))
        image = np.repeat(np.arange(len(corpus)), [len(refs) for refs in corpus])
        df = _document_frequency(counts, image, len(corpus))
        self._df = np.split(df, np.cumsum(widths)[:-1])  # per order, indexed by n-gram id

    def score(self, candidates: Sequence[Sentence], references: Sequence[Sequence[Sentence]]) -> np.ndarray:
        """CIDEr-D of each candidate against its own references, shape ``(len(candidates),)``.

        Only the batch's n-grams become columns: beyond a binary search, a call's cost does not grow with the
        corpus.
        """
        owner, sentences = _pair(candidates, references)
        flat = list(itertools.chain.from_iterable(sentences))
        lengths = np.array([len(s) for s in sentences], dtype=np.int64)
        rows, ids, _ = _ngrams(_word_ids(flat, self._vocab), lengths, self._keys)
        used, local = zip(*(np.unique(i, return_inverse=True) for i in ids), strict=True)
        widths = [len(u) for u in used]
        counts = _count_matrix(rows, [i.reshape(-1) for i in local], widths, len(sentences))
        # an id past the corpus's n-grams is an n-gram outside it: df 0
        df = np.concatenate([np.append(d, 0.0)[np.minimum(u, len(d))] for u, d in zip(used, self._df, strict=True)])
        return _cider(counts, lengths, owner, self.log_images - np.log(np.maximum(1.0, df)), widths, self.sigma)


def cider_d(
    candidates: Sequence[Sentence], references: Sequence[Sequence[Sentence]], n: int = 4, sigma: float = 6.0
) -> np.ndarray:
    """pycocoevalcap's CIDEr-D per candidate: document frequencies from the references being scored."""
    owner, sentences = _pair(candidates, references)
    flat = list(itertools.chain.from_iterable(sentences))
    lengths = np.array([len(s) for s in sentences], dtype=np.int64)
    vocab = {word: i for i, word in enumerate(dict.fromkeys(flat))}
    rows, ids, keys = _ngrams(_word_ids(flat, vocab), lengths, [np.empty(0, np.int64)] * n)
    widths = [len(k) for k in keys]
    counts = _count_matrix(rows, ids, widths, len(sentences))
    df = _document_frequency(counts[len(candidates) :], owner, len(candidates))
    return _cider(counts, lengths, owner, np.log(len(candidates)) - np.log(np.maximum(1.0, df)), widths, sigma)


def _tokens(sentence: Sentence) -> Sequence[str]:
    return sentence.split() if isinstance(sentence, str) else sentence


def _check_references(references: Sequence[Sequence[Sentence]], what: str) -> None:
    if not references:
        raise PodiumError(f"CIDEr-D: {what} has no images")
    empty = next((i for i, refs in enumerate(references) if not refs), None)
    if empty is not None:
        raise PodiumError(f"CIDEr-D: image {empty} of {what} has no reference caption")


def _pair(
    candidates: Sequence[Sentence], references: Sequence[Sequence[Sentence]]
) -> tuple[np.ndarray, list[Sequence[str]]]:
    """Each reference's candidate index, and the candidates' then the references' tokens."""
    if len(candidates) != len(references):
        raise PodiumError(f"CIDEr-D: {len(candidates)} candidates for {len(references)} reference lists")
    _check_references(references, "the references")
    owner = np.repeat(np.arange(len(candidates)), [len(refs) for refs in references])
    return owner, [_tokens(s) for s in candidates] + [_tokens(s) for refs in references for s in refs]


def _word_ids(flat: list[str], vocab: dict[str, int]) -> np.ndarray:
    """Ids from ``vocab``; words outside it get the next ids, in order of first appearance."""
    words = np.fromiter(map(vocab.get, flat, itertools.repeat(-1)), dtype=np.int64, count=len(flat))
    unknown = np.flatnonzero(words < 0)
    if len(unknown):
        extra = {word: len(vocab) + i for i, word in enumerate(dict.fromkeys(flat[i] for i in unknown))}
        words[unknown] = np.fromiter(map(extra.__getitem__, (flat[i] for i in unknown)), np.int64, len(unknown))
    return words


def _ngrams(
    words: np.ndarray, lengths: np.ndarray, known: Sequence[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Per order: each n-gram occurrence's sentence and id, and the sorted keys of the unknown n-grams.

    ``words`` concatenates the sentences of ``lengths``. The key of a 1-gram is its word id; that of a
    k-gram packs the id of its (k-1)-gram prefix with its last word's id. An n-gram's id is its key's
    position in ``known[k - 1]`` (sorted) or, if absent, ``len(known[k - 1])`` plus the key's rank among the
    absent ones. Exact for any vocabulary, and the same n-gram always gets the same id within a call.
    """
    sentence = np.repeat(np.arange(len(lengths)), lengths)
    remaining = np.repeat(np.cumsum(lengths), lengths) - np.arange(len(words))  # words from here to the end
    prefix = np.zeros(len(words), dtype=np.int64)
    rows, ids, unknown = [], [], []
    for k, table in enumerate(known, start=1):
        start = np.flatnonzero(remaining >= k)
        keys = (prefix[start] << _WORD_BITS) | words[start + k - 1] if k > 1 else words[start]
        at = np.searchsorted(table, keys)
        found = at < len(table)
        found[found] = table[at[found]] == keys[found]
        new_keys, new_ids = np.unique(keys[~found], return_inverse=True)
        at[~found] = len(table) + new_ids.reshape(-1)
        prefix[start] = at
        rows.append(sentence[start])
        ids.append(at)
        unknown.append(new_keys)
    return rows, ids, unknown


def _offsets(widths: Sequence[int]) -> np.ndarray:
    """First column of each n-gram order in a count matrix."""
    return np.cumsum([0, *widths[:-1]])


def _count_matrix(
    rows: list[np.ndarray], ids: list[np.ndarray], widths: Sequence[int], sentences: int
) -> sp.csr_matrix:
    """``(sentences, sum(widths))`` n-gram counts, the orders side by side."""
    columns = np.concatenate([i + o for i, o in zip(ids, _offsets(widths), strict=True)])
    data = (np.ones(len(columns)), (np.concatenate(rows), columns))
    return sp.csr_matrix(data, shape=(sentences, int(sum(widths))))  # duplicates are summed


def _document_frequency(counts: sp.csr_matrix, image: np.ndarray, images: int) -> np.ndarray:
    """Per column, the number of images among whose sentences (rows of ``counts``) it occurs."""
    row = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
    presence = sp.csr_matrix((np.ones(counts.nnz), (image[row], counts.indices)), shape=(images, counts.shape[1]))
    return np.bincount(presence.indices, minlength=counts.shape[1]).astype(np.float64)


def _cider(
    counts: sp.csr_matrix,
    lengths: np.ndarray,
    owner: np.ndarray,
    idf: np.ndarray,
    widths: Sequence[int],
    sigma: float,
) -> np.ndarray:
    """CIDEr-D of the first ``len(lengths) - len(owner)`` rows (candidates), the other rows their references.

    The clipped numerator min(tf_h idf, tf_r idf) tf_r idf equals min(tf_h, tf_r) tf_r idf^2 (idf >= 0), so
    counts carry the matching and ``weights`` sums idf^2 per order.
    """
    candidates = len(lengths) - len(owner)
    order = np.repeat(np.arange(len(widths)), widths)
    weights = sp.csr_matrix((idf**2, (np.arange(len(idf)), order)), shape=(len(idf), len(widths)))
    hyp, ref = counts[:candidates], counts[candidates:]
    numerator = (hyp[owner].minimum(ref).multiply(ref) @ weights).toarray()
    norms = np.sqrt((counts.multiply(counts) @ weights).toarray())
    denominator = norms[:candidates][owner] * norms[candidates:]
    cosine = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)
    bigrams = np.maximum(lengths - 1, 0)  # pycocoevalcap's "length" counts bigrams
    delta = (bigrams[:candidates][owner] - bigrams[candidates:]).astype(np.float64)
    per_reference = cosine.mean(axis=1) * np.exp(-(delta**2) / (2 * sigma**2))
    references = np.bincount(owner, minlength=candidates)
    return 10.0 * np.bincount(owner, weights=per_reference, minlength=candidates) / references


def caption_score(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """The leaderboard's caption score and its components, through pycocoevalcap (PTB tokenizer, Java).

    ``predictions`` maps each image to one caption, ``references`` each image to its captions; the keys
    must be the same. Both are PTB-tokenised and lower-cased in one Java call (runs of whitespace become
    one space first, so a caption never spans two of the tokenizer's lines), then scored as
    pycocoevalcap's ``COCOEvalCap`` does: corpus BLEU (option 'closest'), METEOR 1.5's corpus score, mean
    ROUGE-L and mean CIDEr-D (x10, df over these references). The rules name the formula, not the
    implementation; pycocoevalcap's scale (CIDEr-D x10) is the usual reading. ``score`` is not divided by
    anything.
    """
    if predictions.keys() != references.keys():
        missing = sorted(set(references) - set(predictions))[:5]
        extra = sorted(set(predictions) - set(references))[:5]
        raise PodiumError(
            f"caption_score: images without a prediction {missing}, predictions without references {extra}"
        )
    if not predictions:
        raise PodiumError("caption_score: no images to score")
    empty = [k for k, refs in references.items() if not refs][:5]
    if empty:
        raise PodiumError(f"caption_score: images without a reference caption: {empty}")
    if shutil.which("java") is None:
        raise PodiumError(
            "caption_score needs Java: pycocoevalcap's PTB tokenizer and METEOR 1.5 run `java`, which is not "
            "on PATH; install a JRE (e.g. `apt-get install default-jre-headless`) and run again"
        )
    meteor = Meteor()  # starts the JVM now: its paraphrase table loads (~5 s) while the rest is scored
    try:
        captions = {("pred", k): [{"caption": " ".join(c.split())}] for k, c in predictions.items()}
        captions |= {("ref", k): [{"caption": " ".join(c.split())} for c in refs] for k, refs in references.items()}
        tokenized = PTBTokenizer().tokenize(captions)
        res = {k: tokenized[("pred", k)] for k in predictions}
        gts = {k: tokenized[("ref", k)] for k in predictions}
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        components = {
            "cider_d": float(Cider().compute_score(gts, res)[0]),
            "meteor": float(meteor.compute_score(gts, res)[0]),
            "bleu3": float(bleu[2]),
            "bleu4": float(bleu[3]),
            "rouge_l": float(Rouge().compute_score(gts, res)[0]),
        }
    finally:
        # pycocoevalcap stops METEOR's JVM only in __del__; stop it here, whatever happened.
        meteor.meteor_p.kill()
        meteor.meteor_p.wait()
    score = sum(CAPTION_WEIGHTS[name] * value for name, value in components.items())
    return {**components, "score": score, "images": len(predictions)}
