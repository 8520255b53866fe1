"""Synthetic Samsung AI Challenge 2023 data: distorted procedural photos, their MOS and comments, in Dacon's layout.

The real images and comments cannot be shipped, so the ``synth`` stage writes look-alikes whose quality is
*known*: each image is a procedural outdoor scene (sky gradient with clouds, textured ground, ridges,
buildings with windows, trees, discs, striped boards) carrying 0..3 of five distortions, each at a level:

====================  ==========================================================  ==========
distortion            what is done (s = strength)                                 MOS weight
====================  ==========================================================  ==========
blur                  Gaussian blur, radius 4 s px per 128 px of the long side    2.4
noise                 Gaussian noise, sd 40 s (luminance 0.8, colour 0.6 of it)   2.0
jpeg                  saved at JPEG quality round(55 - 50 s), not 95: blocking    1.8
exposure dark         gamma 1 + 1.5 s, then gain 1 - 0.55 s                       2.0
exposure bright       gain 1 + 1.6 s plus 70 s (clipped highlights)               2.0
cast <colour>         gains 1 + 0.45 s d plus 35 s d, d the colour's direction    1.2
====================  ==========================================================  ==========

Levels have disjoint strength ranges (slight 0.15..0.30, moderate 0.40..0.60, strong 0.70..0.95) so a
comment's adverb names them unambiguously. ``MOS = clip(7.2 - sum(weight * strength) + jitter, 1, 10)``
rounded to 3 decimals, ``jitter`` a rater's noise (sd 0.15, recorded): a regressor can learn it, and it
stays inside the real range (about 1.8..8.6, mean 5.58, spec section 1): here about 1.9..7.7, mean 5.8.

Comments come from a small grammar (:func:`describe`): every comment of an image names each of its
distortions with its level, through adjectives ("the image is slightly blurry and very dark") or nouns
("strong noise makes the details hard to see", "the photo has a slight blue tint"), with synonyms;
:func:`parse_comment` reads them back. As in real comments, word choice is Zipfian (the k-th synonym or
template with weight 1/k): with uniform choices no wording is a consensus, and CIDEr-D, which scores a
caption by its n-grams' agreement with the references, then measured the luck of the draw more than
whether a caption names the right distortions. An image has 1..``max_comments`` comments, one with probability
0.72 for 3 (the real set has about 1.36 per image, iqa-verified 2.1).

Layout (exactly the competition's, plus ``answers/``, which the task never reads as input)::

    train.csv  test.csv  sample_submission.csv  train/<img_name>.jpg  test/<img_name>.jpg
    answers/test_answers.csv   img_name,mos,comments: the hidden test truth, one row per reference comment,
                               a submission's shape, so the evaluate step scores a submission against it
    answers/distortions.csv    every image's recorded distortions, jitter and MOS (train and test)

Every image is a pure function of (seed, split, img_name) and the size; a present file (written
atomically) is kept, so a killed synthesis resumes and a deleted file comes back alone, byte for byte.
The folder pins its arguments (``.synth.json``) and refuses others.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from podium.engine.progress import forked_map
from podium.engine.seeding import derive_seed
from podium.engine.threads import available_cpus
from podium.errors import DataError
from podium.store import atomic_write, pin_settings
from podium.tasks.iqa.data import (
    ANSWERS_CSV,
    SAMPLE_SUBMISSION_CSV,
    SUBMISSION_COLUMNS,
    TEST_COLUMNS,
    TEST_CSV,
    TRAIN_COLUMNS,
    TRAIN_CSV,
    clean_caption,
    read_csv_rows,
)

GENERATOR_VERSION = 2
CONFIG_FILE = ".synth.json"
DISTORTIONS_CSV = "answers/distortions.csv"
SPLITS = ("train", "test")
NAME_LENGTH = 10
KINDS = ("blur", "noise", "jpeg", "exposure", "cast")
EXPOSURES = ("dark", "bright")
COLOURS = ("red", "green", "blue", "yellow")
LEVELS = ("slight", "moderate", "strong")
LEVEL_RANGES = {"slight": (0.15, 0.30), "moderate": (0.40, 0.60), "strong": (0.70, 0.95)}
LEVEL_EDGES = (0.35, 0.65)  # strength -> level: between the ranges
DISTORTION_COUNT_P = (0.15, 0.40, 0.30, 0.15)  # P(0, 1, 2, 3 distortions)
MOS_BASE = 7.2
MOS_WEIGHTS = {"blur": 2.4, "noise": 2.0, "jpeg": 1.8, "exposure": 2.0, "cast": 1.2}
MOS_JITTER = 0.15
MOS_RANGE = (1.0, 10.0)
COMMENT_DECAY = 0.3  # P(k + 1 comments) / P(k comments)
ASPECTS = ((4, 3), (3, 4), (1, 1), (16, 9))
CLEAN_QUALITY = 95
BLUR_RADIUS = 4.0  # px per unit strength per 128 px of the long side
NOISE_SIGMA = 40.0
CAST_DIRECTIONS = {"red": (1.0, -0.35, -0.5), "green": (-0.4, 1.0, -0.45), "blue": (-0.5, -0.15, 1.0),
                   "yellow": (0.75, 0.6, -1.0)}


# ------------------------------------------------------------------------------------- distortions


@dataclass(frozen=True)
class Distortion:
    kind: str  # one of KINDS
    strength: float  # in a level's range, 3 decimals
    detail: str = ""  # exposure: dark or bright; cast: its colour

    @property
    def level(self) -> str:
        return LEVELS[sum(self.strength >= edge for edge in LEVEL_EDGES)]


class Mention(NamedTuple):
    """What a comment says about one distortion: its kind, level and detail."""

    kind: str
    level: str
    detail: str


def mentions(distortions: Sequence[Distortion]) -> frozenset[Mention]:
    return frozenset(Mention(d.kind, d.level, d.detail) for d in distortions)


def mos_of(distortions: Sequence[Distortion], jitter: float) -> float:
    """The synthetic MOS: 7.2 minus the weighted strengths plus the rater's jitter, clipped to 1..10."""
    raw = MOS_BASE - sum(MOS_WEIGHTS[d.kind] * d.strength for d in distortions) + jitter
    return round(min(max(raw, MOS_RANGE[0]), MOS_RANGE[1]), 3)


