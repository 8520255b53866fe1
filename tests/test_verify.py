"""``podium verify``: every recorded file of the finished stages against its sha256."""

import json


def flip(path, offset=10):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_verify_names_each_damaged_file_and_exits_2(tiny_recipe, tmp_path, podium_main):
    store = tmp_path / "s"
    assert podium_main("run", str(tiny_recipe), "--only", "data", "--only", "fit", store=store)[0] == 0
    code, stdout, _ = podium_main("verify", str(tiny_recipe), store=store)
    (data_dir,) = (store / "tiny" / "data").iterdir()
    (fit_dir,) = (store / "tiny" / "fit").iterdir()
    ckpts = json.loads((fit_dir / "manifest.json").read_text())["checkpoints"]
    files = {c["file"] for c in ckpts.values()}
    assert code == 0 and f"all {4 + len(files)} recorded files verify" in stdout

    flip(data_dir / "data" / "val.csv")
    ckpt = fit_dir / ckpts["epoch=6"]["file"]
    flip(ckpt, offset=100)
    (data_dir / "data" / "test.csv").unlink()
    code, _, stderr = podium_main("verify", str(tiny_recipe), store=store)
    err = " ".join(stderr.split())
    assert code == 2 and f"3 of {4 + len(files)} recorded files are damaged" in err
    assert f"data: {data_dir / 'data' / 'val.csv'}: checksum mismatch" in err
    assert f"data: {data_dir / 'data' / 'test.csv'}: missing" in err
    assert f"fit: {ckpt}: checksum mismatch" in err
    code, _, stderr = podium_main("verify", str(tiny_recipe), "--stage", "fit", store=store)
    assert code == 2 and "1 of" in stderr and "val.csv" not in stderr
