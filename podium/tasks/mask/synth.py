"""Synthetic mask-classification data: procedurally drawn people in Boostcamp's exact on-disk layout.

Each person gets a *look* that stays the same across their seven photos (gender, age, skin, hair,
head shape, five mask styles), and each photo its own pose, lighting, white balance, blur and noise.
The cues are the real ones, visible but not trivial:

- mask: worn over nose and mouth (mask1..mask5, five styles), pushed below the nose or down on the
  chin (incorrect_mask), or absent (normal);
- gender: head width and shape, hair length (mostly long for women, with exceptions both ways),
  eyebrow weight, lipstick, beards;
- age: grey strands (share rising with age, some old people dye theirs), forehead lines, crow's feet,
  under-eye bags, age spots, receding hair.

Ages are drawn in the standard bins with the real set's imbalance: few old people (``old_fraction``,
7 % by default, as in the real 2,700) and an exact count, so a tiny set still has some. ``eval/``
mirrors the real test split (hashed ImageIDs, ``info.csv`` with ``ans`` 0, rows shuffled) and adds
``eval/answers.csv`` (synthetic only) so podium can score its own submission.

Every photo is a pure function of (seed, split, person, kind): any photo can be redrawn alone, and
parallel workers give the same bytes as one. Every file is written atomically, and photos that exist
are not drawn again: a killed synthesis resumes, and a deleted photo comes back byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from podium.engine.progress import forked_map
from podium.engine.threads import available_cpus
from podium.store import atomic_write
from podium.tasks.mask.data import GENDERS, IMAGE_KINDS, class_index, mask_class

SPLITS = {"train": 0, "eval": 1}
AGE_RANGES = ((18, 29), (30, 59), (60, 70))
EXTENSIONS = ((".jpg", 0.92), (".jpeg", 0.05), (".png", 0.03))  # real folders mix extensions
SKIN = ((243, 210, 186), (232, 190, 160), (214, 170, 130), (186, 135, 100), (140, 100, 72))
HAIR = ((22, 18, 16), (45, 32, 24), (75, 52, 34), (115, 80, 50), (175, 135, 85))
GREY = np.array([200.0, 200.0, 198.0])
LIPS = (176, 98, 96)
LIPSTICK = ((190, 40, 60), (200, 70, 90), (160, 40, 50))
MASK_COLOURS = ((236, 236, 236), (242, 242, 250), (120, 170, 222), (32, 32, 36), (95, 95, 100),
                (232, 172, 192), (60, 92, 150), (200, 212, 172))
MASK_SHAPES = ("surgical", "kf94", "cloth")
JPEG_QUALITY = 92


@dataclass(frozen=True)
class MaskStyle:
    colour: tuple[int, int, int]
    shape: str


@dataclass(frozen=True)
class Look:
    """Everything about a person that stays the same across their seven photos."""

    gender: int
    age: int
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    grey: float  # share of grey strands
    hair_style: str  # long, bob, short or bald
    half_width: float  # head half-width as a fraction of the image width
    aspect: float  # head half-height / half-width
    brow: float  # eyebrow weight
    beard: bool
    lips: tuple[int, int, int]
    wrinkles: int
    spots: int
    shirt: tuple[int, int, int]
    room: tuple[tuple[int, int, int], tuple[int, int, int]]
    masks: tuple[MaskStyle, ...]  # mask1..mask5
    incorrect: str  # where incorrect_mask sits: below the nose or on the chin
    extension: str


def _rng(seed: int, *parts: int) -> np.random.Generator:
    return np.random.default_rng([seed, *parts])


def plan_people(n: int, seed: int, split: str, old_fraction: float, female_fraction: float) -> list[tuple[int, int]]:
    """(gender, age) of each person: exact age-class counts (old first, the rest halved), genders drawn."""
    rng = _rng(seed, SPLITS[split], 1 << 20)
    n_old = min(n, max(1 if old_fraction > 0 and n >= 2 else 0, round(n * old_fraction)))
    n_mid = (n - n_old) // 2
    classes = rng.permutation(np.array([2] * n_old + [1] * n_mid + [0] * (n - n_old - n_mid), dtype=np.int64))
    out = []
    for c in classes.tolist():
        low, high = AGE_RANGES[c]
        out.append((int(rng.random() < female_fraction), int(rng.integers(low, high + 1))))
    return out


def _colour(rng: np.random.Generator, palette, jitter: float) -> tuple[int, int, int]:
    base = np.array(palette[int(rng.integers(len(palette)))], dtype=np.float64)
    return tuple(int(v) for v in np.clip(base + rng.normal(0, jitter, 3), 0, 255))


def draw_look(rng: np.random.Generator, gender: int, age: int) -> Look:
    """A person's fixed appearance from their gender and age, with the overlaps real people have."""
    female = gender == 1
    grey = float(np.clip((age - 38) / 22 + rng.normal(0, 0.12), 0, 1))
    if age >= 50 and rng.random() < 0.15:
        grey *= 0.15  # dyed
    if female:
        style = "long" if rng.random() < 0.7 else "bob" if rng.random() < 0.6 else "short"
    else:
        style = "bald" if age >= 45 and rng.random() < (age - 40) / 60 else "long" if rng.random() < 0.06 else "short"
    wrinkles = int(np.clip(round((age - 32) / 8 + rng.normal(0, 0.8)), 0, 4))
    lips = _colour(rng, LIPSTICK, 12) if female and rng.random() < 0.45 else LIPS
    masks = tuple(MaskStyle(_colour(rng, MASK_COLOURS, 8), MASK_SHAPES[int(rng.integers(3))]) for _ in range(5))
    cumulative = np.cumsum([p for _, p in EXTENSIONS])
    extension = EXTENSIONS[min(int(np.searchsorted(cumulative, rng.random(), side="right")), len(EXTENSIONS) - 1)][0]
    return Look(
        gender=gender, age=age, skin=_colour(rng, SKIN, 8), hair=_colour(rng, HAIR, 6), grey=grey, hair_style=style,
        half_width=float((0.285 if not female else 0.262) * rng.uniform(0.94, 1.06)),
        aspect=float((1.22 if not female else 1.3) * rng.uniform(0.96, 1.04)),
        brow=float((1.8 if not female else 1.1) * rng.uniform(0.8, 1.2)),
        beard=not female and rng.random() < 0.25, lips=lips, wrinkles=wrinkles,
        spots=int(rng.integers(0, 6)) if age >= 55 else 0,
        shirt=tuple(int(v) for v in rng.integers(20, 235, 3)),
        room=(tuple(int(v) for v in rng.integers(90, 250, 3)), tuple(int(v) for v in rng.integers(40, 220, 3))),
        masks=masks, incorrect="nose" if rng.random() < 0.7 else "chin", extension=extension,
    )


