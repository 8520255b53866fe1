"""Embedded letter glyphs in Dacon's ``mnist_data`` format, rendered from the fonts matplotlib ships.

The competition's letters come from an EMNIST-style CSV that cannot be downloaded here, so podium
renders its own: capital letters (the ones dirty MNIST shows) from the DejaVu and STIX families,
varied in font, weight, size, slant, stroke width and a small tilt, then framed as EMNIST frames
its glyphs (tight crop, centred in a square with a margin, smoothed, reduced to 28 x 28, bright on 0).
Every glyph is a pure function of (seed, table, letter, ordinal), so the CSVs are byte-identical per seed.
"""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from podium.errors import DataError
from podium.store import atomic_write

LETTERS = "abcdefghijklmnopqrstuvwxyz"
GLYPH_SIZE = 28
PIXEL_COLUMNS = tuple(str(i) for i in range(GLYPH_SIZE * GLYPH_SIZE))
TRAIN_COLUMNS = ("id", "digit", "letter", *PIXEL_COLUMNS)
TEST_COLUMNS = ("id", "letter", *PIXEL_COLUMNS)

FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
)
BACKGROUND_CUTOFF = 8  # the blur's faint tail is set to 0 so the background is exactly 0, as in EMNIST
_RENDER_SIDE = 160  # working canvas for one glyph, large enough for the biggest font + stroke + shear
_TABLE_STREAMS = {"train": 0, "test": 1}


def font_dir() -> Path:
    """matplotlib's bundled TrueType fonts: always installed with podium, so nothing is downloaded."""
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.cache
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    path = font_dir() / name
    if not path.is_file():
        raise DataError(f"{path}: font missing from matplotlib's mpl-data (needed to render letter glyphs)")
    return ImageFont.truetype(str(path), size)


