"""``podium verify``: every recorded file of the finished stages against its sha256."""

import json

from .conftest import podium_cli


def flip(path, offset=10):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_verify_names_each_damaged_file_and_exits_2(tiny_recipe, tmp_path):
    store = tmp_path / "s"
    podium_cli("run", str(tiny_recipe), "--only", "data", "--only", "fit", store=store, check=True)
    out = podium_cli("verify", str(tiny_recipe), store=store, check=True)
    (data_dir,) = (store / "tiny" / "data").iterdir()
    (fit_dir,) = (store / "tiny" / "fit").iterdir()
    ckpts = json.loads((fit_dir / "manifest.json").read_text())["checkpoints"]
    files = {c["file"] for c in ckpts.values()}
    assert f"all {4 + len(files)} recorded files verify" in out.stdout

    flip(data_dir / "data" / "val.csv")
    ckpt = fit_dir / ckpts["epoch=6"]["file"]
    flip(ckpt, offset=100)
    (data_dir / "data" / "test.csv").unlink()
    out = podium_cli("verify", str(tiny_recipe), store=store)
    err = " ".join(out.stderr.split())
    assert out.returncode == 2 and f"3 of {4 + len(files)} recorded files are damaged" in err
    assert f"data: {data_dir / 'data' / 'val.csv'}: checksum mismatch" in err
    assert f"data: {data_dir / 'data' / 'test.csv'}: missing" in err
    assert f"fit: {ckpt}: checksum mismatch" in err
    out = podium_cli("verify", str(tiny_recipe), "--stage", "fit", store=store)
    assert out.returncode == 2 and "1 of" in out.stderr and "val.csv" not in out.stderr