# ----------------------------------------------------------------------------------------- grammar

ADVERBS = {"slight": ("slightly", "mildly"), "moderate": ("quite", "fairly"), "strong": ("very", "extremely")}
LEVEL_ADJECTIVES = {"slight": ("slight", "mild"), "moderate": ("noticeable", "moderate"),
                    "strong": ("strong", "heavy")}
ADJECTIVES = {
    ("blur", ""): ("blurry", "out of focus", "soft"),
    ("noise", ""): ("noisy", "grainy"),
    ("jpeg", ""): ("blocky", "pixelated"),
    ("exposure", "dark"): ("dark", "underexposed"),
    ("exposure", "bright"): ("bright", "overexposed", "washed out"),
    **{("cast", c): (f"{c} tinted", adj) for c, adj in
       zip(COLOURS, ("reddish", "greenish", "bluish", "yellowish"), strict=True)},
}
NOUNS = {
    ("blur", ""): ("blur",),
    ("noise", ""): ("noise", "grain"),
    ("jpeg", ""): ("compression artifacts", "blocking artifacts"),
    ("exposure", "dark"): ("underexposure",),
    ("exposure", "bright"): ("overexposure",),
    **{("cast", c): (f"{c} tint", f"{c} colour cast") for c in COLOURS},
}
ADJECTIVE_TEMPLATES = ("the image is {}", "this photo looks {}", "the picture is {}", "overall the photo is {}",
                       "the whole image looks {}")