def render_glyph(letter: int, rng: np.random.Generator) -> np.ndarray:
    """One 28 x 28 uint8 glyph of capital ``LETTERS[letter]``, its style drawn from ``rng``."""
    font_name = FONT_FILES[int(rng.integers(len(FONT_FILES)))]
    size = int(rng.integers(40, 73))
    stroke = int(rng.integers(0, size // 16 + 1))
    shear = float(rng.uniform(-0.3, 0.3))
    tilt = float(rng.uniform(-10.0, 10.0))
    fill = float(rng.uniform(0.62, 0.82))

    side = _RENDER_SIDE
    canvas = Image.new("L", (side, side), 0)
    ImageDraw.Draw(canvas).text(
        (side / 2, side / 2),
        LETTERS[letter].upper(),
        fill=255,
        font=_font(font_name, size),
        anchor="mm",
        stroke_width=stroke,
        stroke_fill=255,
    )
    centre = side / 2
    shear_m = np.array([[1.0, shear, -shear * centre], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    tilt_m = np.vstack([cv2.getRotationMatrix2D((centre, centre), tilt, 1.0), [0.0, 0.0, 1.0]])
    warped = cv2.warpAffine(np.asarray(canvas), (tilt_m @ shear_m)[:2], (side, side), flags=cv2.INTER_LINEAR)
    return frame_glyph(warped, fill)


def frame_glyph(image: np.ndarray, fill: float) -> np.ndarray:
    """EMNIST framing: crop to the ink, centre in a square whose side is ``1/fill`` of the long side,
    smooth and reduce to 28 x 28 with its brightest pixel at 255 and an exactly-0 background."""
    rows = np.flatnonzero(image.any(axis=1))
    cols = np.flatnonzero(image.any(axis=0))
    if rows.size == 0:
        raise DataError("rendered glyph is empty: the font has no outline for this letter")
    ink = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = ink.shape
    side = max(round(max(h, w) / fill), max(h, w) + 2)
    square = np.zeros((side, side), np.uint8)
    y0, x0 = (side - h) // 2, (side - w) // 2
    square[y0 : y0 + h, x0 : x0 + w] = ink
    square = cv2.GaussianBlur(square, (0, 0), 0.6 * side / GLYPH_SIZE)
    small = cv2.resize(square, (GLYPH_SIZE, GLYPH_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
    glyph = np.rint(small * (255.0 / max(float(small.max()), 1.0))).astype(np.uint8)
    glyph[glyph < BACKGROUND_CUTOFF] = 0
    return glyph


def render_glyph_table(seed: int, per_letter: int, table: str) -> tuple[np.ndarray, np.ndarray]:
    """``per_letter`` glyphs of each letter in a seeded row order: (letters int64[N], glyphs uint8[N,28,28]).

    ``table`` ("train" or "test") selects an independent stream so the two CSVs never share a glyph.
    """
    stream = _TABLE_STREAMS[table]
    glyphs = np.empty((26, per_letter, GLYPH_SIZE, GLYPH_SIZE), np.uint8)
    for letter in range(26):
        rng = np.random.default_rng([seed, stream, letter])
        for k in range(per_letter):
            glyphs[letter, k] = render_glyph(letter, rng)
    order = np.random.default_rng([seed, stream, 26]).permutation(26 * per_letter)
    letters = np.repeat(np.arange(26, dtype=np.int64), per_letter)[order]
    return letters, glyphs.reshape(26 * per_letter, GLYPH_SIZE, GLYPH_SIZE)[order]


def glyph_csv_text(letters: np.ndarray, glyphs: np.ndarray, first_id: int, digits: np.ndarray | None) -> str:
    """Dacon's layout: ``id,[digit,]letter,0..783`` with capital letters, one glyph per row."""
    frame = pd.DataFrame(glyphs.reshape(len(glyphs), -1), columns=list(PIXEL_COLUMNS))
    frame.insert(0, "letter", [LETTERS[i].upper() for i in letters])
    if digits is not None:
        frame.insert(0, "digit", digits)
    frame.insert(0, "id", np.arange(first_id, first_id + len(glyphs)))
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def write_glyph_csvs(
    out_dir: str | os.PathLike, seed: int, train_per_letter: int, test_per_letter: int
) -> dict[str, Path]:
    """Write ``train.csv`` and ``test.csv`` (Dacon ``mnist_data``) under ``out_dir``.

    Ids run on from train into test as in the real files. The ``digit`` column only keeps the format:
    it is a seeded random digit, unrelated to the glyph.
    """
    out_dir = Path(out_dir)
    train_letters, train_glyphs = render_glyph_table(seed, train_per_letter, "train")
    test_letters, test_glyphs = render_glyph_table(seed, test_per_letter, "test")
    digits = np.random.default_rng([seed, 2]).integers(0, 10, len(train_letters))
    train = atomic_write(out_dir / "train.csv", glyph_csv_text(train_letters, train_glyphs, 1, digits))
    first_test = 1 + len(train_letters)
    test = atomic_write(out_dir / "test.csv", glyph_csv_text(test_letters, test_glyphs, first_test, None))
    return {"train": train, "test": test}


def read_glyph_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a Dacon ``mnist_data`` CSV (train or test layout) into letters int64[N] and glyphs uint8[N,28,28].

    Letters (0..25) are accepted in either case; pixels must be integers in 0..255.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: glyph CSV not found (expected Dacon mnist_data train.csv or test.csv)")
    try:
        frame = pd.read_csv(path, dtype={"letter": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV ({e})") from e
    missing = [c for c in ("letter", *PIXEL_COLUMNS) if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: header lacks column(s) {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}; expected id,[digit,]letter,0..783"
        )
    letters = frame["letter"].fillna("").str.lower()
    bad = ~letters.isin(list(LETTERS))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{path}: line {row + 2}, column letter: found {frame['letter'].iloc[row]!r},"
            " expected a letter A..Z"
        )
    pixels = frame[list(PIXEL_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad_cells = ~np.isfinite(pixels) | (pixels < 0) | (pixels > 255) | (pixels != np.round(pixels))
    if bad_cells.any():
        row, col = (int(v) for v in np.argwhere(bad_cells)[0])
        column = PIXEL_COLUMNS[col]
        raise DataError(
            f"{path}: line {row + 2}, column {column}: found {str(frame[column].iloc[row])!r},"
            " expected an integer pixel in 0..255"
        )
    codes = np.array([LETTERS.index(c) for c in letters], dtype=np.int64)
    return codes, pixels.astype(np.uint8).reshape(-1, GLYPH_SIZE, GLYPH_SIZE)
