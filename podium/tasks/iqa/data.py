"""Readers for the Samsung AI Challenge 2023 (Dacon) image-quality layout, the split and the caption vocabulary.

Layout (specs/iqa-captioning.md section 1, iqa-verified.md section 3)::

    train.csv              img_name,img_path,mos,comments   one row per (image, comment): img_name repeats
    test.csv               img_name,img_path
    sample_submission.csv  img_name,mos,comments            the submission's rows, in its order
    train/<img_name>.jpg   img_path ./train/<img_name>.jpg, relative to the data root
    test/<img_name>.jpg
    answers/test_answers.csv  img_name,mos,comments         podium's synthetic data only: one row per
                                                            reference comment, like a submission

Every reader fails with a :class:`DataError` naming the file, the line and the column, what it found and
what it expected. Images are converted to RGB; an unreadable one is an error, never the black image the
original feature extractor substituted for every non-RGB file (iqa-verified.md 1.8).

Captions are cleaned exactly as ExpansionNet v2 does (iqa-verified.md 1.3), so a vocabulary built here
indexes words as the original's (and the seed's) checkpoints expect.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from podium.engine.seeding import split_keys
from podium.errors import DataError
from podium.store import atomic_write

TRAIN_CSV = "train.csv"
TEST_CSV = "test.csv"
SAMPLE_SUBMISSION_CSV = "sample_submission.csv"
ANSWERS_CSV = "answers/test_answers.csv"
TRAIN_COLUMNS = ("img_name", "img_path", "mos", "comments")
TEST_COLUMNS = ("img_name", "img_path")
SUBMISSION_COLUMNS = ("img_name", "mos", "comments")

PAD, SOS, EOS, UNK = "PAD", "SOS", "EOS", "UNK"
SPECIAL_TOKENS = (PAD, SOS, EOS, UNK)
# ExpansionNet's remove_punctuations list; after the spacing step only its one-character entries can occur
PUNCTUATION = frozenset({"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"})
_NON_WORD = re.compile(r"([^\w0-9])")


# ---------------------------------------------------------------------------------------------- CSV


def read_csv_rows(path: str | os.PathLike, columns: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """``(line, {column: value})`` per record of a UTF-8 CSV with at least ``columns`` (others ignored).

    ``line`` is the physical line the record starts on (a quoted comment may span lines), so errors can
    point at it. Blank lines are skipped; a record with more or fewer fields than the header is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found (expected a CSV with columns {','.join(columns)})")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [c.strip() for c in next(reader, [])]
            missing = [c for c in columns if c not in header]
            if missing:
                raise DataError(f"{path}: line 1: header is {','.join(header)!r}; expected columns "
                                f"{','.join(columns)} (missing column {missing[0]!r})")
            where = {c: header.index(c) for c in columns}
            rows = []
            start = reader.line_num + 1
            for fields in reader:
                line, start = start, reader.line_num + 1
                if not fields:
                    continue
                if len(fields) != len(header):
                    raise DataError(f"{path}: line {line}: {len(fields)} fields; expected {len(header)} "
                                    f"({','.join(header)})")
                rows.append((line, {c: fields[i] for c, i in where.items()}))
            return rows
    except csv.Error as e:
        raise DataError(f"{path}: line {reader.line_num}: not valid CSV ({e})") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: byte {e.start}: not UTF-8 text ({e.reason})") from e


def _name(path: Path, line: int, row: dict[str, str]) -> str:
    name = row["img_name"].strip()
    if not name:
        raise DataError(f"{path}: line {line}, column img_name: empty; expected an image name")
    return name


def _mos(path: Path, line: int, row: dict[str, str]) -> float:
    raw = row["mos"].strip()
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataError(f"{path}: line {line}, column mos: found {raw!r}; expected a finite number")
    return value


