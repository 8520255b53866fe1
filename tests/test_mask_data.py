"""Mask data: labels and age bins, the relabel map, the person split, oversampling, malformed layouts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from podium.errors import ConfigError, DataError
from podium.tasks.mask.data import (
    IMAGE_KINDS,
    LabelConfig,
    MaskDataConfig,
    MaskLayout,
    RelabelConfig,
    age_class,
    class_names,
    label_of_image_id,
    parse_folder,
    photo_label,
    split_people,
    split_photos,
    training_datasets,
)
from podium.tasks.mask.synth import synthesize_mask


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 16), (120, 90, 60)).save(path, format="PNG" if path.suffix == ".png" else "JPEG")


def make_layout(root: Path, folders: list[str], eval_ids: tuple[str, ...] = ("a.jpg", "b.png"),
                ext: dict[str, str] | None = None) -> Path:
    """A hand-made layout: seven photos per folder (extensions per kind from ``ext``), eval images, CSVs."""
    rows = ["id,gender,race,age,path"]
    for folder in folders:
        for kind in IMAGE_KINDS:
            _image(root / "train" / "images" / folder / f"{kind}{(ext or {}).get(kind, '.jpg')}")
        rows.append(",".join([*(folder.split("_") + ["?"] * 4)[:4], folder]))
    (root / "train" / "train.csv").write_text("\n".join(rows) + "\n")
    for image_id in eval_ids:
        _image(root / "eval" / "images" / image_id)
    (root / "eval" / "info.csv").write_text("ImageID,ans\n" + "".join(f"{i},0\n" for i in eval_ids))
    return root


PEOPLE = ["000001_male_Asian_54", "000002_female_Asian_20", "000003_female_Asian_60"]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mask")
    synthesize_mask(root, num_people=40, num_eval_people=1, seed=1, width=32, height=40, old_fraction=0.15, workers=1,
                    progress=False)
    return root


@pytest.mark.parametrize("age, bins, expected", [
    (18, (30, 60), 0), (29, (30, 60), 0), (30, (30, 60), 1), (59, (30, 60), 1), (60, (30, 60), 2),
    (28, (29, 59), 0), (29, (29, 59), 1), (58, (29, 59), 1), (59, (29, 59), 2),
])
def test_age_bins_are_lower_bounds_of_classes_1_and_2(age, bins, expected):
    assert age_class(age, bins) == expected


def test_age_bins_must_increase():
    with pytest.raises(ValidationError, match="increasing"):
        LabelConfig(age_bins=(60, 30))


def test_labels_follow_mask_gender_age():
    man = parse_folder("000001_male_Asian_54")
    labels = LabelConfig()
    assert [photo_label(man, k, labels) for k in IMAGE_KINDS] == [1, 1, 1, 1, 1, 7, 13]
    woman = parse_folder("000002_female_Asian_60")
    assert [photo_label(woman, k, labels) for k in ("mask3", "incorrect_mask", "normal")] == [5, 11, 17]
    assert photo_label(man, "mask1", LabelConfig(age_bins=(20, 50))) == 2
    assert class_names()[0] == "wear/male/<30" and class_names()[17] == "not wear/female/>=60"


def test_relabel_map():
    man, other = parse_folder("000001_male_Asian_54"), parse_folder("000009_male_Asian_54")
    swap = LabelConfig(relabel=RelabelConfig(swap_incorrect_normal=["000001"]))
    assert [photo_label(man, k, swap) for k in ("mask1", "incorrect_mask", "normal")] == [1, 13, 7]
    assert [photo_label(other, k, swap) for k in ("incorrect_mask", "normal")] == [7, 13]
    to_mask = LabelConfig(relabel=RelabelConfig(incorrect_to_mask=["000001"]))
    assert [photo_label(man, k, to_mask) for k in ("incorrect_mask", "normal")] == [1, 13]
    flip = LabelConfig(relabel=RelabelConfig(flip_gender=["000001"]))
    assert [photo_label(man, k, flip) for k in ("mask1", "incorrect_mask", "normal")] == [4, 10, 16]
    assert label_of_image_id("000001_male_Asian_54/normal.png", flip) == 16


def test_relabel_refuses_one_photo_fixed_twice():
    with pytest.raises(ValidationError, match="both swap_incorrect_normal and incorrect_to_mask"):
        RelabelConfig(swap_incorrect_normal=["1"], incorrect_to_mask=["1"])


def test_relabel_ids_must_name_people(tmp_path: Path):
    root = make_layout(tmp_path, PEOPLE)
    cfg = MaskDataConfig(relabel=RelabelConfig(flip_gender=["000002", "000777"]))
    with pytest.raises(ConfigError, match=r"data\.relabel\.flip_gender: id '000777' is not a person"):
        split_photos(MaskLayout(root), cfg)


def _strata(n: int) -> dict[str, int]:
    # 6 strata of uneven sizes, few in the old strata (2 and 5), like the real set
    sizes = [int(n * f) for f in (0.25, 0.2, 0.03, 0.3, 0.18, 0.04)]
    out, k = {}, 0
    for stratum, size in enumerate(sizes):
        for _ in range(size):
            out[f"{k:06d}"] = stratum
            k += 1
    return out


def test_split_is_by_person_stratified_and_exact():
    strata = _strata(1000)
    train, val = split_people(strata, 0.2, seed=0)
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(strata)
    assert len(val) == round(len(strata) * 0.2)
    for s in range(6):
        n = sum(1 for v in strata.values() if v == s)
        held = sum(1 for i in val if strata[i] == s)
        assert abs(held - n * 0.2) < 1, (s, n, held)


def test_split_is_deterministic_and_ignores_listing_order():
    strata = _strata(300)
    shuffled = dict(reversed(list(strata.items())))
    assert split_people(strata, 0.2, 5) == split_people(shuffled, 0.2, 5)
    assert split_people(strata, 0.2, 5) != split_people(strata, 0.2, 6)


def test_photo_split_keeps_each_person_on_one_side(synth_root: Path):
    train, val = split_photos(MaskLayout(synth_root), MaskDataConfig(val_fraction=0.25))
    train_people = {p.person.id for p in train}
    val_people = {p.person.id for p in val}
    assert not train_people & val_people
    assert len(train_people | val_people) == 40 and len(val_people) == 10
    assert len(train) == 7 * len(train_people) and len(val) == 7 * len(val_people)


def test_oversampling_draws_training_old_people_only(synth_root: Path):
    cfg = MaskDataConfig(val_fraction=0.25, oversample_old=2, image_size=24)
    layout = MaskLayout(synth_root)
    train, val = split_photos(layout, cfg)
    train_ds, val_ds = training_datasets(layout, cfg)
    old_train = [p for p in train if p.person.age >= 60]
    assert old_train and any(p.person.age >= 60 for p in val), "fixture must have old people on both sides"
    copies = [i for i in range(len(train_ds)) if train_ds.which[i] == 1]
    assert len(train_ds) == len(train) + 2 * len(old_train) and len(copies) == 2 * len(old_train)
    train_paths, val_paths = {p.path for p in train}, {p.path for p in val}
    assert all(train_ds.paths[i] in train_paths and train_ds.labels[i] % 3 == 2 for i in copies)
    assert not {train_ds.paths[i] for i in copies} & val_paths
    assert len(val_ds) == len(val) and not val_ds.which.any()


def test_items_are_seeded_per_sample(synth_root: Path):
    train_ds, val_ds = training_datasets(MaskLayout(synth_root), MaskDataConfig(image_size=24))
    a, label = train_ds[(3, 1234)]
    assert a.shape == (3, 24, 24) and a.dtype == torch.float32 and 0 <= label < 18
    assert torch.equal(a, train_ds[(3, 1234)][0])
    assert not torch.equal(a, train_ds[(3, 999)][0])
    assert torch.equal(val_ds[(0, 1)][0], val_ds[(0, 2)][0])  # evaluation is not augmented


def test_extensions_vary_and_hidden_files_are_ignored(tmp_path: Path):
    root = make_layout(tmp_path, PEOPLE[:2], ext={"mask2": ".jpeg", "normal": ".png", "incorrect_mask": ".JPG"})
    _image(root / "train" / "images" / PEOPLE[0] / "._mask1.jpg")  # macOS resource fork
    (root / "train" / "images" / "._000001_male_Asian_54").write_bytes(b"\0")
    layout = MaskLayout(root)
    photos = layout.photos(layout.people()[0])
    assert list(photos) == list(IMAGE_KINDS)
    assert photos["normal"].name == "normal.png" and photos["mask2"].name == "mask2.jpeg"
    layout.validate()


@pytest.mark.parametrize("folder", ["000004-male-Asian-54", "000004_man_Asian_54", "000004_male_Asian", "x_male_A_5"])
def test_unparsable_folder_name(tmp_path: Path, folder: str):
    root = make_layout(tmp_path, [PEOPLE[0], folder])
    with pytest.raises(DataError, match=rf"{folder}: folder name is not {{id}}_{{gender}}_{{race}}_{{age}}"):
        MaskLayout(root).validate()


def test_missing_image_kind(tmp_path: Path):
    root = make_layout(tmp_path, PEOPLE)
    (root / "train" / "images" / PEOPLE[1] / "normal.jpg").unlink()
    with pytest.raises(DataError, match=rf"{PEOPLE[1]}: no normal photo \(1 of 7 kinds missing"):
        MaskLayout(root).validate()


def test_unexpected_and_duplicate_photos(tmp_path: Path):
    root = make_layout(tmp_path, PEOPLE[:1])
    _image(root / "train" / "images" / PEOPLE[0] / "mask1.png")
    with pytest.raises(DataError, match=r"mask1\.(png|jpg): a second mask1 photo"):
        MaskLayout(root).validate()
    (root / "train" / "images" / PEOPLE[0] / "mask1.png").unlink()
    _image(root / "train" / "images" / PEOPLE[0] / "mask 6.jpg")
    with pytest.raises(DataError, match="unexpected photo name 'mask 6'"):
        MaskLayout(root).validate()


def test_train_csv_must_list_the_folders(tmp_path: Path):
    root = make_layout(tmp_path, PEOPLE)
    csv = root / "train" / "train.csv"
    csv.write_text("\n".join(csv.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(DataError, match=rf"train\.csv: no '{PEOPLE[2]}', which .*images lists"):
        MaskLayout(root).people()
    csv.write_text("id,sex,race,age,path\n")
    with pytest.raises(DataError, match=r"train\.csv: line 1: header is .*missing 'gender'"):
        MaskLayout(root).people()


def test_unknown_and_repeated_image_ids(tmp_path: Path):
    root = make_layout(tmp_path, PEOPLE[:1])
    info = root / "eval" / "info.csv"
    info.write_text("ImageID,ans\na.jpg,0\nmissing.jpg,0\n")
    with pytest.raises(DataError, match=r"info\.csv: line 3: unknown ImageID 'missing\.jpg'"):
        MaskLayout(root).eval_ids()
    info.write_text("ImageID,ans\na.jpg,0\nb.png,0\na.jpg,0\n")
    with pytest.raises(DataError, match=r"line 4: ImageID 'a\.jpg' repeats line 2"):
        MaskLayout(root).eval_ids()


def test_hidden_eval_labels_say_so(tmp_path: Path):
    root = make_layout(tmp_path, PEOPLE[:1])
    with pytest.raises(DataError, match="the eval labels are hidden"):
        MaskLayout(root).answers()


def test_relabel_ids_must_be_quoted_strings():
    with pytest.raises(ValidationError, match="quoted strings such as '000004'"):
        RelabelConfig(flip_gender=[4])
