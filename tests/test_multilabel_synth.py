"""Dirty MNIST synthesis: the algorithm's invariants, determinism, the Dacon layout and exact resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from podium.errors import DataError
from podium.tasks.multilabel.glyphs import (
    LETTERS,
    read_glyph_csv,
    render_glyph_table,
    write_glyph_csvs,
)
from podium.tasks.multilabel.synth import (
    GlyphBank,
    held_out_rows,
    plan_image,
    render_plan,
    synthesize_dacon,
    synthesize_image,
    synthesize_split,
    warp_glyph,
)

REPO = Path(__file__).parent.parent
PACKAGE = REPO / "podium" / "tasks" / "multilabel"
TINY = dict(
    canvas_size=48, glyphs_per_letter=2, test_glyphs_per_letter=4, workers=1, chunk_size=4, progress=False
)


@pytest.fixture(scope="module")
def bank() -> GlyphBank:
    return GlyphBank(*render_glyph_table(seed=0, per_letter=2, table="train"))


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_glyphs_are_bright_centred_letters_and_seeded():
    letters, glyphs = render_glyph_table(seed=0, per_letter=2, table="train")
    assert glyphs.shape == (52, 28, 28) and glyphs.dtype == np.uint8
    assert sorted(np.bincount(letters, minlength=26)) == [2] * 26
    assert (glyphs.reshape(52, -1).max(axis=1) == 255).all()
    assert glyphs[:, [0, -1], :].max() == 0 and glyphs[:, :, [0, -1]].max() == 0  # margin, as in EMNIST
    ink = glyphs.astype(float)
    ys, xs = np.mgrid[:28, :28]
    centre_y = (ink * ys).sum(axis=(1, 2)) / ink.sum(axis=(1, 2))
    centre_x = (ink * xs).sum(axis=(1, 2)) / ink.sum(axis=(1, 2))
    assert np.abs(centre_y - 13.5).max() < 5 and np.abs(centre_x - 13.5).max() < 5
    again = render_glyph_table(seed=0, per_letter=2, table="train")
    assert np.array_equal(again[0], letters) and np.array_equal(again[1], glyphs)
    assert not np.array_equal(render_glyph_table(seed=1, per_letter=2, table="train")[1], glyphs)
    assert not np.array_equal(render_glyph_table(seed=0, per_letter=2, table="test")[1], glyphs)


def test_glyph_csvs_use_dacon_columns_and_round_trip(tmp_path: Path):
    paths = write_glyph_csvs(tmp_path, seed=3, train_per_letter=1, test_per_letter=2)
    train_lines = paths["train"].read_text().splitlines()
    test_lines = paths["test"].read_text().splitlines()
    assert train_lines[0] == "id,digit,letter," + ",".join(str(i) for i in range(784))
    assert test_lines[0] == "id,letter," + ",".join(str(i) for i in range(784))
    assert len(train_lines) == 27 and len(test_lines) == 53
    assert train_lines[1].split(",")[0] == "1" and test_lines[1].split(",")[0] == "27"  # ids run on
    assert train_lines[1].split(",")[2] in LETTERS.upper()
    letters, glyphs = read_glyph_csv(paths["test"])
    expected_letters, expected_glyphs = render_glyph_table(seed=3, per_letter=2, table="test")
    assert np.array_equal(letters, expected_letters) and np.array_equal(glyphs, expected_glyphs)


def test_glyph_csv_with_a_bad_letter_names_file_and_line(tmp_path: Path):
    path = write_glyph_csvs(tmp_path, seed=0, train_per_letter=1, test_per_letter=1)["test"]
    lines = path.read_text().splitlines()
    fields = lines[3].split(",")
    fields[1] = "7"
    lines[3] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"test\.csv: line 4, column letter: found '7'"):
        read_glyph_csv(path)


def test_every_image_draws_10_to_14_distinct_letters_that_fit(bank: GlyphBank):
    placements = []
    for index in range(150):
        plan = plan_image(7, "train", index, 256, bank.sizes)
        letters = [p.letter for p in plan.placements]
        assert 10 <= len(letters) <= 14 and len(set(letters)) == len(letters)
        assert plan.noise.dtype == np.uint8 and plan.noise.max() <= 254
        for p in plan.placements:
            assert 1.0 <= p.scale < 2.0 and 0.0 <= p.angle < 360.0
            assert p.intensity == 1.0 or 0.3 <= p.intensity < 0.7
            assert 0 <= p.x <= 256 - p.size and 0 <= p.y <= 256 - p.size
        placements += plan.placements
    dimmed = np.mean([p.intensity != 1.0 for p in placements])
    assert 0.2 < dimmed < 0.4
    assert {p.letter for p in placements} == set(range(26))


def test_labels_are_exactly_the_letters_placed(bank: GlyphBank):
    for index in range(20):
        plan = plan_image(11, "train", index, 128, bank.sizes)
        image, labels = synthesize_image(bank, 11, "train", index, 128)
        assert labels.dtype == np.uint8 and set(np.flatnonzero(labels)) == {p.letter for p in plan.placements}
        # Rebuild the letters layer from the plan alone: it must be the image minus its noise.
        layer = np.zeros((128, 128), np.int64)
        for p in plan.placements:
            glyph = warp_glyph(bank.pools[p.letter][p.glyph], p.scale, p.angle, p.size)
            assert glyph.max() > 0, "each labelled letter leaves ink"
            if p.intensity != 1.0:
                glyph = (glyph * p.intensity).astype(np.uint8)
            layer[p.y : p.y + p.size, p.x : p.x + p.size] += glyph
        assert np.array_equal(render_plan(plan, bank, noise=False), np.minimum(layer, 255))
        assert np.array_equal(image, np.minimum(plan.noise.astype(np.int64) + layer, 255))


def test_a_canvas_smaller_than_a_rotated_glyph_shrinks_the_glyph(bank: GlyphBank):
    for index in range(50):
        plan = plan_image(0, "train", index, 32, bank.sizes)
        for p in plan.placements:
            assert p.size <= 32 and p.x + p.size <= 32 and p.y + p.size <= 32
    sizes = [p.size for i in range(50) for p in plan_image(0, "train", i, 256, bank.sizes).placements]
    assert max(sizes) <= 80  # 28 px x 2 x sqrt(2): never shrunk on the real canvas


def test_dacon_layout_is_complete_and_consistent(tmp_path: Path):
    out = synthesize_dacon(tmp_path, num_train=6, num_val=3, num_test=3, seed=5, **TINY)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        ".synth",
        "dirty_mnist_2nd",
        "dirty_mnist_2nd_answer.csv",
        "mnist_data",
        "sample_submission.csv",
        "test_dirty_mnist_2nd",
        "test_dirty_mnist_2nd_answer.csv",
        "val_dirty_mnist_2nd",
        "val_dirty_mnist_2nd_answer.csv",
    ]
    assert sorted(p.name for p in (tmp_path / "dirty_mnist_2nd").iterdir()) == [
        f"{i:05d}.png" for i in range(6)
    ]
    assert sorted(p.name for p in (tmp_path / "test_dirty_mnist_2nd").iterdir()) == [
        f"{i:05d}.png" for i in range(6, 9)
    ]
    header = "index," + ",".join(LETTERS)
    for name, first, count in (
        ("dirty_mnist_2nd", 0, 6),
        ("val_dirty_mnist_2nd", 0, 3),
        ("test_dirty_mnist_2nd", 6, 3),
    ):
        lines = (tmp_path / f"{name}_answer.csv").read_text().splitlines()
        assert lines[0] == header
        rows = np.array([[int(v) for v in line.split(",")] for line in lines[1:]])
        assert rows[:, 0].tolist() == list(range(first, first + count))
        assert ((rows[:, 1:].sum(axis=1) >= 10) & (rows[:, 1:].sum(axis=1) <= 14)).all()
        image = cv2.imread(str(tmp_path / name / f"{first:05d}.png"), cv2.IMREAD_UNCHANGED)
        assert image.shape == (48, 48) and image.dtype == np.uint8
    sample = (tmp_path / "sample_submission.csv").read_text().splitlines()
    assert sample[0] == header and sample[1:] == [f"{i}," + ",".join("0" * 26) for i in range(6, 9)]
    assert out["test_answer"] == tmp_path / "test_dirty_mnist_2nd_answer.csv" and out["num_test"] == 3


def test_validation_images_come_from_held_out_glyphs(tmp_path: Path):
    synthesize_dacon(tmp_path, num_train=2, num_val=2, num_test=1, seed=2, **TINY)
    letters, glyphs = read_glyph_csv(tmp_path / "mnist_data" / "test.csv")
    held = held_out_rows(letters, 0.15)
    assert (np.bincount(letters[held], minlength=26) >= 1).all()
    assert (np.bincount(letters[~held], minlength=26) >= 1).all()
    held_bank = GlyphBank(letters[held], glyphs[held])
    expected, _ = synthesize_image(held_bank, 2, "val", 1, 48)
    on_disk = cv2.imread(str(tmp_path / "val_dirty_mnist_2nd" / "00001.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(on_disk, expected)


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path):
    synthesize_dacon(tmp_path / "a", num_train=5, num_val=2, num_test=2, seed=1, **TINY)
    synthesize_dacon(tmp_path / "b", num_train=5, num_val=2, num_test=2, seed=1, **TINY)
    synthesize_dacon(tmp_path / "c", num_train=5, num_val=2, num_test=2, seed=2, **TINY)
    a, b, c = (tree_bytes(tmp_path / d) for d in "abc")
    assert a == b
    for name in ("dirty_mnist_2nd/00000.png", "dirty_mnist_2nd_answer.csv", "mnist_data/train.csv"):
        assert a[name] != c[name]


def test_parallel_workers_write_the_same_bytes_as_one(tmp_path: Path, bank: GlyphBank):
    kwargs = dict(bank=bank, seed=4, split="train", first_index=0, count=24, canvas_size=64, chunk_size=3)
    synthesize_split(
        tmp_path / "one" / "img", tmp_path / "one" / "answer.csv", workers=1, progress=False, **kwargs
    )
    synthesize_split(
        tmp_path / "two" / "img", tmp_path / "two" / "answer.csv", workers=2, progress=False, **kwargs
    )
    assert tree_bytes(tmp_path / "one") == tree_bytes(tmp_path / "two")


def test_resume_rewrites_exactly_what_an_interrupted_run_left_undone(tmp_path: Path, bank: GlyphBank):
    kwargs = dict(bank=bank, seed=9, split="train", first_index=0, count=20, canvas_size=64, chunk_size=4)
    full, cut = tmp_path / "full", tmp_path / "cut"
    synthesize_split(full / "img", full / "answer.csv", workers=1, progress=False, **kwargs)
    synthesize_split(cut / "img", cut / "answer.csv", workers=1, progress=False, **kwargs)
    # What a kill can leave: chunks without their shard (some images written, some not, one from an
    # older run), a temp file of an interrupted atomic write, and no answer CSV yet.
    for start in (4, 12):
        (cut / ".synth" / "img" / f"{start:08d}.csv").unlink()
    (cut / "img" / "00013.png").unlink()
    (cut / "img" / "00014.png").write_bytes(b"stale bytes from an older run")
    (cut / "img" / ".00015.png.x1y2.tmp").write_bytes(b"\x89PNG half")
    (cut / "answer.csv").unlink()
    synthesize_split(cut / "img", cut / "answer.csv", workers=2, progress=False, **kwargs)
    assert tree_bytes(cut) == tree_bytes(full)


def test_resume_after_sigkill_is_byte_identical(tmp_path: Path):
    write_glyph_csvs(tmp_path / "mnist", seed=0, train_per_letter=2, test_per_letter=2)
    script = (
        "import sys, types\n"
        # The child needs only the synthesis modules: skip the task package's __init__ (torch, Lightning).
        f"package = types.ModuleType('podium.tasks.multilabel'); package.__path__ = [{str(PACKAGE)!r}]\n"
        "sys.modules['podium.tasks.multilabel'] = package\n"
        "from podium.tasks.multilabel.glyphs import read_glyph_csv\n"
        "from podium.tasks.multilabel.synth import GlyphBank, synthesize_split\n"
        "root = sys.argv[1]\n"
        "bank = GlyphBank(*read_glyph_csv(root + '/mnist/train.csv'))\n"
        "synthesize_split(root + '/' + sys.argv[2] + '/img', root + '/' + sys.argv[2] + '/answer.csv', bank,"
        " seed=3, split='train', first_index=0, count=int(sys.argv[3]), canvas_size=128, workers=1,"
        " chunk_size=10, progress=False)\n"
    )
    (tmp_path / "run.py").write_text(script)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "run.py"), str(tmp_path), "killed", "600"], env=env
    )
    shards = tmp_path / "killed" / ".synth" / "img"
    deadline = time.monotonic() + 60
    while not (shards.is_dir() and len(list(shards.glob("0*.csv"))) >= 2) and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "answer.csv").exists(), "the run finished before it could be killed"

    bank = GlyphBank(*read_glyph_csv(tmp_path / "mnist" / "train.csv"))
    kwargs = dict(bank=bank, seed=3, split="train", first_index=0, count=600, canvas_size=128, chunk_size=10)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    synthesize_split(killed / "img", killed / "answer.csv", workers=2, progress=False, **kwargs)
    synthesize_split(clean / "img", clean / "answer.csv", workers=2, progress=False, **kwargs)
    assert tree_bytes(killed) == tree_bytes(clean)


def test_resuming_with_other_settings_is_refused(tmp_path: Path, bank: GlyphBank):
    kwargs = dict(bank=bank, seed=0, split="val", first_index=0, canvas_size=48, workers=1, progress=False)
    synthesize_split(tmp_path / "img", tmp_path / "answer.csv", count=3, **kwargs)
    with pytest.raises(DataError, match=r"config\.json.*count: 3 -> 4"):
        synthesize_split(tmp_path / "img", tmp_path / "answer.csv", count=4, **kwargs)