def _image_path(root: Path, path: Path, line: int, row: dict[str, str]) -> Path:
    raw = row["img_path"].strip()
    rel = PurePosixPath(raw.replace("\\", "/"))
    if not raw or rel.is_absolute() or ".." in rel.parts:
        raise DataError(f"{path}: line {line}, column img_path: found {raw!r}; expected a path inside the "
                        "data root such as ./train/<img_name>.jpg")
    image = root.joinpath(*rel.parts)
    if not image.is_file():
        raise DataError(f"{path}: line {line}, column img_path: {raw!r} names no file ({image} not found)")
    return image


# --------------------------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class TrainImage:
    """One training image with its MOS and its comments (train.csv's rows for it, in file order)."""

    name: str
    path: Path
    mos: float
    comments: tuple[str, ...]


@dataclass(frozen=True)
class TestImage:
    name: str
    path: Path


@dataclass(frozen=True)
class Answer:
    """The hidden truth of a test image: its MOS and its reference comments."""

    mos: float
    comments: tuple[str, ...]


def _group(path: Path, rows: Iterable[tuple[int, dict[str, str]]],
           root: Path | None) -> dict[str, tuple[Path | None, float, tuple[str, ...]]]:
    """``{img_name: (image path or None without root, MOS, comments in file order)}`` sorted by name; an
    image's rows must agree on its MOS and path, and every comment must say something."""
    first: dict[str, tuple[int, Path | None, float]] = {}
    comments: dict[str, list[str]] = {}
    for line, row in rows:
        name = _name(path, line, row)
        mos = _mos(path, line, row)
        image = _image_path(root, path, line, row) if root is not None else None
        if not row["comments"].strip():
            raise DataError(f"{path}: line {line}, column comments: empty; expected a sentence about the image")
        if name in first:
            seen_line, seen_image, seen_mos = first[name]
            if mos != seen_mos:
                raise DataError(f"{path}: line {line}, column mos: {mos} for {name!r}, which line {seen_line} "
                                f"gives {seen_mos}; expected one MOS per image")
            if image != seen_image:
                raise DataError(f"{path}: line {line}, column img_path: {row['img_path']!r} for {name!r}, "
                                f"which line {seen_line} places at {seen_image}; expected one path per image")
        else:
            first[name] = (line, image, mos)
        comments.setdefault(name, []).append(row["comments"])
    return {name: (image, mos, tuple(comments[name])) for name, (_, image, mos) in sorted(first.items())}


def read_train(root: str | os.PathLike) -> list[TrainImage]:
    """train.csv's images sorted by name (so nothing depends on the row order), each file checked to exist."""
    root = Path(root)
    path = root / TRAIN_CSV
    grouped = _group(path, read_csv_rows(path, TRAIN_COLUMNS), root)
    return [TrainImage(name, image, mos, comments) for name, (image, mos, comments) in grouped.items()]


def _unique_names(path: Path, rows: list[tuple[int, dict[str, str]]]) -> dict[str, int]:
    """``{img_name: line}`` in file order; a name listed twice is an error."""
    lines: dict[str, int] = {}
    for line, row in rows:
        name = _name(path, line, row)
        if name in lines:
            raise DataError(f"{path}: line {line}, column img_name: {name!r} repeats line {lines[name]}; "
                            "expected each image once")
        lines[name] = line
    return lines


def read_test(root: str | os.PathLike) -> list[TestImage]:
    """test.csv's images in file order, each file checked to exist."""
    root = Path(root)
    path = root / TEST_CSV
    rows = read_csv_rows(path, TEST_COLUMNS)
    _unique_names(path, rows)
    return [TestImage(_name(path, line, row), _image_path(root, path, line, row)) for line, row in rows]


def read_submission_names(path: str | os.PathLike) -> list[str]:
    """The img_name column of a submission-shaped CSV (img_name,mos,comments), in its order, each once."""
    path = Path(path)
    return list(_unique_names(path, read_csv_rows(path, SUBMISSION_COLUMNS)))


