"""Boostcamp mask classification: the on-disk layout, the 18 labels, the person split and the dataset.

Layout (spec section 1)::

    train/train.csv                                   id,gender,race,age,path
    train/images/{id}_{gender}_{race}_{age}/{mask1..mask5,incorrect_mask,normal}.{jpg,jpeg,png,...}
    eval/info.csv                                     ImageID,ans
    eval/images/<ImageID>
    eval/answers.csv                                  ImageID,ans (podium's synthetic data only)

Class = mask * 6 + gender * 3 + age. Labels come from the person folder's name and the image's stem;
the recipe may shift the age bins and correct known label errors (the relabel map). Every reader
fails with a :class:`DataError` naming the file or folder, what it found and what it expected.

The seed team's two leaks are made impossible here: the validation split is drawn over *people*
(all seven photos of a person are on one side), and the old class is oversampled from the training
people only.
"""

from __future__ import annotations

import bisect
import csv
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import v2

from podium.engine.seeding import derive_seed, seeded
from podium.errors import ConfigError, DataError
from podium.recipe import Strict

IMAGE_KINDS = ("mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal")
MASK_NAMES = ("wear", "incorrect", "not wear")
GENDERS = ("male", "female")
NUM_CLASSES = 18
OLD = 2  # age class oversampled by ``oversample_old``
MEAN = (0.560, 0.524, 0.501)
STD = (0.233, 0.243, 0.246)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
TRAIN_CSV_COLUMNS = ("id", "gender", "race", "age", "path")
INFO_COLUMNS = ("ImageID", "ans")

_FOLDER = re.compile(r"(?P<id>\d+)_(?P<gender>male|female)_(?P<race>[^_]+)_(?P<age>\d+)")


def mask_class(kind: str) -> int:
    """0 wear (mask1..mask5), 1 incorrect (incorrect_mask), 2 not wear (normal)."""
    if kind not in IMAGE_KINDS:
        raise ValueError(f"unknown image kind {kind!r}; expected one of {', '.join(IMAGE_KINDS)}")
    return 1 if kind == "incorrect_mask" else 2 if kind == "normal" else 0


def age_class(age: int, bins: Sequence[int]) -> int:
    """Number of lower bounds ``bins`` that ``age`` reaches: (30, 60) gives < 30 -> 0, 30..59 -> 1, >= 60 -> 2."""
    return bisect.bisect_right(list(bins), age)


def class_index(mask: int, gender: int, age: int) -> int:
    return mask * 6 + gender * 3 + age


def split_class(label: int) -> tuple[int, int, int]:
    """(mask, gender, age) of an 18-class label."""
    return label // 6, (label // 3) % 2, label % 3


def class_names(bins: Sequence[int] = (30, 60)) -> list[str]:
    """Readable names of the 18 classes, e.g. ``wear/male/<30``."""
    low, high = bins
    ages = (f"<{low}", f"{low}-{high - 1}", f">={high}")
    return [f"{m}/{g}/{a}" for m in MASK_NAMES for g in GENDERS for a in ages]


class RelabelConfig(Strict):
    """Known label errors to correct, by person id (the seed team's relabel_dict)."""

    swap_incorrect_normal: list[str] = []  # their incorrect_mask photo shows no mask and normal a bad one
    incorrect_to_mask: list[str] = []  # their incorrect_mask photo shows a mask worn correctly
    flip_gender: list[str] = []

    @field_validator("swap_incorrect_normal", "incorrect_to_mask", "flip_gender", mode="before")
    @classmethod
    def _quoted_ids(cls, ids: object) -> object:
        numbers = [i for i in ids if isinstance(i, int)] if isinstance(ids, list) else []
        if numbers:
            raise ValueError(f"person ids must be quoted strings such as '000004' (YAML reads 000004 as the "
                             f"number 4); found {numbers[0]!r}")
        return ids

    @model_validator(mode="after")
    def _one_fix_per_photo(self) -> RelabelConfig:
        both = sorted(set(self.swap_incorrect_normal) & set(self.incorrect_to_mask))
        if both:
            raise ValueError(f"id {both[0]!r} is in both swap_incorrect_normal and incorrect_to_mask; "
                             "expected at most one fix of its incorrect_mask photo")
        return self

    def ids(self) -> dict[str, list[str]]:
        return {"swap_incorrect_normal": self.swap_incorrect_normal,
                "incorrect_to_mask": self.incorrect_to_mask, "flip_gender": self.flip_gender}


