"""The run store: where every stage's outputs live, and the only way podium writes files.

Layout: ``<root>/<recipe>/<stage>/<hash>/{manifest.json, checkpoints/, logs/, outputs}``.
Reliability lives here: writes are atomic (a crash leaves the old file or the new one, never half of
one), outputs carry a sha256 that is checked before they are used, and a lock per stage directory
keeps two processes from running the same stage at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from podium.errors import CorruptFileError, DataError

MANIFEST = "manifest.json"
FILES = "files.json"  # a data set's listing: relative name -> [size, sha256]; an output of its stage
STAMPS = "verified.json"  # relative name -> [size, mtime_ns] of each listed file when it last verified
OUTPUT_STAMPS = "outputs-verified.json"  # output name -> [size, mtime_ns, sha256] when it last verified
HASH_THREADS = 4  # hashlib releases the GIL: a few threads keep a disk (or the page cache) busy


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _process_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: done once, at import
    os.umask(mask)
    return mask


_UMASK = _process_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` durably.

    For writers that want a file name (PIL, h5py, torch.save). The temp file is in the same
    directory so ``os.replace`` is atomic; file and directory are fsynced so the rename survives a
    power cut. On an exception the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide submissions and reports from the team
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def remove_stale_temps(directory: str | os.PathLike) -> None:
    """Delete the temp files of writes a kill interrupted (``atomic_path`` names them ``.<name>.*.tmp``)."""
    directory = Path(directory)
    if directory.is_dir():
        for stale in directory.glob(".*.tmp"):
            stale.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically (same-dir temp file, fsync, ``os.replace``, fsync dir)."""
    payload = data.encode() if isinstance(data, str) else data
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(payload)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def pin_settings(path: str | os.PathLike, settings: dict) -> None:
    """A folder holds one job's output: record its ``settings`` at ``path``, or, when a resumed job
    asks for others, refuse (the folder would end up holding a mixture of the two)."""
    path = Path(path)
    if path.is_file():
        found = json.loads(path.read_text())
        if found != settings:
            diff = ", ".join(f"{k}: {found.get(k)} -> {v}" for k, v in settings.items() if found.get(k) != v)
            raise DataError(f"{path}: this folder holds output made with other settings ({diff});"
                            " delete it or write to another folder")
        return
    write_json(path, settings)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_file(path: str | os.PathLike, expected_sha256: str) -> Path:
    """Raise :class:`CorruptFileError` naming ``path`` unless it exists and matches the checksum."""
    path = Path(path)
    if not path.is_file():
        raise CorruptFileError(f"{path}: missing (recorded with sha256 {expected_sha256[:12]}...)")
    found = sha256_file(path)
    if found != expected_sha256:
        raise CorruptFileError(
            f"{path}: checksum mismatch (expected sha256 {expected_sha256[:12]}..., found {found[:12]}...);"
            " the file is truncated or corrupt and will not be used"
        )
    return path


def find_damage(root: Path, expected: dict[str, list], stamps: dict[str, list] | None = None,
                advance: Callable[[int], Any] | None = None) -> tuple[dict[str, str], dict[str, list]]:
    """Check files under ``root`` against ``expected`` (relative name -> [size, sha256]).

    A file whose [size, mtime_ns] equals its entry in ``stamps`` verified before and was not written
    since: it is not read again, so checking a large data set before every run costs a ``stat`` per
    file. Returns (relative name -> what is wrong, stamps of the files that verify now); ``advance``
    is called with the number of files done, for a progress bar.
    """
    stamps = stamps or {}
    damaged: dict[str, str] = {}
    good: dict[str, list] = {}
    to_hash: list[tuple[str, list]] = []
    for rel, (size, digest) in expected.items():
        path = root / rel
        try:
            st = path.stat()
        except FileNotFoundError:
            damaged[rel] = f"{path}: missing (recorded with sha256 {digest[:12]}...)"
            continue
        stamp = [st.st_size, st.st_mtime_ns]
        if st.st_size != size:
            damaged[rel] = f"{path}: {st.st_size} bytes, recorded with {size}; the file is truncated or replaced"
        elif stamps.get(rel) == stamp:
            good[rel] = stamp
        else:
            to_hash.append((rel, stamp))
            continue
        if advance:
            advance(1)

    def check(item: tuple[str, list]) -> tuple[str, list, str | None]:
        rel, stamp = item
        try:
            verify_file(root / rel, expected[rel][1])
            return rel, stamp, None
        except CorruptFileError as e:
            return rel, stamp, str(e)

    with ThreadPoolExecutor(HASH_THREADS) as pool:
        for rel, stamp, problem in pool.map(check, to_hash):
            if problem:
                damaged[rel] = problem
            else:
                good[rel] = stamp
            if advance:
                advance(1)
    return dict(sorted(damaged.items())), good