def _shade(colour, factor: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in colour)


def _background(look: Look, rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """The person's room: a gradient between two colours at a random angle, jittered per photo."""
    c0 = np.array(look.room[0], np.float32) + rng.normal(0, 6, 3).astype(np.float32)
    c1 = np.array(look.room[1], np.float32) + rng.normal(0, 6, 3).astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    xs, ys = np.linspace(-0.5, 0.5, w, dtype=np.float32), np.linspace(-0.5, 0.5, h, dtype=np.float32)
    t = np.clip(0.5 + math.cos(angle) * xs[None, :] + math.sin(angle) * ys[:, None], 0, 1)[..., None]
    return np.clip(c0 * (1 - t) + c1 * t, 0, 255)


def _hair_texture(look: Look, rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Vertical strands: each column dark or grey (share ``look.grey``), with its own sheen."""
    grey_cols = rng.random(w) < look.grey
    colours = np.where(grey_cols[:, None], GREY[None, :], np.array(look.hair, np.float64)[None, :])
    colours = colours * rng.uniform(0.8, 1.15, w)[:, None]
    rows = np.linspace(1.05, 0.9, h)[:, None, None]
    pixels = np.clip(colours[None, :, :] * rows, 0, 255).astype(np.uint8)
    return Image.fromarray(np.dstack([pixels, np.full((h, w), 255, np.uint8)]), "RGBA")


class _Head:
    """Geometry of one photo's head: centre, half-axes, line width; ``at(u, v)`` maps face units to pixels."""

    def __init__(self, cx: float, cy: float, a: float, b: float, w: int):
        self.cx, self.cy, self.a, self.b = cx, cy, a, b
        self.lw = max(1, round(w / 150))

    def at(self, u: float, v: float) -> tuple[float, float]:
        return self.cx + u * self.a, self.cy + v * self.b

    def box(self, u0: float, v0: float, u1: float, v1: float) -> tuple[float, float, float, float]:
        return (*self.at(u0, v0), *self.at(u1, v1))


def _hair(layer: Image.Image, look: Look, head: _Head, texture: Image.Image, front: bool) -> None:
    """Back hair (behind the head) or front hair (cap and fringe) painted through a shape mask."""
    shape = Image.new("L", layer.size, 0)
    draw = ImageDraw.Draw(shape)
    if not front:
        bottom = {"long": 1.6, "bob": 0.55}.get(look.hair_style)
        if bottom is None:
            return
        draw.rounded_rectangle(head.box(-1.32, -1.12, 1.32, bottom), radius=head.a * 0.9, fill=255)
    elif look.hair_style == "bald":
        for side in (-1, 1):
            draw.ellipse(head.box(side * 1.06 - 0.2, -0.55, side * 1.06 + 0.2, 0.05), fill=255)
    else:
        line = -0.5 if look.hair_style in ("long", "bob") else -0.58
        draw.chord(head.box(-1.08, -1.18, 1.08, 2 * line + 1.18), 180, 360, fill=255)
        if look.hair_style == "short":  # sideburns
            for side in (-1, 1):
                draw.rectangle(head.box(side * 0.97 - 0.06, line, side * 0.97 + 0.06, -0.2), fill=255)
    layer.paste(texture, (0, 0), shape)


def _face_details(draw: ImageDraw.ImageDraw, look: Look, head: _Head, rng: np.random.Generator) -> None:
    lw, line = head.lw, _shade(look.skin, 0.72)
    for i in range(min(look.wrinkles, 3)):  # forehead lines
        v = -0.36 - 0.055 * i
        draw.arc(head.box(-0.5, v - 0.05, 0.5, v + 0.08), 200, 340, fill=line, width=lw)
    for side in (-1, 1):
        if look.wrinkles >= 2:  # crow's feet
            x, y = head.at(side * 0.6, -0.1)
            for dy in (-0.05, 0.0, 0.05):
                draw.line([(x, y), head.at(side * 0.72, -0.1 + dy * 1.6)], fill=line, width=lw)
        if look.wrinkles >= 1:  # under-eye bags and nasolabial folds
            draw.arc(head.box(side * 0.38 - 0.16, -0.07, side * 0.38 + 0.16, 0.05), 20, 160, fill=line, width=lw)
            draw.line([head.at(side * 0.2, 0.2), head.at(side * 0.36, 0.5)], fill=line, width=lw)
    for _ in range(look.spots):
        x, y = head.at(rng.uniform(-0.6, 0.6), rng.uniform(-0.45, 0.25))
        r = head.a * 0.03
        draw.ellipse((x - r, y - r, x + r, y + r), fill=_shade(look.skin, 0.8))
    gaze = rng.normal(0, 0.03)
    brow = tuple(int(v) for v in np.clip(np.array(look.hair) * (1 - look.grey) + GREY * look.grey, 0, 255))
    for side in (-1, 1):
        draw.ellipse(head.box(side * 0.38 - 0.17, -0.17, side * 0.38 + 0.17, -0.03), fill=(245, 245, 240))
        x, y = head.at(side * 0.38 + gaze, -0.1)
        r = head.b * 0.06
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(50, 35, 25))
        arch = 0.03 if look.gender == 0 else 0.07
        draw.line([head.at(side * 0.16, -0.26), head.at(side * 0.4, -0.28 - arch), head.at(side * 0.6, -0.25)],
                  fill=brow, width=max(1, round(lw * look.brow)))
    draw.line([head.at(0, -0.04), head.at(0.05, 0.19)], fill=line, width=lw)
    draw.arc(head.box(-0.14, 0.12, 0.14, 0.25), 0, 180, fill=line, width=lw)
    smile = rng.uniform(-0.02, 0.05)
    draw.ellipse(head.box(-0.28, 0.41 - smile, 0.28, 0.51 + smile), fill=look.lips)
    draw.line([head.at(-0.28, 0.46), head.at(0, 0.46 + smile), head.at(0.28, 0.46)], fill=_shade(look.lips, 0.6),
              width=lw)


def _beard(layer: Image.Image, look: Look, head: _Head, texture: Image.Image) -> None:
    shape = Image.new("L", layer.size, 0)
    draw = ImageDraw.Draw(shape)
    draw.chord(head.box(-1.0, -1.0, 1.0, 1.0), 0, 180, fill=150)
    draw.ellipse(head.box(-0.3, 0.38, 0.3, 0.54), fill=0)  # the mouth shows through
    layer.paste(texture, (0, 0), shape)


def _face_mask(layer: Image.Image, style: MaskStyle, head: _Head, top: float) -> None:
    """A mask covering the head ellipse below ``top`` (face units), with its straps and its pattern."""
    region = Image.new("L", layer.size, 0)
    rdraw = ImageDraw.Draw(region)
    rdraw.ellipse(head.box(-1.05, -1.04, 1.05, 1.07), fill=255)
    rdraw.rectangle((0, 0, layer.width, head.at(0, top)[1]), fill=0)
    cloth = Image.new("RGBA", layer.size, (*style.colour, 255))
    cdraw = ImageDraw.Draw(cloth)
    dark = _shade(style.colour, 0.78) if sum(style.colour) > 150 else _shade(style.colour, 2.2)
    span = 1.07 - top
    if style.shape == "surgical":
        for k in (0.3, 0.5, 0.7):
            cdraw.line([head.at(-1.1, top + k * span), head.at(1.1, top + k * span)], fill=dark, width=head.lw)
    elif style.shape == "kf94":
        cdraw.line([head.at(0, top), head.at(0, 1.1)], fill=dark, width=head.lw)
    else:
        step = max(2.0, head.a * 0.22)
        for i, y in enumerate(np.arange(head.at(0, top)[1], head.at(0, 1.1)[1], step)):
            for x in np.arange(head.cx - head.a * 1.1 + (step / 2) * (i % 2), head.cx + head.a * 1.1, step):
                cdraw.ellipse((x - step / 6, y - step / 6, x + step / 6, y + step / 6), fill=dark)
    layer.paste(cloth, (0, 0), region)
    draw = ImageDraw.Draw(layer)
    for side in (-1, 1):
        draw.line([head.at(side * 0.98, top + 0.1), head.at(side * 1.1, -0.12)], fill=_shade(style.colour, 0.9),
                  width=head.lw)


def render_photo(look: Look, kind: str, rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """One photo of a person: their look, this photo's pose and light, and the mask ``kind`` asks for."""
    a = look.half_width * width * rng.uniform(0.94, 1.06)
    head = _Head(width * (0.5 + rng.normal(0, 0.03)), height * (0.4 + rng.normal(0, 0.02)), a, a * look.aspect,
                 width)
    texture = _hair_texture(look, rng, width, height)
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    draw.polygon([head.at(-2.6, 3.5), head.at(-2.0, 1.5), head.at(-0.6, 1.25), head.at(0.6, 1.25),
                  head.at(2.0, 1.5), head.at(2.6, 3.5)], fill=look.shirt)
    _hair(layer, look, head, texture, front=False)
    draw.rectangle(head.box(-0.42, 0.5, 0.42, 1.32), fill=_shade(look.skin, 0.88))
    for side in (-1, 1):
        draw.ellipse(head.box(side * 1.0 - 0.16, -0.28, side * 1.0 + 0.16, 0.2), fill=_shade(look.skin, 0.93))
    draw.ellipse(head.box(-1, -1, 1, 1), fill=look.skin)
    _face_details(draw, look, head, rng)
    if look.beard:
        _beard(layer, look, head, texture)
    _hair(layer, look, head, texture, front=True)
    mask = mask_class(kind)
    if mask == 0:
        _face_mask(layer, look.masks[IMAGE_KINDS.index(kind)], head, 0.04)
    elif mask == 1:
        _face_mask(layer, look.masks[0], head, 0.3 if look.incorrect == "nose" else 0.62)
    layer = layer.rotate(float(rng.normal(0, 4)), resample=Image.BILINEAR, center=(head.cx, head.cy))

    scene = Image.fromarray(_background(look, rng, width, height).astype(np.uint8), "RGB").convert("RGBA")
    photo = Image.alpha_composite(scene, layer).convert("RGB")
    if rng.random() < 0.3:
        photo = photo.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0) * width / 384))
    xs, ys = np.linspace(-1, 1, width, dtype=np.float32), np.linspace(-1, 1, height, dtype=np.float32)
    side, top = rng.uniform(-0.3, 0.3), rng.uniform(-0.12, 0.12)
    light = rng.uniform(0.75, 1.15) * (1 + side * xs[None, :] + top * ys[:, None])
    tint = (1 + rng.normal(0, 0.04, 3)).astype(np.float32)
    pixels = np.asarray(photo, np.float32) * light[..., None] * tint
    pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * np.float32(rng.uniform(2, 7))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, extension: str) -> bytes:
    buf = io.BytesIO()
    if extension == ".png":
        image.save(buf, format="PNG", compress_level=6)
    else:
        image.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