NOUN_TEMPLATES = ("the photo has {}", "the image suffers from {}", "you can see {} in this picture",
                  "{} {verb:lower} the quality of the image")
DETAIL_TEMPLATE = "{} {verb:make} the details hard to see"  # only for what hides details
HIDES_DETAILS = frozenset({("blur", ""), ("noise", ""), ("jpeg", ""), ("exposure", "dark")})
CLEAN_COMMENTS = ("the image is sharp and clean", "a clear and well exposed photo",
                  "the colours look natural and the details are crisp", "good quality picture with crisp details")


def _join(phrases: Sequence[str]) -> str:
    return phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} and {phrases[-1]}"


def _pick(options: Sequence[str], rng: np.random.Generator) -> str:
    """One of ``options``, the k-th with weight 1/k (Zipf's law)."""
    weights = 1.0 / np.arange(1, len(options) + 1)
    return str(options[int(rng.choice(len(options), p=weights / weights.sum()))])


def _noun_phrase(d: Distortion, rng: np.random.Generator) -> tuple[str, bool]:
    """("a slight blue tint", plural?) for one distortion."""
    noun = _pick(NOUNS[d.kind, d.detail], rng)
    article = "a " if noun.endswith(("tint", "cast")) else ""
    return f"{article}{_pick(LEVEL_ADJECTIVES[d.level], rng)} {noun}", noun.endswith("s")


def describe(distortions: Sequence[Distortion], rng: np.random.Generator) -> str:
    """One comment naming every distortion with its level, in a random order and wording."""
    if not distortions:
        return f"{_pick(CLEAN_COMMENTS, rng)}."
    order = [distortions[i] for i in rng.permutation(len(distortions))]
    if rng.random() < 0.5:
        phrases = [f"{_pick(ADVERBS[d.level], rng)} {_pick(ADJECTIVES[d.kind, d.detail], rng)}" for d in order]
        return f"{_pick(ADJECTIVE_TEMPLATES, rng).format(_join(phrases))}."
    nouns = [_noun_phrase(d, rng) for d in order]
    plural = len(nouns) > 1 or nouns[0][1]
    templates = NOUN_TEMPLATES + ((DETAIL_TEMPLATE,) if all((d.kind, d.detail) in HIDES_DETAILS for d in order)
                                  else ())
    template = _pick(templates, rng)
    verb = re.search(r"\{verb:(\w+)\}", template)
    if verb:
        template = template.replace(verb.group(0), verb.group(1) if plural else f"{verb.group(1)}s")
    return f"{template.format(_join([n for n, _ in nouns]))}."