def read_answers(path: str | os.PathLike) -> dict[str, Answer]:
    """``{img_name: Answer}`` from an img_name,mos,comments CSV with one row per reference comment."""
    path = Path(path)
    grouped = _group(path, read_csv_rows(path, SUBMISSION_COLUMNS), None)
    return {name: Answer(mos, comments) for name, (_, mos, comments) in grouped.items()}


def split_train_val(images: Sequence[TrainImage], val_fraction: float = 0.1,
                    seed: int = 0) -> tuple[list[TrainImage], list[TrainImage]]:
    """(train, validation) images, both sorted by name, drawn over the sorted image names with ``seed``.

    The seed team split ``list(set(names))``, which differs between runs (spec section 1); here the same
    names and seed give the same split whatever the row order. All comments of an image stay on its side.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    by_name = {image.name: image for image in images}
    train, val = split_keys(list(by_name), val_fraction, seed)
    return [by_name[n] for n in train], [by_name[n] for n in val]


# ------------------------------------------------------------------------------------------- layout


class IqaLayout:
    """The paths of a Dacon IQA data root, read and checked when asked for."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: data root not found (expected train.csv, test.csv, "
                            "sample_submission.csv, train/ and test/)")

    @property
    def sample_submission_csv(self) -> Path:
        return self.root / SAMPLE_SUBMISSION_CSV

    @property
    def answers_csv(self) -> Path:
        return self.root / ANSWERS_CSV

    def train(self) -> list[TrainImage]:
        return read_train(self.root)

    def test(self) -> list[TestImage]:
        return read_test(self.root)

    def submission_names(self) -> list[str]:
        """sample_submission.csv's img_names in its order (the submission's), checked against test.csv."""
        names = read_submission_names(self.sample_submission_csv)
        tests = {image.name for image in self.test()}
        unknown = [n for n in names if n not in tests]
        missing = sorted(tests.difference(names))
        if unknown or missing:
            what = (f"img_name {unknown[0]!r} is not in {TEST_CSV}" if unknown
                    else f"no row for {missing[0]!r} of {TEST_CSV}")
            raise DataError(f"{self.sample_submission_csv}: {what} ({len(unknown)} unknown, {len(missing)} "
                            "missing); expected exactly the test images")
        return names

    def test_answers(self) -> dict[str, Answer]:
        """The test images' MOS and reference comments: only podium's synthetic data has them."""
        if not self.answers_csv.is_file():
            raise DataError(f"{self.answers_csv}: not found: the test answers are hidden (the competition keeps "
                            "them); score a validation split instead, or use podium's synthetic data")
        answers = read_answers(self.answers_csv)
        missing = [image.name for image in self.test() if image.name not in answers]
        if missing:
            raise DataError(f"{self.answers_csv}: no answer for {missing[0]!r} ({len(missing)} test images "
                            "without one); expected every image of test.csv")
        return answers

    def truth_of(self, names: Sequence[str], split: str, truth: dict, what: str) -> list:
        """``truth[name]`` for each predicted name, or an error naming the file that lacks one: the hidden
        answers for test predictions, train.csv for the others."""
        missing = [n for n in names if n not in truth]
        if missing:
            source = self.answers_csv if split == "test" else self.root / TRAIN_CSV
            raise DataError(f"{source}: no {what} for img_name {missing[0]!r} ({len(missing)} of {len(names)} "
                            "predictions)")
        return [truth[n] for n in names]

    def data_files(self) -> list[Path]:
        """Every file of the data set (CSVs, then train and test images), reading and checking each CSV."""
        csvs = [self.root / TRAIN_CSV, self.root / TEST_CSV, self.sample_submission_csv]
        self.submission_names()
        if self.answers_csv.is_file():
            self.test_answers()
            csvs.append(self.answers_csv)
        images = [image.path for image in self.train()] + [image.path for image in self.test()]
        return csvs + list(dict.fromkeys(images))


