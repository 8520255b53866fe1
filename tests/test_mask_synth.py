"""Mask synthesis: the exact Boostcamp layout, few old people, determinism (any worker count)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from podium.tasks.mask.data import IMAGE_KINDS, MaskLayout, parse_folder
from podium.tasks.mask.synth import draw_look, plan_people, render_photo, synthesize_mask

PEOPLE, EVAL_PEOPLE, W, H = 40, 6, 64, 80


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mask")
    synthesize_mask(root, PEOPLE, EVAL_PEOPLE, seed=3, width=W, height=H, workers=1, progress=False)
    return root


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        header, *rows = list(csv.reader(f))
    return header, rows


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_exact_layout(root: Path):
    assert sorted(p.name for p in root.iterdir()) == ["eval", "train"]
    assert sorted(p.name for p in (root / "train").iterdir()) == ["images", "train.csv"]
    assert sorted(p.name for p in (root / "eval").iterdir()) == ["answers.csv", "images", "info.csv"]
    folders = sorted(p for p in (root / "train" / "images").iterdir())
    assert len(folders) == PEOPLE
    for folder in folders:
        parse_folder(folder.name)
        files = sorted(folder.iterdir())
        assert sorted(f.stem for f in files) == sorted(IMAGE_KINDS)
        assert {f.suffix for f in files} <= {".jpg", ".jpeg", ".png"} and len({f.suffix for f in files}) == 1
    with Image.open(next(folders[0].iterdir())) as image:
        assert image.size == (W, H) and image.mode == "RGB"

    header, rows = _rows(root / "train" / "train.csv")
    assert header == ["id", "gender", "race", "age", "path"]
    assert [r[4] for r in rows] == [f.name for f in folders]
    assert all(r[4] == "_".join(r[:4]) for r in rows)

    header, info = _rows(root / "eval" / "info.csv")
    assert header == ["ImageID", "ans"] and len(info) == 7 * EVAL_PEOPLE
    assert {r[1] for r in info} == {"0"}
    assert sorted(r[0] for r in info) == sorted(p.name for p in (root / "eval" / "images").iterdir())
    assert all(len(r[0].split(".")[0]) == 40 for r in info)
    header, answers = _rows(root / "eval" / "answers.csv")
    assert header == ["ImageID", "ans"] and [r[0] for r in answers] == [r[0] for r in info]
    classes = np.array([int(r[1]) for r in answers])
    assert ((classes >= 0) & (classes < 18)).all()
    assert np.bincount(classes // 6, minlength=3).tolist() == [5 * EVAL_PEOPLE, EVAL_PEOPLE, EVAL_PEOPLE]
    MaskLayout(root).validate()


def test_few_old_people_like_the_real_set(root: Path):
    ages = [parse_folder(p.name).age for p in (root / "train" / "images").iterdir()]
    old = sum(a >= 60 for a in ages)
    assert 1 <= old <= 0.1 * PEOPLE
    assert min(ages) >= 18
    plan = plan_people(2700, seed=0, split="train", old_fraction=0.07, female_fraction=0.6)
    ages = np.array([a for _, a in plan])
    assert (ages >= 60).sum() == 189 and abs((ages < 30).sum() - (ages[ages < 60] >= 30).sum()) <= 1
    assert 0.55 < np.mean([g for g, _ in plan]) < 0.65


def test_deterministic_for_any_worker_count(tmp_path: Path):
    for name, seed, workers in (("one", 3, 1), ("two", 3, 2), ("other", 4, 1)):
        synthesize_mask(tmp_path / name, 6, 2, seed=seed, width=W, height=H, workers=workers, progress=False)
    one, two, other = (_digests(tmp_path / name) for name in ("one", "two", "other"))
    assert one == two and len(one) == 7 * 8 + 3
    assert other["eval/info.csv"] != one["eval/info.csv"]


def test_mask_kinds_change_the_lower_face_only():
    rng = np.random.default_rng
    look = draw_look(rng(0), gender=1, age=64)
    photos = {k: np.asarray(render_photo(look, k, rng(5), 128, 160), np.float32) for k in IMAGE_KINDS}
    worn, bare = photos["mask1"], photos["normal"]
    diff = np.abs(worn - bare).mean(axis=(1, 2))
    top, mouth = diff[: 160 // 3].mean(), diff[int(160 * 0.45): int(160 * 0.6)].mean()
    assert mouth > 5 * top  # the same pose and light: only the mask differs
    assert np.abs(photos["mask1"] - photos["mask2"]).mean() > 1  # five mask styles