def _alternation(words: Sequence[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


def _parser(modifiers: dict[str, tuple[str, ...]],
            phrases: dict[tuple[str, str], tuple[str, ...]]) -> tuple[re.Pattern, dict[str, str], dict[str, tuple]]:
    level_of = {m: level for level, words in modifiers.items() for m in words}
    key_of = {p: key for key, words in phrases.items() for p in words}
    pattern = re.compile(rf"\b({_alternation(list(level_of))}) ({_alternation(list(key_of))})\b")
    return pattern, level_of, key_of


_PARSERS = (_parser(ADVERBS, ADJECTIVES), _parser(LEVEL_ADJECTIVES, NOUNS))


def parse_comment(text: str) -> frozenset[Mention]:
    """The distortions a comment of the grammar names, read from its cleaned tokens (as a captioner emits
    them): each (modifier, phrase) pair is one mention; a clean-image comment names none."""
    words = " ".join(clean_caption(text))
    found = set()
    for pattern, level_of, key_of in _PARSERS:
        for match in pattern.finditer(words):
            kind, detail = key_of[match.group(2)]
            found.add(Mention(kind, level_of[match.group(1)], detail))
    return frozenset(found)


# -------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class SynthImage:
    """Everything about one synthetic image but its pixels: a pure function of (seed, split, name)."""

    split: str
    name: str
    width: int
    height: int
    distortions: tuple[Distortion, ...]  # in KINDS order
    jitter: float
    comments: tuple[str, ...]

    @property
    def mos(self) -> float:
        return mos_of(self.distortions, self.jitter)

    @property
    def relpath(self) -> str:
        return f"{self.split}/{self.name}.jpg"


def image_names(seed: int, split: str, count: int, taken: set[str]) -> list[str]:
    """Ten lowercase letters and digits per image, hashed from (seed, split, index), like Dacon's random
    names; one already in ``taken`` (the other split's) is hashed again. Adds the names to ``taken``."""
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    names = []
    for index in range(count):
        salt = 0
        while True:
            value = int.from_bytes(hashlib.sha256(f"{seed}/{split}/{index}/{salt}".encode()).digest()[:8], "big")
            name = "".join(alphabet[(value // 36**k) % 36] for k in range(NAME_LENGTH))
            if name not in taken:
                break
            salt += 1
        taken.add(name)
        names.append(name)
    return names


def _distortion(kind: str, rng: np.random.Generator) -> Distortion:
    low, high = LEVEL_RANGES[LEVELS[int(rng.integers(len(LEVELS)))]]
    strength = round(float(rng.uniform(low, high)), 3)
    detail = (str(rng.choice(EXPOSURES)) if kind == "exposure" else str(rng.choice(COLOURS)) if kind == "cast"
              else "")
    return Distortion(kind, strength, detail)


def plan_image(seed: int, split: str, name: str, image_size: int, max_comments: int) -> SynthImage:
    """Size, distortions, jitter and comments of one image (its pixels come from :func:`render_image`)."""
    rng = np.random.default_rng(derive_seed(seed, "iqa-plan", split, name))
    long, short = ASPECTS[int(rng.integers(len(ASPECTS)))]
    width, height = (image_size, round(image_size * short / long)) if long >= short else (
        round(image_size * long / short), image_size)
    count = int(rng.choice(len(DISTORTION_COUNT_P), p=DISTORTION_COUNT_P))
    kinds = sorted(rng.choice(len(KINDS), count, replace=False).tolist())
    distortions = tuple(_distortion(KINDS[k], rng) for k in kinds)
    jitter = round(float(np.clip(rng.normal(0, MOS_JITTER), -3 * MOS_JITTER, 3 * MOS_JITTER)), 3)
    weights = COMMENT_DECAY ** np.arange(max_comments)
    n_comments = 1 + int(rng.choice(max_comments, p=weights / weights.sum()))
    return SynthImage(split, name, width, height, distortions, jitter,
                      tuple(describe(distortions, rng) for _ in range(n_comments)))


def plan_images(seed: int, num_train: int, num_test: int, image_size: int, max_comments: int) -> list[SynthImage]:
    """Every image of the data set, train then test, in index order."""
    taken: set[str] = set()
    return [plan_image(seed, split, name, image_size, max_comments)
            for split, count in zip(SPLITS, (num_train, num_test), strict=True)
            for name in image_names(seed, split, count, taken)]


# ------------------------------------------------------------------------------------------ pixels


def _smooth(rng: np.random.Generator, width: int, height: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a ``cells``-wide random grid upsampled bicubically to (height, width)."""
    grid = rng.random((max(2, round(cells * height / width)) + 1, cells + 1)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, "F").resize((width, height), Image.BICUBIC), np.float32)


def _fbm(rng: np.random.Generator, width: int, height: int, cells: int, octaves: int) -> np.ndarray:
    """Fractal noise: octaves of value noise, each twice as fine and half as strong, normalised to [0, 1]."""
    total = sum(0.5**k * _smooth(rng, width, height, cells * 2**k) for k in range(octaves))
    return (total - total.min()) / max(float(total.max() - total.min()), 1e-6)


def _colour(rng: np.random.Generator, base: Sequence[float], jitter: float) -> np.ndarray:
    return np.clip(np.asarray(base, np.float32) + rng.normal(0, jitter, 3).astype(np.float32), 0, 255)


SKIES = (((70, 120, 200), (170, 200, 235)), ((60, 60, 120), (240, 150, 90)), ((140, 145, 155), (200, 200, 205)),
         ((20, 30, 70), (70, 80, 130)))
GROUNDS = ((70, 130, 50), (200, 180, 130), (40, 90, 140), (110, 110, 115), (230, 232, 238), (120, 85, 55))


def render_scene(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A natural-looking scene as float32 (height, width, 3) in 0..255: sky, clouds, ridge, textured ground
    and a few objects with fine detail (windows, stripes, leaves), so that every distortion shows."""
    top, horizon_colour = (_colour(rng, c, 12) for c in SKIES[int(rng.integers(len(SKIES)))])
    horizon = int(height * rng.uniform(0.35, 0.7))
    t = np.clip(np.arange(height, dtype=np.float32) / max(horizon, 1), 0, 1)[:, None, None]
    pixels = np.broadcast_to(top * (1 - t) + horizon_colour * t, (height, width, 3)).copy()
    clouds = np.clip(_fbm(rng, width, height, 3, 4) * 1.6 - 0.7, 0, 1)[..., None] * rng.uniform(0.2, 0.8)
    pixels = pixels * (1 - clouds) + 245 * clouds

    if rng.random() < 0.6:  # a ridge of hills against the sky
        ridge = horizon - height * (0.05 + 0.2 * _fbm(rng, width, 2, 4, 3)[0])
        hill = np.arange(height)[:, None] >= ridge[None, :]
        shade = 0.8 + 0.3 * _fbm(rng, width, height, 8, 3)[hill]
        pixels[hill] = _colour(rng, (60, 80, 95), 15) * shade[:, None]

    ground = _colour(rng, GROUNDS[int(rng.integers(len(GROUNDS)))], 15)
    texture = 0.7 + 0.45 * _fbm(rng, width, height, 6, 3) + 0.25 * (rng.random((height, width)) - 0.5)
    pixels[horizon:] = ground * texture[horizon:, :, None]

    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 7))):
        _draw_object(draw, rng, width, height, horizon)
    light = 1 - 0.35 * rng.uniform(0, 1) * (np.linspace(-1, 1, width)[None, :] ** 2
                                             + np.linspace(-1, 1, height)[:, None] ** 2) / 2
    return np.asarray(image, np.float32) * light[..., None].astype(np.float32)


def _draw_object(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int, horizon: int) -> None:
    """One object standing on (or above) the horizon: a building, a tree, a disc or a striped board."""
    kind = int(rng.integers(4))
    size = min(width, height) * rng.uniform(0.12, 0.35)
    x = rng.uniform(0, width)
    base = horizon + rng.uniform(0, height - horizon) * 0.6
    colour = tuple(int(v) for v in rng.integers(20, 236, 3))
    if kind == 0:  # a building with a grid of windows
        w, h = size * rng.uniform(0.5, 1.0), size * rng.uniform(1.0, 2.2)
        draw.rectangle((x, base - h, x + w, base), fill=colour)
        step = max(2.0, size / 6)
        lit = tuple(int(v) for v in rng.integers(150, 256, 3))
        for wy in np.arange(base - h + step / 2, base - step, step):
            for wx in np.arange(x + step / 2, x + w - step / 2, step):
                draw.rectangle((wx, wy, wx + step / 2, wy + step / 2), fill=lit)
    elif kind == 1:  # a tree: trunk and a leafy crown of small dots
        draw.rectangle((x - size / 12, base - size, x + size / 12, base), fill=(90, 60, 40))
        leaf = np.array(colour) * 0.5 + np.array((30, 120, 40)) * 0.5
        for _ in range(40):
            cx, cy = x + rng.normal(0, size / 4), base - size + rng.normal(0, size / 4)
            r = size * rng.uniform(0.04, 0.1)
            shade = tuple(int(v) for v in np.clip(leaf * rng.uniform(0.7, 1.3), 0, 255))
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=shade)
    elif kind == 2:  # a disc (a sun above the horizon, a ball below), with a highlight
        cy = rng.uniform(0, horizon) if rng.random() < 0.5 else base - size / 2
        draw.ellipse((x - size / 2, cy - size / 2, x + size / 2, cy + size / 2), fill=colour)
        draw.ellipse((x - size / 5, cy - size / 3, x, cy - size / 6), fill=(250, 250, 245))
    else:  # a board of thin stripes: the finest detail in the picture
        w, h = size * rng.uniform(0.8, 1.5), size * rng.uniform(0.5, 1.0)
        other = tuple(255 - v for v in colour)
        step = max(2.0, size / 10)
        for i, sx in enumerate(np.arange(x, x + w, step)):
            draw.rectangle((sx, base - h, sx + step, base), fill=colour if i % 2 else other)


def distort(pixels: np.ndarray, distortions: Sequence[Distortion], rng: np.random.Generator) -> tuple[Image.Image, int]:
    """Apply the distortions to a scene as a camera would: optics (blur), exposure, white balance (cast),
    sensor noise; returns the image and the JPEG quality to save it with (the blocking distortion)."""
    by_kind = {d.kind: d for d in distortions}
    height, width = pixels.shape[:2]
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if "blur" in by_kind:
        radius = by_kind["blur"].strength * BLUR_RADIUS * max(width, height) / 128
        image = image.filter(ImageFilter.GaussianBlur(radius))
    x = np.asarray(image, np.float32)
    if "exposure" in by_kind:
        d = by_kind["exposure"]
        s = d.strength
        x = 255 * (x / 255) ** (1 + 1.5 * s) * (1 - 0.55 * s) if d.detail == "dark" else x * (1 + 1.6 * s) + 70 * s
    if "cast" in by_kind:
        s = by_kind["cast"].strength
        direction = np.asarray(CAST_DIRECTIONS[by_kind["cast"].detail], np.float32)
        x = x * (1 + 0.45 * s * direction) + 35 * s * direction
    if "noise" in by_kind:
        sigma = NOISE_SIGMA * by_kind["noise"].strength
        x = (x + rng.standard_normal((height, width, 1), dtype=np.float32) * (0.8 * sigma)
             + rng.standard_normal((height, width, 3), dtype=np.float32) * (0.6 * sigma))
    quality = round(55 - 50 * by_kind["jpeg"].strength) if "jpeg" in by_kind else CLEAN_QUALITY
    return Image.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8), "RGB"), quality


