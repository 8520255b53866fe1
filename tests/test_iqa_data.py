"""IQA data: Dacon readers and their errors, RGB loading, the split, the caption vocabulary, and the synthetic
set (layout, MOS function, comment grammar, hidden test answers, per-file determinism)."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from podium.errors import DataError
from podium.tasks.iqa.data import (
    IqaLayout,
    Vocabulary,
    build_vocabulary,
    clean_caption,
    load_rgb,
    read_answers,
    read_csv_rows,
    read_test,
    read_train,
    split_train_val,
    tokenize_caption,
)
from podium.tasks.iqa.synth import (
    CLEAN_COMMENTS,
    DISTORTIONS_CSV,
    Distortion,
    Mention,
    describe,
    distort,
    mentions,
    mos_of,
    parse_comment,
    plan_images,
    read_distortions,
    render_scene,
    synthesize_iqa,
)

TRAIN, TEST, SIZE, SEED = 40, 12, 64, 3


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("iqa")
    synthesize_iqa(root, TRAIN, TEST, seed=SEED, image_size=SIZE, workers=1, progress=False)
    return root


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _copy(root: Path, dest: Path) -> Path:
    shutil.copytree(root, dest)
    return dest


# ----------------------------------------------------------------------------------- synthetic layout


def test_exact_layout_and_readers(root: Path):
    assert sorted(p.name for p in root.iterdir()) == [".synth.json", "answers", "sample_submission.csv", "test",
                                                      "test.csv", "train", "train.csv"]
    assert sorted(p.name for p in (root / "answers").iterdir()) == ["distortions.csv", "test_answers.csv"]
    lines = (root / "train.csv").read_text().splitlines()
    assert lines[0] == "img_name,img_path,mos,comments"
    train = read_train(root)
    assert len(train) == TRAIN and [i.name for i in train] == sorted(i.name for i in train)
    assert sum(len(i.comments) for i in train) == len(lines) - 1 > TRAIN  # several comments for some images
    for image in train:
        assert image.path == root / "train" / f"{image.name}.jpg" and "." not in image.name
        assert len(image.name) == 10 and 1.0 <= image.mos <= 10.0
    assert f"{train[0].name},./train/{train[0].name}.jpg," in (root / "train.csv").read_text()
    with Image.open(train[0].path) as image:
        assert image.format == "JPEG" and image.mode == "RGB" and max(image.size) == SIZE

    layout = IqaLayout(root)
    test = read_test(root)
    assert (root / "test.csv").read_text().splitlines()[0] == "img_name,img_path"
    assert [i.path for i in test] == [root / "test" / f"{i.name}.jpg" for i in test] and len(test) == TEST
    assert layout.submission_names() == [i.name for i in test]
    assert not {i.name for i in test} & {i.name for i in train}
    assert sorted(layout.test_answers()) == sorted(i.name for i in test)
    files = layout.data_files()
    assert len(files) == 4 + TRAIN + TEST and all(f.is_file() for f in files)


def test_test_answers_hidden_from_the_task_input(root: Path):
    answers = read_answers(root / "answers" / "test_answers.csv")
    visible = (root / "test.csv").read_text() + (root / "sample_submission.csv").read_text()
    assert (root / "sample_submission.csv").read_text().splitlines()[0] == "img_name,mos,comments"
    assert all(row["mos"] == "0" and row["comments"] == ""
               for _, row in read_csv_rows(root / "sample_submission.csv", ("mos", "comments")))
    for answer in answers.values():
        assert all(comment not in visible for comment in answer.comments)
    bare = _copy(root, root.parent / "bare")
    shutil.rmtree(bare / "answers")
    with pytest.raises(DataError, match="hidden"):
        IqaLayout(bare).test_answers()
    assert len(IqaLayout(bare).data_files()) == 3 + TRAIN + TEST


def test_mos_is_the_known_function_of_the_recorded_distortions(root: Path):
    recorded = read_distortions(root / DISTORTIONS_CSV)
    answers = IqaLayout(root).test_answers()
    assert len(recorded) == TRAIN + TEST
    truth = {i.name: i.mos for i in read_train(root)} | {n: a.mos for n, a in answers.items()}
    for name, (distortions, jitter, mos) in recorded.items():
        assert truth[name] == mos == mos_of(distortions, jitter)
        assert abs(jitter) <= 0.45
    assert mos_of([Distortion("blur", 0.5), Distortion("exposure", 0.25, "dark")], 0.1) == 5.6
    assert mos_of([Distortion(k, 0.95) for k in ("blur", "noise", "jpeg", "exposure", "cast")], 0.0) == 1.0
    kinds = {d.kind for ds, _, _ in recorded.values() for d in ds}
    assert kinds == {"blur", "noise", "jpeg", "exposure", "cast"}


def test_comments_parse_back_to_their_distortions(root: Path):
    recorded = read_distortions(root / DISTORTIONS_CSV)
    groups = [(i.name, i.comments) for i in read_train(root)]
    groups += [(n, a.comments) for n, a in IqaLayout(root).test_answers().items()]
    for name, comments in groups:
        for comment in comments:
            assert parse_comment(comment) == mentions(recorded[name][0]), comment
    for image in plan_images(7, 400, 1, SIZE, 3):  # every template and synonym, many combinations
        for comment in image.comments:
            assert parse_comment(comment) == mentions(image.distortions), comment
    assert parse_comment("Strong noise makes the details hard to see.") == {Mention("noise", "strong", "")}
    assert parse_comment("the image is slightly blurry and very dark") == {
        Mention("blur", "slight", ""), Mention("exposure", "strong", "dark")}
    assert parse_comment("the photo has a mild blue tint.") == {Mention("cast", "slight", "blue")}
    assert parse_comment("the image is sharp and clean.") == frozenset()
    assert [Distortion("noise", s).level for s in (0.15, 0.3, 0.4, 0.6, 0.7, 0.95)] == [
        "slight", "slight", "moderate", "moderate", "strong", "strong"]


def test_word_choice_is_zipfian():
    """The k-th of n synonyms comes with probability (1/k) / (1 + 1/2 + ... + 1/n), as word choice in real
    comments does: a consensus wording exists, so CIDEr-D rewards naming the right distortions more than
    the luck of matching a reference's synonyms."""
    draws = 20_000
    rng = np.random.default_rng(0)
    found = [describe((), rng) for _ in range(draws)]
    assert len(CLEAN_COMMENTS) == 4
    for comment, share in zip(CLEAN_COMMENTS, (12 / 25, 6 / 25, 4 / 25, 3 / 25), strict=True):
        expected = draws * share
        assert abs(found.count(f"{comment}.") - expected) < 4 * np.sqrt(expected * (1 - share)), comment