# ------------------------------------------------------------------------------------------- images


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """The image at ``path``, fully decoded and converted to RGB (grayscale replicated, alpha dropped).

    A missing, truncated or undecodable file raises :class:`DataError` naming it: a silently black image
    (what the original extractor used for every non-RGB file) would train on a wrong input.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("P", "PA", "LA") or "transparency" in image.info:
                return image.convert("RGBA").convert("RGB")
            return image.convert("RGB")
    except FileNotFoundError as e:
        raise DataError(f"{path}: image not found") from e
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: unreadable image ({e}); expected a JPEG or another format PIL decodes") from e


# ----------------------------------------------------------------------------------------- captions


def clean_caption(text: str) -> list[str]:
    """ExpansionNet v2's cleaning: lowercase, strip trailing whitespace, space out every non-word
    character, split on single spaces, drop empty strings and the punctuation tokens (iqa-verified 1.3).

    Other symbols (``(``, ``%``, a newline inside the comment) stay tokens, as in the original.
    """
    spaced = _NON_WORD.sub(r" \1 ", text.lower().rstrip())
    return [w for w in spaced.split(" ") if w and w not in PUNCTUATION]


def tokenize_caption(text: str, max_words: int | None = None) -> list[str]:
    """``['SOS', *words, 'EOS']``; ``max_words`` keeps the first words only (the seed cut at 70)."""
    words = clean_caption(text)
    return [SOS, *(words if max_words is None else words[:max_words]), EOS]


class Vocabulary:
    """Words in Python's default string order, specials included: a word's index is its rank.

    This is the original's rule (iqa-verified 0.2), so the special tokens have no fixed index: with only
    [a-z] words EOS=0, PAD=1, SOS=2, UNK=3 (the seed's vocabulary); digits and symbols sort before the
    capitals and move them (COCO's: EOS=77, PAD=78, SOS=79, UNK=80).
    """

    def __init__(self, words: Iterable[str]):
        self.words = tuple(words)
        if list(self.words) != sorted(set(self.words)) or not set(SPECIAL_TOKENS) <= set(self.words):
            raise ValueError("a vocabulary is its words sorted, each once, including PAD, SOS, EOS and UNK")
        self._index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.words == other.words

    def __hash__(self) -> int:
        return hash(self.words)

    @property
    def pad(self) -> int:
        return self._index[PAD]

    @property
    def sos(self) -> int:
        return self._index[SOS]

    @property
    def eos(self) -> int:
        return self._index[EOS]

    @property
    def unk(self) -> int:
        return self._index[UNK]

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Indices of ``tokens`` (from :func:`tokenize_caption`); unknown words become UNK."""
        unk = self.unk
        return [self._index.get(t, unk) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The words of a generated sequence: SOS and PAD skipped, stopping at the first EOS."""
        words = []
        for i in ids:
            word = self.words[int(i)]
            if word == EOS:
                break
            if word not in (SOS, PAD):
                words.append(word)
        return words


def build_vocabulary(captions: Iterable[str], min_count: int = 1) -> Vocabulary:
    """The vocabulary of training captions: words seen at least ``min_count`` times, plus the specials.

    ``min_count`` 1 is the seed's (CustomDataset); ExpansionNet's COCO default is 5. Build it from the
    training split only, as both do.
    """
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    counts = Counter(w for caption in captions for w in clean_caption(caption))
    return Vocabulary(sorted({*SPECIAL_TOKENS, *(w for w, n in counts.items() if n >= min_count)}))


def write_mos_csv(names: Sequence[str], mos: Sequence[float], out_dir: Path) -> Path:
    """``predictions.csv``: img_name,mos per predicted image, in order (the MOS stages' readable output)."""
    lines = ["img_name,mos", *(f"{name},{value:.6g}" for name, value in zip(names, mos, strict=True))]
    return atomic_write(Path(out_dir) / "predictions.csv", "\n".join(lines) + "\n")