def render_image(image: SynthImage, seed: int) -> bytes:
    """The JPEG bytes of one planned image: its scene, distorted, encoded at its quality."""
    rng = np.random.default_rng(derive_seed(seed, "iqa-pixels", image.split, image.name))
    picture, quality = distort(render_scene(rng, image.width, image.height), image.distortions, rng)
    buf = io.BytesIO()
    picture.save(buf, format="JPEG", quality=quality, subsampling=2)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------- writing


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


DISTORTION_COLUMNS = ("img_name", "split", "blur", "noise", "jpeg", "exposure", "exposure_detail", "cast",
                      "cast_detail", "jitter", "mos")


def _distortion_row(image: SynthImage) -> tuple[object, ...]:
    """One row of distortions.csv: strength 0 (and detail empty) for a distortion the image lacks."""
    by_kind = {d.kind: d for d in image.distortions}
    strength = {k: by_kind[k].strength if k in by_kind else 0 for k in KINDS}
    detail = {k: by_kind[k].detail if k in by_kind else "" for k in KINDS}
    return (image.name, image.split, strength["blur"], strength["noise"], strength["jpeg"], strength["exposure"],
            detail["exposure"], strength["cast"], detail["cast"], image.jitter, image.mos)


def _tables(images: Sequence[SynthImage]) -> dict[str, str]:
    """Relative path -> text of every CSV of the data set."""
    train = [i for i in images if i.split == "train"]
    test = [i for i in images if i.split == "test"]
    return {
        TRAIN_CSV: _csv_text(TRAIN_COLUMNS, [(i.name, f"./{i.relpath}", i.mos, c) for i in train for c in i.comments]),
        TEST_CSV: _csv_text(TEST_COLUMNS, [(i.name, f"./{i.relpath}") for i in test]),
        SAMPLE_SUBMISSION_CSV: _csv_text(SUBMISSION_COLUMNS, [(i.name, 0, "") for i in test]),
        ANSWERS_CSV: _csv_text(SUBMISSION_COLUMNS, [(i.name, i.mos, c) for i in test for c in i.comments]),
        DISTORTIONS_CSV: _csv_text(DISTORTION_COLUMNS, [_distortion_row(i) for i in images]),
    }