@dataclass(frozen=True)
class _Job:
    seed: int
    split: str
    index: int
    gender: int
    age: int
    width: int
    height: int
    root: Path


def train_folder(index: int, gender: int, age: int) -> str:
    return f"{index + 1:06d}_{GENDERS[gender]}_Asian_{age}"


def eval_image_id(seed: int, index: int, kind: str, extension: str) -> str:
    """A 40-hex name like the real eval set's, a pure function of (seed, person, kind)."""
    return hashlib.sha1(f"{seed}/{index}/{kind}".encode()).hexdigest() + extension


def _write_person(job: _Job) -> list[tuple[str, int]]:
    """Draw and write one person's seven photos; (eval ImageID, class) pairs for the eval split."""
    look = draw_look(_rng(job.seed, SPLITS[job.split], job.index), job.gender, job.age)
    age_cls = next(c for c, (low, high) in enumerate(AGE_RANGES) if low <= job.age <= high)
    answers = []
    for k, kind in enumerate(IMAGE_KINDS):
        if job.split == "train":
            path = (job.root / "train" / "images" / train_folder(job.index, job.gender, job.age)
                    / f"{kind}{look.extension}")
        else:
            image_id = eval_image_id(job.seed, job.index, kind, look.extension)
            path = job.root / "eval" / "images" / image_id
            answers.append((image_id, class_index(mask_class(kind), job.gender, age_cls)))
        if not path.is_file():  # written atomically: a present photo is complete
            photo = render_photo(look, kind, _rng(job.seed, SPLITS[job.split], job.index, k + 1), job.width, job.height)
            atomic_write(path, encode(photo, look.extension))
    return answers