class LabelConfig(Strict):
    """How a photo's 18-class label is computed: age bins (lower bounds of classes 1 and 2) and fixes."""

    age_bins: tuple[int, int] = (30, 60)
    relabel: RelabelConfig = RelabelConfig()

    @field_validator("age_bins")
    @classmethod
    def _increasing(cls, bins: tuple[int, int]) -> tuple[int, int]:
        if not 0 < bins[0] < bins[1]:
            raise ValueError(f"expected two increasing positive ages (lower bounds of classes 1 and 2), got {bins}")
        return bins


class MaskDataConfig(LabelConfig):
    image_size: int = Field(224, ge=16)
    augment: bool = True
    val_fraction: float = Field(0.2, gt=0, lt=1)
    # the split's own seed (not the stage's): every member of a sweep validates on the same people,
    # which a greedy soup needs to compare them
    split_seed: int = 0
    oversample_old: int = Field(0, ge=0)  # extra copies of each training photo of age class 2


@dataclass(frozen=True)
class Person:
    id: str
    gender: int
    race: str
    age: int
    folder: str


def parse_folder(name: str, where: Path | str = "") -> Person:
    """A person from a folder name ``{id}_{gender}_{race}_{age}`` (e.g. ``000004_male_Asian_54``)."""
    m = _FOLDER.fullmatch(name)
    if not m:
        raise DataError(f"{Path(where) / name}: folder name is not {{id}}_{{gender}}_{{race}}_{{age}} "
                        "(expected e.g. 000004_male_Asian_54, gender male or female)")
    return Person(m["id"], GENDERS.index(m["gender"]), m["race"], int(m["age"]), name)


def photo_label(person: Person, kind: str, labels: LabelConfig) -> int:
    """The 18-class label of one photo after the recipe's relabel map."""
    fix = labels.relabel
    mask = mask_class(kind)
    if person.id in fix.swap_incorrect_normal and mask in (1, 2):
        mask = 3 - mask
    elif person.id in fix.incorrect_to_mask and mask == 1:
        mask = 0
    gender = 1 - person.gender if person.id in fix.flip_gender else person.gender
    return class_index(mask, gender, age_class(person.age, labels.age_bins))


def label_of_image_id(image_id: str, labels: LabelConfig) -> int:
    """Label of a validation id ``<person folder>/<kind>.<ext>`` (what :meth:`MaskLayout.photos` names)."""
    folder, _, file = image_id.partition("/")
    stem = Path(file).stem
    if stem not in IMAGE_KINDS:
        raise DataError(f"{image_id}: not a training photo id (expected <person folder>/<kind>.<ext>, kind one "
                        f"of {', '.join(IMAGE_KINDS)})")
    return photo_label(parse_folder(folder), stem, labels)


def check_relabel(labels: LabelConfig, person_ids: Iterable[str], where: str) -> None:
    """Refuse relabel ids that name nobody (a typo would silently fix nothing)."""
    known = set(person_ids)
    for key, ids in labels.relabel.ids().items():
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise ConfigError(f"{where}.relabel.{key}: id {unknown[0]!r} is not a person of train/images "
                              f"({len(unknown)} unknown id(s))")


def _read_csv(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataError(f"{path}: not found (expected a CSV with columns {','.join(columns)})")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in columns if c not in header]
        if missing:
            raise DataError(f"{path}: line 1: header is {','.join(header)!r}; expected columns "
                            f"{','.join(columns)} (missing {missing[0]!r})")
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]


def _visible(directory: Path) -> list[os.DirEntry]:
    """Entries of a directory, without hidden ones (macOS ``._*`` forks, interrupted atomic writes)."""
    with os.scandir(directory) as entries:
        return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