@dataclass(frozen=True)
class _Job:
    seed: int
    image: SynthImage
    path: Path


def _write_image(job: _Job) -> None:
    if not job.path.is_file():  # written atomically: a present image is complete
        atomic_write(job.path, render_image(job.image, job.seed))


def _write_images(jobs: list[_Job], workers: int, progress: bool) -> None:
    for _ in forked_map(_write_image, jobs, len(jobs), workers, "synth iqa images", progress, chunksize=16):
        pass


def synthesize_iqa(out_dir: str | os.PathLike, num_train: int = 54_662, num_test: int = 13_012, seed: int = 0,
                   image_size: int = 96, max_comments: int = 3, workers: int | None = None,
                   progress: bool = True) -> list[Path]:
    """Write the data set under ``out_dir``; return its CSV paths. Real counts: 54,662 / 13,012 images.

    ``image_size`` is the long side in pixels (aspects 4:3, 3:4, 1:1, 16:9; the real photos are larger,
    and the models resize to 384 anyway). Only missing files are written.
    """
    if num_train < 2 or num_test < 1 or image_size < 32 or max_comments < 1:
        raise ValueError(f"need num_train >= 2, num_test >= 1, image_size >= 32 and max_comments >= 1; got "
                         f"{num_train}, {num_test}, {image_size}, {max_comments}")
    out = Path(out_dir)
    pin_settings(out / CONFIG_FILE, {"version": GENERATOR_VERSION, "seed": seed, "num_train": num_train,
                                     "num_test": num_test, "image_size": image_size, "max_comments": max_comments})
    images = plan_images(seed, num_train, num_test, image_size, max_comments)
    jobs = [_Job(seed, i, out / i.relpath) for i in images if not (out / i.relpath).is_file()]
    _write_images(jobs, max(1, min(workers or available_cpus(), len(jobs))), progress)
    paths = []
    for rel, text in _tables(images).items():
        if not (out / rel).is_file():
            atomic_write(out / rel, text)
        paths.append(out / rel)
    return paths


def read_distortions(path: str | os.PathLike) -> dict[str, tuple[tuple[Distortion, ...], float, float]]:
    """``{img_name: (distortions, jitter, mos)}`` from ``answers/distortions.csv``."""
    path = Path(path)
    out = {}
    for line, row in read_csv_rows(path, DISTORTION_COLUMNS):
        try:
            values = {c: float(row[c]) for c in ("blur", "noise", "jpeg", "exposure", "cast", "jitter", "mos")}
        except ValueError as e:
            raise DataError(f"{path}: line {line}: {e}; expected numbers in the strength columns") from e
        distortions = tuple(Distortion(k, values[k], row.get(f"{k}_detail", "")) for k in KINDS if values[k] > 0)
        out[row["img_name"]] = (distortions, values["jitter"], values["mos"])
    return out