def synthesize_mask(out_dir: str | os.PathLike, num_people: int = 2700, num_eval_people: int = 1800, seed: int = 0,
                    width: int = 384, height: int = 512, old_fraction: float = 0.07, female_fraction: float = 0.6,
                    workers: int | None = None, progress: bool = True) -> list[Path]:
    """Write ``train/`` (``num_people`` folders) and ``eval/`` (``num_eval_people`` x 7 photos) under
    ``out_dir``; return the CSVs (train.csv, info.csv, answers.csv). Real sizes: 2,700 / 1,800, 384 x 512.
    """
    if num_people < 2 or num_eval_people < 1 or width < 32 or height < 32:
        raise ValueError(f"need num_people >= 2, num_eval_people >= 1 and sizes >= 32; got {num_people}, "
                         f"{num_eval_people}, {width}x{height}")
    out = Path(out_dir)
    jobs = {split: [_Job(seed, split, i, g, age, width, height, out)
                    for i, (g, age) in enumerate(plan_people(n, seed, split, old_fraction, female_fraction))]
            for split, n in (("train", num_people), ("eval", num_eval_people))}
    workers = max(1, min(workers or available_cpus(), num_people + num_eval_people))
    people = jobs["train"] + jobs["eval"]
    answers = [pair for result in forked_map(_write_person, people, len(people), workers, "synth mask people",
                                             progress, chunksize=4) for pair in result]

    rows = ["id,gender,race,age,path"]
    for job in jobs["train"]:
        folder = train_folder(job.index, job.gender, job.age)
        rows.append(f"{folder.split('_')[0]},{GENDERS[job.gender]},Asian,{job.age},{folder}")
    order = _rng(seed, SPLITS["eval"], 1 << 21).permutation(len(answers)).tolist()
    info = ["ImageID,ans", *(f"{answers[i][0]},0" for i in order)]
    truth = ["ImageID,ans", *(f"{answers[i][0]},{answers[i][1]}" for i in order)]
    return [atomic_write(out / "train" / "train.csv", "\n".join(rows) + "\n"),
            atomic_write(out / "eval" / "info.csv", "\n".join(info) + "\n"),
            atomic_write(out / "eval" / "answers.csv", "\n".join(truth) + "\n")]