def listing(root: Path, files: Iterable[Path],
            advance: Callable[[int], Any] | None = None) -> tuple[dict[str, list], dict[str, list]]:
    """(relative name -> [size, sha256], relative name -> [size, mtime_ns]) of ``files`` under ``root``, in
    name order, hashed on a few threads. Each file's stat is taken before it is read, so a write during
    the hashing changes its mtime and makes the next check read it again."""
    rels = sorted(Path(f).relative_to(root).as_posix() for f in files)

    def entry(rel: str) -> tuple[os.stat_result, str]:
        st = (root / rel).stat()
        found = sha256_file(root / rel)
        if advance:
            advance(1)
        return st, found

    with ThreadPoolExecutor(HASH_THREADS) as pool:
        entries = list(pool.map(entry, rels))
    return ({rel: [st.st_size, digest] for rel, (st, digest) in zip(rels, entries, strict=True)},
            {rel: [st.st_size, st.st_mtime_ns] for rel, (st, _) in zip(rels, entries, strict=True)})


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the same content always gives the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_hash(obj: Any, length: int = 12) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, on_wait: Any = None) -> Iterator[None]:
    """Exclusive advisory lock (``flock``); released by the kernel even if the process is killed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def versions() -> dict[str, str]:
    """Library versions recorded in every manifest (what produced these files)."""
    import lightning
    import torch

    import podium

    return {
        "podium": podium.__version__,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
    }


class StageRun:
    """One stage (or one sweep member) at one hash: its directory, manifest and lock.

    ``writer=False`` is a read-only view: the ranks other than 0 of a multi-process run read the same
    manifests and checkpoints, and their writes are dropped (rank 0 writes each file once).
    """

    def __init__(self, path: Path, writer: bool = True):
        self.path = path
        self.writer = writer

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            return {}
        try:
            return json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError as e:
            raise CorruptFileError(f"{self.manifest_path}: not valid JSON ({e})") from e

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        if self.writer:
            write_json(self.manifest_path, manifest)

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        manifest = self.read_manifest()
        manifest.update(fields)
        self.write_manifest(manifest)
        return manifest

    @property
    def status(self) -> str:
        return self.read_manifest().get("status", "missing")

    def lock(self, on_wait: Any = None):
        return file_lock(self.path / ".lock", on_wait=on_wait)

    def record_outputs(self, files: list[str | os.PathLike]) -> dict[str, str]:
        """Checksum output files (relative to the stage dir) into the manifest."""
        if not self.writer:
            return {}
        manifest = self.read_manifest()
        outputs = manifest.setdefault("outputs", {})
        stamps = self._output_stamps()
        for f in files:
            rel = Path(f).relative_to(self.path) if Path(f).is_absolute() else Path(f)
            before = (self.path / rel).stat()
            outputs[rel.as_posix()] = sha256_file(self.path / rel)
            stamps[rel.as_posix()] = [before.st_size, before.st_mtime_ns, outputs[rel.as_posix()]]
        self.write_manifest(manifest)
        write_json(self.path / OUTPUT_STAMPS, stamps)
        return outputs

    def output(self, name: str) -> Path:
        """An output file, verified against its recorded checksum before anyone reads it."""
        outputs = self.read_manifest().get("outputs", {})
        if name not in outputs:
            raise CorruptFileError(f"{self.path / name}: not a recorded output of this stage")
        return verify_file(self.path / name, outputs[name])

    def _output_stamps(self) -> dict[str, list]:
        path = self.path / OUTPUT_STAMPS
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):  # none or unreadable: a re-read
            return json.loads(path.read_text())
        return {}

    def verify_outputs(self) -> None:
        """Every recorded output against its sha256, before a finished stage is skipped.

        An output whose size and mtime are those it had when it last verified (or was recorded) with the
        same digest was not written since and is not read again: skipping a stage whose feature store
        holds 50 GiB costs a ``stat``. ``podium verify`` reads every byte.
        """
        stamps = self._output_stamps()
        fresh = {}
        for name, digest in self.read_manifest().get("outputs", {}).items():
            path = self.path / name
            try:
                st = path.stat()
            except FileNotFoundError:
                raise CorruptFileError(f"{path}: missing (recorded with sha256 {digest[:12]}...)") from None
            fresh[name] = [st.st_size, st.st_mtime_ns, digest]
            if stamps.get(name) != fresh[name]:
                verify_file(path, digest)
        if self.writer and fresh != stamps:
            write_json(self.path / OUTPUT_STAMPS, fresh)

    def recorded_files(self) -> dict[str, str]:
        """Every file the manifest vouches for, outputs and checkpoints: relative name -> sha256."""
        manifest = self.read_manifest()
        files = dict(manifest.get("outputs", {}))
        files.update({c["file"]: c["sha256"] for c in manifest.get("checkpoints", {}).values()})
        return files

    def record_files(self, root: Path, files: Iterable[Path], advance: Callable[[int], Any] | None = None) -> int:
        """Record a data set (every file, its size and sha256) as this stage's listing, an output."""
        entries, stamps = listing(root, files, advance)
        write_json(self.path / FILES, entries)
        self.record_outputs([FILES])
        if self.writer:
            write_json(self.path / STAMPS, stamps)
        return len(entries)

    def listed_files(self) -> dict[str, list]:
        """The data set this stage recorded (relative name -> [size, sha256]), or {} if it recorded none."""
        if FILES not in self.read_manifest().get("outputs", {}):
            return {}
        return json.loads(self.output(FILES).read_text())

    def check_files(self, root: Path, deep: bool = False,
                    advance: Callable[[int], Any] | None = None) -> dict[str, str]:
        """The damaged files of this stage's data set under ``root`` (relative name -> problem).

        Only files written since they last verified are read again, unless ``deep``.
        """
        stamps_path = self.path / STAMPS
        stamps = {}
        if not deep and stamps_path.is_file():
            with contextlib.suppress(json.JSONDecodeError):  # unreadable stamps only cost a re-read
                stamps = json.loads(stamps_path.read_text())
        damaged, good = find_damage(root, self.listed_files(), stamps, advance)
        if self.writer and good != stamps:
            write_json(stamps_path, good)
        return damaged


class RunStore:
    """``<root>/<recipe>/<stage>/<hash>/``; root defaults to ``./runs`` or ``$PODIUM_HOME``.

    The root is made absolute once, so stage code can hand over paths without caring about the cwd.
    """

    def __init__(self, root: str | os.PathLike | None = None, writer: bool = True):
        self.root = Path(root or os.environ.get("PODIUM_HOME") or "runs").absolute()
        self.writer = writer

    def stage_run(self, recipe: str, stage: str, stage_hash: str) -> StageRun:
        return StageRun(self.root / recipe / stage / stage_hash, self.writer)

    def stage_runs(self, recipe: str, stage: str) -> list[StageRun]:
        """Every hash ever run for a stage, oldest first by manifest start time."""
        base = self.root / recipe / stage
        if not base.is_dir():
            return []
        runs = [StageRun(p) for p in sorted(base.iterdir()) if (p / MANIFEST).is_file()]
        return sorted(runs, key=lambda r: r.read_manifest().get("started", ""))


def now() -> str:
    """Wall-clock time for manifests only (never hashed)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