class MaskLayout:
    """Paths of a Boostcamp mask data root, read and checked when asked for."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: data root not found (expected train/ and eval/ of the mask layout)")

    @property
    def train_csv(self) -> Path:
        return self.root / "train" / "train.csv"

    @property
    def train_images(self) -> Path:
        return self.root / "train" / "images"

    @property
    def info_csv(self) -> Path:
        return self.root / "eval" / "info.csv"

    @property
    def eval_images(self) -> Path:
        return self.root / "eval" / "images"

    @property
    def answers_csv(self) -> Path:
        return self.root / "eval" / "answers.csv"

    def people(self) -> list[Person]:
        """Every person of ``train/images``, sorted by id, checked against ``train/train.csv``."""
        if not self.train_images.is_dir():
            raise DataError(f"{self.train_images}: not found (expected one folder per person)")
        people = [parse_folder(e.name, self.train_images) for e in _visible(self.train_images) if e.is_dir()]
        seen: dict[str, str] = {}
        for p in people:
            if p.id in seen:
                raise DataError(f"{self.train_images}: id {p.id} names two folders ({seen[p.id]}, {p.folder}); "
                                "expected one folder per person")
            seen[p.id] = p.folder
        listed = [r["path"] for r in _read_csv(self.train_csv, TRAIN_CSV_COLUMNS)]
        for missing, where, other in ((sorted(set(listed) - set(seen.values())), self.train_images, self.train_csv),
                                      (sorted(set(seen.values()) - set(listed)), self.train_csv, self.train_images)):
            if missing:
                raise DataError(f"{where}: no {missing[0]!r}, which {other} lists ({len(missing)} such); "
                                "expected train.csv's path column to name exactly the person folders")
        return sorted(people, key=lambda p: p.id)

    def photos(self, person: Person) -> dict[str, Path]:
        """``{kind: path}`` of a person's seven photos, matched on the file stem (extensions vary)."""
        folder = self.train_images / person.folder
        found: dict[str, Path] = {}
        for entry in _visible(folder):
            path = folder / entry.name
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if path.stem not in IMAGE_KINDS:
                raise DataError(f"{path}: unexpected photo name {path.stem!r}; expected one of "
                                f"{', '.join(IMAGE_KINDS)}")
            if path.stem in found:
                raise DataError(f"{path}: a second {path.stem} photo (besides {found[path.stem].name}); "
                                "expected one file per kind")
            found[path.stem] = path
        missing = [k for k in IMAGE_KINDS if k not in found]
        if missing:
            raise DataError(f"{folder}: no {missing[0]} photo ({len(missing)} of 7 kinds missing: "
                            f"{', '.join(missing)}); expected {', '.join(IMAGE_KINDS)} with any image extension")
        return {k: found[k] for k in IMAGE_KINDS}

    def eval_ids(self) -> list[str]:
        """``eval/info.csv``'s ImageIDs in file order (the submission's order), each with its image."""
        rows = _read_csv(self.info_csv, INFO_COLUMNS)
        ids: dict[str, int] = {}
        for line, row in enumerate(rows, start=2):
            image_id = row["ImageID"]
            if image_id in ids:
                raise DataError(f"{self.info_csv}: line {line}: ImageID {image_id!r} repeats line {ids[image_id]}; "
                                "expected each ImageID once")
            if not (self.eval_images / image_id).is_file():
                raise DataError(f"{self.info_csv}: line {line}: unknown ImageID {image_id!r} (no file "
                                f"{self.eval_images / image_id}); expected every ImageID to name an image there")
            ids[image_id] = line
        return list(ids)

    def answers(self) -> dict[str, int]:
        """``{ImageID: class}`` of the eval images: only podium's synthetic data has them."""
        if not self.answers_csv.is_file():
            raise DataError(f"{self.answers_csv}: not found: the eval labels are hidden (the competition keeps "
                            "them); score a 'val' prediction instead, or use podium's synthetic data")
        out = {}
        for line, row in enumerate(_read_csv(self.answers_csv, INFO_COLUMNS), start=2):
            ans = row["ans"]
            if not ans.isdigit() or int(ans) >= NUM_CLASSES:
                raise DataError(f"{self.answers_csv}: line {line}: ans is {ans!r}; expected a class 0..17")
            out[row["ImageID"]] = int(ans)
        return out

    def validate(self) -> None:
        """Read everything a run will read, failing on the first problem."""
        for person in self.people():
            self.photos(person)
        self.eval_ids()

    def data_files(self) -> list[Path]:
        """Every file of the data set: the CSVs, each person's seven photos and the eval images (reading them
        validates the layout as :meth:`validate` does)."""
        csvs = [p for p in (self.train_csv, self.info_csv, self.answers_csv) if p.is_file()]
        photos = [p for person in self.people() for p in self.photos(person).values()]
        return csvs + photos + [self.eval_images / image_id for image_id in self.eval_ids()]


