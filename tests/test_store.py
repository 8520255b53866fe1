import json
import multiprocessing as mp
import time

import pytest

from podium.errors import CorruptFileError
from podium.store import (
    RunStore,
    atomic_path,
    atomic_write,
    content_hash,
    file_lock,
    sha256_file,
    verify_file,
)


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "f.txt"
    atomic_write(target, "old")
    atomic_write(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_atomic_writes_get_the_mode_a_plain_open_gives(tmp_path):
    """Not mkstemp's 0600: a submission or report is readable by whoever the umask lets read it."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    expected = plain.stat().st_mode & 0o777
    written = atomic_write(tmp_path / "submission.csv", "a,b\n")
    with atomic_path(tmp_path / "weights.bin") as tmp:
        tmp.write_bytes(b"\0" * 8)
    assert expected != 0o600
    assert written.stat().st_mode & 0o777 == expected
    assert (tmp_path / "weights.bin").stat().st_mode & 0o777 == expected


def test_atomic_path_failure_keeps_old_file(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write(target, b"good")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed while writing")
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_sha256_and_verify_detect_bit_flip_and_truncation(tmp_path):
    f = tmp_path / "ckpt"
    f.write_bytes(bytes(range(256)) * 10)
    digest = sha256_file(f)
    import hashlib
    assert digest == hashlib.sha256(bytes(range(256)) * 10).hexdigest()
    verify_file(f, digest)
    data = bytearray(f.read_bytes())
    data[100] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="ckpt: checksum mismatch"):
        verify_file(f, digest)
    f.write_bytes(bytes(range(256)) * 5)
    with pytest.raises(CorruptFileError, match=str(f)):
        verify_file(f, digest)


def test_content_hash_ignores_key_order_but_not_values():
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})
    assert content_hash({"a": [1, 2]}) != content_hash({"a": [2, 1]})


def _hold_lock(path, started, seconds):
    with file_lock(path):
        started.set()
        time.sleep(seconds)


def test_file_lock_excludes_other_processes(tmp_path):
    lock = tmp_path / ".lock"
    started = mp.Event()
    p = mp.Process(target=_hold_lock, args=(lock, started, 1.0))
    p.start()
    started.wait(10)
    t0 = time.perf_counter()
    waited = []
    with file_lock(lock, on_wait=lambda: waited.append(True)):
        elapsed = time.perf_counter() - t0
    p.join()
    assert waited == [True]
    assert elapsed > 0.5


def test_stage_run_outputs_are_verified(tmp_path):
    run = RunStore(tmp_path).stage_run("r", "s", "abc")
    run.path.mkdir(parents=True)
    atomic_write(run.path / "out.csv", "x\n1\n")
    run.record_outputs(["out.csv"])
    assert run.output("out.csv").read_text() == "x\n1\n"
    assert json.loads(run.manifest_path.read_text())["outputs"]["out.csv"] == sha256_file(run.path / "out.csv")
    (run.path / "out.csv").write_text("x\n2\n")
    with pytest.raises(CorruptFileError, match="out.csv"):
        run.output("out.csv")
