import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
REPO = TESTS.parent


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    """The tiny core recipe copied next to its plugin in a temp dir (tests may edit it)."""
    shutil.copy(TESTS / "tinytask.py", tmp_path / "tinytask.py")
    text = (TESTS / "recipes" / "tiny.yaml").read_text().replace("../tinytask.py", "tinytask.py")
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return path


def podium_cli(*args: str, store: Path, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PODIUM_HOME": str(store), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "podium", *args], env=env, capture_output=True, text=True,
                          cwd=REPO, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"podium {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def podium_popen(*args: str, store: Path) -> subprocess.Popen:
    env = {**os.environ, "PODIUM_HOME": str(store), "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "podium", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_when(proc: subprocess.Popen, store: Path, manifests: str, when: Callable[[dict], bool],
              timeout: float = 120.0) -> bool:
    """SIGKILL ``proc`` as soon as a stage-run manifest ``store.glob(manifests)`` satisfies ``when``, or at
    ``timeout``; True when it was still running at the kill."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if any(when(json.loads(f.read_text())) for f in store.glob(manifests)):
            break
        time.sleep(0.02)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return alive


@pytest.fixture
def podium_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """``podium ARGS`` in this process -> (exit code, stdout, stderr): for commands that stop before any
    stage runs (a subprocess spends ~4 s importing lightning and torch again)."""
    from podium import cli

    def call(*args: str, store: Path) -> tuple[int, str, str]:
        monkeypatch.setenv("PODIUM_HOME", str(store))
        monkeypatch.setenv("COLUMNS", "200")
        monkeypatch.setattr(sys, "argv", ["podium", *args])
        capsys.readouterr()
        try:
            cli.main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err

    return call