def split_people(strata: dict[str, int], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train ids, validation ids): a person-level split stratified on ``strata[id]``.

    ``round(n * fraction)`` people are held out in all; each stratum gets its share, rounded by largest
    remainder (ties to the smaller stratum id) so the total is exact, and its people are drawn by a
    permutation seeded from (seed, stratum) over the sorted ids: the same ids and seed always give
    the same split, whatever order the folders were listed in.
    """
    groups: dict[int, list[str]] = {}
    for pid in sorted(strata):
        groups.setdefault(strata[pid], []).append(pid)
    shares = {s: len(ids) * fraction for s, ids in sorted(groups.items())}
    quota = {s: math.floor(q) for s, q in shares.items()}
    extra = round(len(strata) * fraction) - sum(quota.values())
    for s in sorted(shares, key=lambda s: (quota[s] - shares[s], s))[:max(extra, 0)]:
        quota[s] += 1
    held: list[str] = []
    for s, ids in sorted(groups.items()):
        g = torch.Generator().manual_seed(derive_seed(seed, "person-split", s))
        held += [ids[i] for i in torch.randperm(len(ids), generator=g)[: quota[s]].tolist()]
    held_set = set(held)
    return [i for i in sorted(strata) if i not in held_set], sorted(held_set)


def build_transform(image_size: int, mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 [3,H,W] -> float32 [3,S,S] normalised with the seed's mean / std.

    ``eval``: shorter side to S, centre crop. ``train``: shorter side to S, random crop, horizontal
    flip, colour jitter. ``old``: the extra augmentation of oversampled age-class-2 copies, ``train``
    plus a small random rotation and zoom so a copy is not a replay of its original. Random draws come
    from torch's global generator, which :class:`MaskDataset` seeds per sample.
    """
    steps: list[Callable] = [v2.Resize(image_size, antialias=True)]
    if mode == "eval":
        steps.append(v2.CenterCrop(image_size))
    elif mode in ("train", "old"):
        if mode == "old":
            steps.append(v2.RandomAffine(degrees=10, scale=(0.9, 1.1)))
        steps += [v2.RandomCrop(image_size), v2.RandomHorizontalFlip(),
                  v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02)]
    else:
        raise ValueError(f"mode must be train, old or eval, got {mode!r}")
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]
    return v2.Compose(steps)


def load_image(path: Path) -> torch.Tensor:
    """An image file as uint8 [3,H,W] RGB (grey and RGBA files are converted)."""
    try:
        return decode_image(str(path), mode=ImageReadMode.RGB)
    except (RuntimeError, OSError) as e:
        raise DataError(f"{path}: unreadable image ({e}); expected a JPEG or PNG") from None


class MaskDataset(torch.utils.data.Dataset):
    """Photos with their labels (-1 when unknown), each with the transform it is augmented by.

    ``dataset[(i, sample_seed)]`` (what :class:`EpochSampler` yields) augments under
    ``seeded(sample_seed)``, so an item's augmentation depends only on (seed, epoch, i).
    """

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], transforms: Sequence[Callable],
                 which: Sequence[int] | None = None):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} photos but {len(labels)} labels")
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transforms = list(transforms)
        self.which = np.zeros(len(paths), np.int64) if which is None else np.asarray(which, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, sample_seed = key[:2] if isinstance(key, tuple) else (key, derive_seed("mask", key))
        image = load_image(self.paths[i])
        with seeded(sample_seed):
            image = self.transforms[self.which[i]](image)
        return image, int(self.labels[i])


@dataclass(frozen=True)
class Photo:
    person: Person
    kind: str
    path: Path

    @property
    def image_id(self) -> str:
        """``<person folder>/<file name>``: how validation predictions name a photo."""
        return f"{self.person.folder}/{self.path.name}"


def split_photos(layout: MaskLayout, cfg: MaskDataConfig, where: str = "data") -> tuple[list[Photo], list[Photo]]:
    """(train photos, validation photos) of the person split, people sorted by id, kinds in layout order."""
    people = layout.people()
    check_relabel(cfg, (p.id for p in people), where)
    strata = {p.id: p.gender * 3 + age_class(p.age, cfg.age_bins) for p in people}
    train_ids, _ = split_people(strata, cfg.val_fraction, cfg.split_seed)
    train_set = set(train_ids)
    train: list[Photo] = []
    val: list[Photo] = []
    for person in people:
        side = train if person.id in train_set else val
        side += [Photo(person, kind, path) for kind, path in layout.photos(person).items()]
    return train, val


def training_datasets(layout: MaskLayout, cfg: MaskDataConfig) -> tuple[MaskDataset, MaskDataset]:
    """(train, validation) datasets; ``oversample_old`` copies of the *training* old photos are appended."""
    train, val = split_photos(layout, cfg)
    labels = [photo_label(p.person, p.kind, cfg) for p in train]
    old = [(p, y) for p, y in zip(train, labels, strict=True) if split_class(y)[2] == OLD]
    copies = [pair for pair in old for _ in range(cfg.oversample_old)]
    modes = ("train", "old") if cfg.augment else ("eval", "eval")
    train_ds = MaskDataset([p.path for p in train] + [p.path for p, _ in copies], labels + [y for _, y in copies],
                           [build_transform(cfg.image_size, m) for m in modes],
                           [0] * len(train) + [1] * len(copies))
    return train_ds, eval_dataset(val, cfg)


def eval_dataset(photos: Sequence[Photo], cfg: MaskDataConfig) -> MaskDataset:
    """Labelled photos under the eval transform: validation in training and held-out soup scoring alike."""
    return MaskDataset([p.path for p in photos], [photo_label(p.person, p.kind, cfg) for p in photos],
                       [build_transform(cfg.image_size, "eval")])