def test_distortions_do_what_they_say():
    scene = render_scene(np.random.default_rng(0), 96, 72)

    def run(*distortions: Distortion) -> np.ndarray:
        image, quality = distort(scene, distortions, np.random.default_rng(1))
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=quality)
        return np.asarray(Image.open(buf), np.float64)

    def detail(x: np.ndarray) -> float:
        return float(np.abs(np.diff(x, axis=1)).mean())

    clean = run()
    assert detail(run(Distortion("blur", 0.8))) < 0.6 * detail(clean)
    assert detail(run(Distortion("noise", 0.8))) > 2 * detail(clean)
    assert run(Distortion("exposure", 0.8, "dark")).mean() < 0.5 * clean.mean()
    assert run(Distortion("exposure", 0.8, "bright")).mean() > 1.4 * clean.mean()
    cast = run(Distortion("cast", 0.8, "blue")).mean((0, 1)) - clean.mean((0, 1))
    assert cast[2] > 20 and cast[0] < 0
    assert np.abs(run(Distortion("jpeg", 0.9)) - clean).mean() > 2 * np.abs(run() - clean).mean() + 1


# --------------------------------------------------------------------------------------- determinism


def test_synth_is_deterministic_and_regenerates_a_deleted_file_alone(root: Path, tmp_path: Path):
    synthesize_iqa(tmp_path / "again", TRAIN, TEST, seed=SEED, image_size=SIZE, workers=2, progress=False)
    reference = _digests(root)
    assert _digests(tmp_path / "again") == reference
    again = tmp_path / "again"
    victims = (next((again / "train").iterdir()), again / "train.csv", again / "answers" / "test_answers.csv")
    others = {p: p.stat().st_mtime_ns for p in again.rglob("*") if p.is_file() and p not in victims}
    for victim in victims:
        victim.unlink()
    synthesize_iqa(again, TRAIN, TEST, seed=SEED, image_size=SIZE, workers=1, progress=False)
    assert _digests(again) == reference
    assert all(p.stat().st_mtime_ns == m for p, m in others.items())  # only the missing files were written
    with pytest.raises(DataError, match="other settings"):
        synthesize_iqa(again, TRAIN, TEST, seed=SEED, image_size=SIZE + 32, workers=1, progress=False)
    synthesize_iqa(tmp_path / "other", TRAIN, TEST, seed=SEED + 1, image_size=SIZE, workers=1, progress=False)
    assert (tmp_path / "other" / "train.csv").read_bytes() != (root / "train.csv").read_bytes()


