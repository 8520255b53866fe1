"""Dirty MNIST readers: clear errors on malformed data, the Dacon layout, and seeded augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from podium.engine.seeding import EpochSampler, derive_seed
from podium.errors import DataError
from podium.tasks.multilabel.data import (
    DaconLayout,
    DirtyMnistDataset,
    GlyphDataset,
    build_transforms,
    list_images,
    load_image,
    read_answer_csv,
)
from podium.tasks.multilabel.glyphs import LETTERS, read_glyph_csv
from podium.tasks.multilabel.synth import draw_plan, glyph_banks, render_plan, synthesize_dacon

HEADER = "index," + ",".join(LETTERS)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dacon")
    synthesize_dacon(
        root, num_train=6, num_val=2, num_test=3, seed=0, canvas_size=48, glyphs_per_letter=2,
        test_glyphs_per_letter=4, workers=1, progress=False,
    )  # fmt: skip
    return root


def answer_csv(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "dirty_mnist_2nd_answer.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def row(index: int | str, ones: str = "ab") -> str:
    return f"{index}," + ",".join("1" if c in ones else "0" for c in LETTERS)


def test_read_answer_csv_keeps_file_order(tmp_path: Path):
    indices, labels = read_answer_csv(answer_csv(tmp_path, [row(7, "z"), row(3, "ac")]))
    assert indices.dtype == np.int64 and indices.tolist() == [7, 3]
    assert labels.dtype == np.uint8 and labels.shape == (2, 26)
    assert labels[0].tolist() == [0] * 25 + [1] and np.flatnonzero(labels[1]).tolist() == [0, 2]


@pytest.mark.parametrize(
    "header",
    [
        "idx," + ",".join(LETTERS),
        "index," + ",".join(LETTERS[:-1]),
        "index," + ",".join(LETTERS.upper()),
        "index," + ",".join(LETTERS) + ",extra",
        "",
    ],
)
def test_bad_header_names_the_file_and_the_expected_columns(tmp_path: Path, header: str):
    path = answer_csv(tmp_path, [row(0)], header=header)
    with pytest.raises(
        DataError, match=r"dirty_mnist_2nd_answer\.csv: line 1: header is .*expected index,a,b,c"
    ):
        read_answer_csv(path)


@pytest.mark.parametrize(
    "bad_row, where, found",
    [
        (row(1).replace(",1,", ",2,", 1), "column a", "found 2"),
        ("1,0,x" + ",0" * 24, "column b", "found 'x'"),
        ("1,0,0.5" + ",0" * 24, "column b", "found 0.5"),
        ("1,0,0" + ",0" * 23, "column z", "found an empty cell"),
        ("-4" + ",0" * 26, "column index", "found -4"),
    ],
)
def test_bad_value_names_file_line_column_and_value(tmp_path: Path, bad_row: str, where: str, found: str):
    path = answer_csv(tmp_path, [row(0), bad_row])
    with pytest.raises(DataError, match=rf"dirty_mnist_2nd_answer\.csv: line 3, {where}: {found}, expected"):
        read_answer_csv(path)


def test_duplicate_index_names_both_lines(tmp_path: Path):
    path = answer_csv(tmp_path, [row(5), row(6), row(5, "q")])
    with pytest.raises(DataError, match=r"answer\.csv: line 4: duplicate index 5 \(first on line 2\)"):
        read_answer_csv(path)


def test_row_with_too_many_fields_and_missing_file_name_the_file(tmp_path: Path):
    with pytest.raises(DataError, match=r"answer\.csv: .*Expected 27 fields"):
        read_answer_csv(answer_csv(tmp_path, [row(0), row(1) + ",1"]))
    with pytest.raises(DataError, match=r"nowhere\.csv: answer CSV not found"):
        read_answer_csv(tmp_path / "nowhere.csv")


def test_list_images_sorts_by_index_and_ignores_temp_files(tmp_path: Path):
    for name in ("00010.png", "00002.png", "50000.png", ".00003.png.abc.tmp", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert list_images(tmp_path) == {i: tmp_path / f"{i:05d}.png" for i in (2, 10, 50000)}
    (tmp_path / "img_7.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"img_7\.png: file name is not <index>\.png"):
        list_images(tmp_path)
    with pytest.raises(DataError, match=r"missing: image directory not found"):
        list_images(tmp_path / "missing")


def test_layout_pairs_images_with_answers(root: Path):
    layout = DaconLayout(root)
    layout.validate()
    assert {p.name for p in layout.data_files()} >= {
        "dirty_mnist_2nd_answer.csv",
        "sample_submission.csv",
        "train.csv",
        "00000.png",
    }
    paths, labels = layout.items("train")
    assert list(paths) == list(range(6)) and list(labels) == list(range(6))
    assert all(10 <= int(labels[i].sum()) <= 14 for i in labels)
    assert layout.has_split("val") and layout.has_split("test")
    assert list(layout.images("test")) == [6, 7, 8] == layout.sample_submission()
    assert sorted(layout.answers("test")) == [6, 7, 8]


def test_layout_errors_name_the_missing_file_or_index(root: Path, tmp_path: Path):
    with pytest.raises(DataError, match="data root not found"):
        DaconLayout(tmp_path / "nope")
    with pytest.raises(DataError, match=r"dirty_mnist_2nd: missing from the data root"):
        DaconLayout(tmp_path).validate()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "dirty_mnist_2nd").mkdir()
    for i in range(3):
        (broken / "dirty_mnist_2nd" / f"{i:05d}.png").write_bytes(
            (root / "dirty_mnist_2nd" / f"{i:05d}.png").read_bytes()
        )
    answer_csv(broken, [row(0), row(1), row(2), row(3)])
    with pytest.raises(
        DataError, match=r"dirty_mnist_2nd: no entry for index 3 .*expected images and answers to match"
    ):
        DaconLayout(broken).items("train")
    with pytest.raises(DataError, match=r"test_dirty_mnist_2nd_answer\.csv: no test answers"):
        DaconLayout(broken).answers("test")


def test_wrong_image_size_or_mode_names_the_file(root: Path, tmp_path: Path):
    paths = [root / "dirty_mnist_2nd" / f"{i:05d}.png" for i in range(2)]
    small = tmp_path / "00002.png"
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(small)
    dataset = DirtyMnistDataset([*paths, small], np.zeros((3, 26)), build_transforms(32, train=False))
    dataset[1]
    with pytest.raises(DataError, match=r"00002\.png: image is 40x48 \(HxW\); expected 48x48"):
        dataset[2]
    rgb = tmp_path / "00003.png"
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(rgb)
    with pytest.raises(DataError, match=r"00003\.png: image mode is RGB; expected L"):
        load_image(rgb)
    truncated = tmp_path / "00004.png"
    truncated.write_bytes(paths[0].read_bytes()[:50])
    with pytest.raises(DataError, match=r"00004\.png: unreadable image"):
        load_image(truncated, (48, 48))


def test_augmentation_depends_only_on_index_and_sample_seed(root: Path):
    paths, labels = DaconLayout(root).items("train")
    ids = sorted(paths)
    dataset = DirtyMnistDataset(
        [paths[i] for i in ids], np.stack([labels[i] for i in ids]), build_transforms(64, train=True)
    )
    image, target = dataset[(0, 123)]
    assert image.dtype == torch.float32 and image.shape == (1, 64, 64)
    assert float(image.min()) >= -1.0 and float(image.max()) <= 1.0
    assert torch.equal(target, torch.from_numpy(labels[0].astype(np.float32)))
    dataset[(3, 5)]  # other samples in between change nothing
    torch.manual_seed(99)
    before = torch.rand(3)
    torch.manual_seed(99)
    assert torch.equal(dataset[(0, 123)][0], image)
    assert torch.equal(torch.rand(3), before), "the caller's RNG stream is left as it was"
    variants = {dataset[(0, seed)][0].numpy().tobytes() for seed in range(8)}
    assert len(variants) > 2
    for key in list(EpochSampler(len(dataset), seed=3))[:3]:
        assert torch.equal(dataset[key][0], dataset[key][0])
    assert torch.equal(dataset[2][0], dataset[2][0])


def test_eval_transform_is_deterministic_and_unlabelled_items_carry_their_index(root: Path):
    paths = list(DaconLayout(root).images("test").values())
    dataset = DirtyMnistDataset(paths, None, build_transforms(48, train=False))
    image, index = dataset[(1, 7)]
    assert index == 7 and image.shape == (1, 48, 48)
    assert torch.equal(image, dataset[(1, 8)][0])
    pixels = torch.from_numpy(load_image(paths[1])).float() / 255
    assert torch.allclose(image[0], (pixels - 0.5) / 0.5, atol=1e-6)


def test_glyph_banks_hold_out_the_last_rows_of_each_letter_in_test_csv(root: Path):
    train, held = glyph_banks(root / "mnist_data", held_out_fraction=0.25)
    assert train.sizes == (2 + 3,) * 26 and held.sizes == (1,) * 26  # 2 train.csv + 4 test.csv rows per letter
    letters, glyphs = read_glyph_csv(root / "mnist_data" / "test.csv")
    for k in (0, 7, 25):
        last = glyphs[np.flatnonzero(letters == k)[-1]]
        doubled = np.minimum(last.astype(np.uint16) * 2, 255).astype(np.uint8)
        assert np.array_equal(held.pools[k][0], doubled)
        assert not any(np.array_equal(g, doubled) for g in train.pools[k])


@pytest.mark.parametrize("letters", [(1, 1), (2, 4)])
def test_glyph_images_are_the_synthesis_algorithm_with_few_letters(root: Path, letters: tuple[int, int]):
    bank, _ = glyph_banks(root / "mnist_data")
    dataset = GlyphDataset(bank, 10, 48, letters, build_transforms(48, train=False), seed=5)
    assert len(dataset) == 10
    for sample_seed in (11, 12, 13):
        image, target = dataset[(3, sample_seed)]
        plan = draw_plan(np.random.default_rng(sample_seed), 48, bank.sizes, letters)
        pixels = torch.from_numpy(render_plan(plan, bank)).float() / 255
        assert torch.allclose(image[0], (pixels - 0.5) / 0.5, atol=1e-6)
        assert letters[0] <= int(target.sum()) <= letters[1]
        assert torch.equal(target, torch.from_numpy(plan.labels.astype(np.float32)))
        drawn = render_plan(plan, bank, noise=False) > 0
        for p in plan.placements:
            drawn[p.y : p.y + p.size, p.x : p.x + p.size] = False
        assert not drawn.any(), "ink only inside the labelled letters' boxes"
    assert not torch.equal(dataset[(3, 11)][0], dataset[(3, 12)][0])
    assert torch.equal(dataset[4][0], dataset[(4, derive_seed(5, "glyph", 4))][0]), "validation items are fixed"