def test_split_is_deterministic_and_independent_of_row_order(root: Path):
    images = read_train(root)
    train, val = split_train_val(images, 0.25, seed=5)
    assert len(val) == 10 and len(train) == TRAIN - 10
    assert {i.name for i in train}.isdisjoint(i.name for i in val)
    assert [i.name for i in val] == sorted(i.name for i in val)
    assert split_train_val(images, 0.25, seed=5) == (train, val)
    assert split_train_val(images, 0.25, seed=6)[1] != val

    shuffled = _copy(root, root.parent / "shuffled")
    header, *rows = (root / "train.csv").read_text().splitlines(keepends=True)
    order = np.random.default_rng(0).permutation(len(rows))
    (shuffled / "train.csv").write_text(header + "".join(rows[i] for i in order))
    reread = read_train(shuffled)
    assert [i.name for i in reread] == [i.name for i in images]
    assert [i.mos for i in reread] == [i.mos for i in images]
    assert [i.name for i in split_train_val(reread, 0.25, seed=5)[1]] == [i.name for i in val]
    with pytest.raises(ValueError, match="val_fraction"):
        split_train_val(images, 1.0)


# ------------------------------------------------------------------------------------- reader errors


def _hand_root(tmp_path: Path, train_csv: str, test_csv: str = "img_name,img_path\nt1,./test/t1.jpg\n") -> Path:
    for rel in ("train/a.jpg", "train/b.jpg", "test/t1.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 6), (10, 20, 30)).save(tmp_path / rel, format="JPEG")
    (tmp_path / "train.csv").write_text(train_csv)
    (tmp_path / "test.csv").write_text(test_csv)
    (tmp_path / "sample_submission.csv").write_text("img_name,mos,comments\nt1,0,\n")
    return tmp_path


GOOD = ("img_name,img_path,mos,comments\n"
        "a,./train/a.jpg,5.5,\"too dark, and blurry\"\n"
        "b,./train/b.jpg,6,\"a comment\nover two lines\"\n"
        "a,./train/a.jpg,5.5,noisy\n")


def test_hand_made_layout_reads(tmp_path: Path):
    root = _hand_root(tmp_path, GOOD)
    a, b = read_train(root)
    assert (a.name, a.mos, a.comments) == ("a", 5.5, ("too dark, and blurry", "noisy"))
    assert b.comments == ("a comment\nover two lines",)
    assert IqaLayout(root).submission_names() == ["t1"]


@pytest.mark.parametrize(("text", "message"), [
    ("img_name,img_path,comments\na,./train/a.jpg,x\n",
     r"train\.csv: line 1: header is 'img_name,img_path,comments'; .*missing column 'mos'"),
    (GOOD + "b,./train/b.jpg,high,ok\n", r"train\.csv: line 6, column mos: found 'high'; expected a finite number"),
    (GOOD + "c,./train/c.jpg,4,ok\n", r"train\.csv: line 6, column img_path: './train/c.jpg' names no file"),
    (GOOD + "b,./train/b.jpg,nan,ok\n", r"line 6, column mos: found 'nan'"),
    (GOOD + "b,./train/b.jpg,6.5,ok\n", r"line 6, column mos: 6\.5 for 'b', which line 3 gives 6\.0"),
    (GOOD + "b,/etc/passwd,6,ok\n", r"line 6, column img_path: found '/etc/passwd'; expected a path inside"),
    (GOOD + "b,./train/b.jpg,6\n", r"line 6: 3 fields; expected 4"),
    (GOOD + "b,./train/b.jpg,6, \n", r"line 6, column comments: empty"),
])
def test_bad_train_csv_names_file_line_and_column(tmp_path: Path, text: str, message: str):
    root = _hand_root(tmp_path, text)
    with pytest.raises(DataError, match=message) as info:
        read_train(root)
    assert str(root / "train.csv") in str(info.value)


def test_bad_test_and_submission_csvs(tmp_path: Path):
    root = _hand_root(tmp_path, GOOD, "img_name,img_path\nt1,./test/t1.jpg\nt1,./test/t1.jpg\n")
    with pytest.raises(DataError, match=r"test\.csv: line 3, column img_name: 't1' repeats line 2"):
        read_test(root)
    (root / "test.csv").write_text("img_name,img_path\nt1,./test/t1.jpg\n")
    (root / "sample_submission.csv").write_text("img_name,mos,comments\nt2,0,\n")
    with pytest.raises(DataError, match=r"sample_submission\.csv: img_name 't2' is not in test\.csv"):
        IqaLayout(root).submission_names()
    (root / "test.csv").unlink()
    with pytest.raises(DataError, match=r"test\.csv: not found"):
        read_test(root)


# ------------------------------------------------------------------------------------------- images


def test_broken_image_is_an_error_never_black(tmp_path: Path, root: Path):
    image = next((root / "train").iterdir())
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    for path in (truncated, garbage):
        with pytest.raises(DataError, match=rf"{path}: unreadable image"):
            load_rgb(path)
    with pytest.raises(DataError, match="image not found"):
        load_rgb(tmp_path / "absent.jpg")
    assert np.asarray(load_rgb(image)).mean() > 10


def test_images_are_converted_to_rgb(tmp_path: Path):
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    rgba = np.dstack([np.full((6, 8, 3), (200, 100, 50), np.uint8), np.full((6, 8), 0, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(grey, "L").convert("P").save(tmp_path / "palette.png")
    out = np.asarray(load_rgb(tmp_path / "grey.png"))
    assert out.shape == (6, 8, 3) and (out == grey[..., None]).all()
    out = load_rgb(tmp_path / "rgba.png")
    assert out.mode == "RGB" and (np.asarray(out) == (200, 100, 50)).all()
    assert load_rgb(tmp_path / "palette.png").mode == "RGB"


# ------------------------------------------------------------------------------------------ captions


def test_cleaning_follows_expansionnet():
    assert clean_caption("A man's dog, running -- fast!  ") == ["a", "man", "s", "dog", "running", "fast"]
    assert clean_caption("Colours (warm) look 100% nice; ok...") == [
        "colours", "(", "warm", ")", "look", "100", "%", "nice", "ok"]
    assert clean_caption("under_exposed `quote'' end.") == ["under_exposed", "quote", "end"]
    assert tokenize_caption("The image is very dark.") == ["SOS", "the", "image", "is", "very", "dark", "EOS"]
    assert tokenize_caption("one two three four", max_words=2) == ["SOS", "one", "two", "EOS"]


def test_vocabulary_indices_and_min_count():
    captions = ["the image is dark.", "The image is blurry!", "blurry and noisy"]
    vocab = build_vocabulary(captions)
    assert (vocab.eos, vocab.pad, vocab.sos, vocab.unk) == (0, 1, 2, 3)  # the seed's: [a-z] words only
    assert vocab.words[4:] == ("and", "blurry", "dark", "image", "is", "noisy", "the")
    assert build_vocabulary(captions, min_count=2).words == ("EOS", "PAD", "SOS", "UNK", "blurry", "image", "is",
                                                            "the")
    with_digit = build_vocabulary(["shot in 4k", "shot in 4k"], min_count=2)
    assert with_digit.words == ("4k", "EOS", "PAD", "SOS", "UNK", "in", "shot")  # digits sort first, like COCO's
    assert (with_digit.eos, with_digit.pad, with_digit.sos, with_digit.unk) == (1, 2, 3, 4)

    ids = vocab.encode(tokenize_caption("The image is purple."))
    assert ids == [vocab.sos, 10, 7, 8, vocab.unk, vocab.eos]
    assert vocab.decode([vocab.sos, 10, 7, vocab.eos, 5, vocab.pad]) == ["the", "image"]
    assert Vocabulary(vocab.words) == vocab and len(vocab) == 11
    with pytest.raises(ValueError, match="sorted"):
        Vocabulary(["PAD", "SOS", "EOS", "UNK"])
    with pytest.raises(ValueError, match="min_count"):
        build_vocabulary(captions, min_count=0)


def test_synthetic_vocabulary_is_small_and_plain(root: Path):
    train, _ = split_train_val(read_train(root), 0.1, seed=0)
    vocab = build_vocabulary(c for image in train for c in image.comments)
    assert all(w.isalpha() and w.islower() for w in vocab.words[4:]) and vocab.words[:4] == ("EOS", "PAD", "SOS",
                                                                                              "UNK")
    assert len(vocab) < 120
