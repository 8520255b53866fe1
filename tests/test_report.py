"""The run report: its parts, one self-contained file, a part that fails is a note, two runs side by side.

The task reports (dirty MNIST, mask, MRI) are checked in those tasks' own test files, on the runs they
already make, with the helpers here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from plotly.offline import get_plotlyjs
from rich.console import Console
from typer.testing import CliRunner

import podium
from podium import cli
from podium.errors import DataError

from .conftest import TESTS

QUIET = Console(quiet=True)
STAGES = """
  sweep: {kind: train, members: {seed: [1, 2, 3]}, trainer: {max_epochs: 2}}
  greedy: {kind: soup, members: sweep@last, method: greedy}
  pred_soup: {kind: predict, model: greedy@best}
  score_soup: {kind: evaluate, predictions: [pred_soup, blend]}
"""
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian package "
                                    "chromium; `make chromium` installs it, as .ci/run does)")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)  # http://, https://, //host, file://


class Parsed(HTMLParser):
    """Every tag with its attributes, the ids, and the text of <script> and <style> elements."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._in: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "script":
            self.scripts.append(data)
        elif self._in == "style":
            self.styles.append(data)

    @property
    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.tags if "id" in a}

    def items(self) -> Counter:
        """How many pictures of each kind (``<figure class='item' data-item=...>``)."""
        return Counter(a["data-item"] for t, a in self.tags if t == "figure" and "data-item" in a)

    def tiles(self) -> int:
        return sum(1 for t, a in self.tags if t == "figure" and "tile" in a.get("class", "").split())


def assert_self_contained(text: str) -> Parsed:
    """Nothing in the page loads anything: no <link>, no script with src, every src and href a fragment
    or a data: URI, CSS without @import or url() outside the page. plotly.js's own code holds URL strings
    (map tiles, its website) that no chart we draw fetches, so the file is checked by what it loads, not
    grepped for "https://"; the browser test blocks every host to show nothing is fetched."""
    page = Parsed(text)
    assert not [a for t, a in page.tags if t == "link"], "a <link> loads a file"
    assert not [a for t, a in page.tags if t == "script" and "src" in a], "a script is loaded, not inlined"
    for tag, attrs in page.tags:
        for key in ("src", "href", "srcset", "poster", "data"):
            if key in attrs:
                value = attrs[key]
                assert value.startswith(("#", "data:")) and not EXTERNAL.match(value), f"<{tag} {key}={value[:80]}>"
    for css in [*page.styles, *(a.get("style", "") for _, a in page.tags)]:
        assert "@import" not in css
        assert all(u.strip("'\" ").startswith(("#", "data:")) for u in re.findall(r"url\(([^)]*)\)", css)), css
    bundle = get_plotlyjs()
    assert sum(s.count(bundle[:2000]) for s in page.scripts) == 1, "plotly.js must be inlined exactly once"
    return page


def add_stages(recipe: Path, text: str) -> None:
    recipe.write_text(recipe.read_text().replace("\nprofiles:", text + "profiles:"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> podium.api.RunResult:
    """The tiny recipe with a sweep, a greedy soup and a second leaderboard, run once with its report."""
    tmp = tmp_path_factory.mktemp("report")
    shutil.copy(TESTS / "tinytask.py", tmp / "tinytask.py")
    recipe = tmp / "tiny.yaml"
    recipe.write_text((TESTS / "recipes" / "tiny.yaml").read_text().replace("../tinytask.py", "tinytask.py"))
    add_stages(recipe, STAGES)
    return podium.run(recipe, [], store=tmp / "runs", console=QUIET)


def test_the_report_has_every_part_and_links_every_stage(tiny):
    text = tiny.report.read_text()
    page = assert_self_contained(text)
    assert {"pipeline", "leaderboard", "training", "soup", "ensemble"} <= page.ids
    stages = tiny.recipe.order
    assert {f"stage-{s}" for s in stages} <= page.ids, "every stage has a part or a table row to link to"
    links = {a["href"] for t, a in page.tags if t == "a"}
    assert {f"#stage-{s}" for s in stages} <= links, "every box of the pipeline graph is a link"
    assert sum(t == "rect" for t, _ in page.tags) == len(stages)
    assert "podiumPlot('fig-" in text and "Could not draw" not in text
    for metric in ("val_acc", "train_loss", "lr", "star"):  # shared panels, the best epoch, the learning rate
        assert f'"{metric}"' in text
    assert "fit" in text and "sweep[2]" in text and "candidate soup" in text and "×2" in text


def test_the_metrics_log_the_learning_rate_of_each_epoch(tiny):
    fit = next(o.path for o in tiny.outcomes if o.stage == "fit")
    rows = (fit / "logs" / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",")[-1] == "lr"
    rates = [float(r.split(",")[-1]) for r in rows[1:]]
    assert rates[0] == pytest.approx(0.05) and rates == sorted(rates, reverse=True), "cosine from 0.05, per epoch"


def test_the_same_store_gives_the_same_file(tiny):
    again = podium.api.report(tiny.recipe, store=tiny.store, out=tiny.report.parent / "again.html", console=QUIET)
    assert again.read_bytes() == tiny.report.read_bytes()


def test_a_part_that_fails_is_a_note_and_the_run_exits_as_its_stages(tiny, monkeypatch):
    import podium.report as report

    def broken(*args, **kwargs):
        raise RuntimeError("no soup today")

    monkeypatch.setattr(report, "soup", broken)
    console = Console(record=True, width=200)
    result = podium.run(tiny.recipe, [], store=tiny.store, console=console)
    text = result.report.read_text()
    assert "Could not draw soup greedy: RuntimeError: no soup today" in text
    assert "1 part(s) of this report could not be drawn" in text and "id='training'" in text
    assert "could not draw soup greedy" in console.export_text()
    recipe = tiny.recipe.source
    out = CliRunner().invoke(cli.app, ["run", str(recipe), "--store", str(tiny.store.root)])
    assert out.exit_code == 0 and "no soup today" in out.output

    def unwritable(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(report, "write_report", unwritable)
    console = Console(record=True, width=200)
    assert podium.run(tiny.recipe, [], store=tiny.store, console=console).report is None
    assert "the report could not be written: OSError: disk full" in console.export_text()


def test_a_failed_run_still_writes_its_report(tiny_recipe, tmp_path):
    with pytest.raises(DataError, match="injected synth failure"):
        podium.run(tiny_recipe, ["stages.data.fail=true"], store=tmp_path, console=QUIET)
    text = (tmp_path / "tiny" / "report.html").read_text()
    assert "synth · failed" in text and "fit" in text


def test_two_runs_side_by_side(tiny):
    """A second recipe (another learning rate) in the same store: curves overlaid, the first epoch that differs."""
    recipe = tiny.recipe.source
    other = recipe.with_name("tiny-lr.yaml")
    other.write_text(recipe.read_text().replace("kind: train\n", "kind: train\n    lr: 0.02\n", 1))
    podium.run(other, [], store=tiny.store, console=QUIET, only=["data", "fit"], report=False)
    out = CliRunner().invoke(cli.app, ["report", str(recipe), str(other), "--store", str(tiny.store.root)])
    assert out.exit_code == 0, out.output
    path = tiny.store.root / "tiny" / "report-vs-tiny-lr.html"
    assert str(path) in out.output.replace("\n", "")
    text = path.read_text()
    assert "comparison" in assert_self_contained(text).ids
    assert "First epoch at which the training differs" in text and "tiny-lr: fit" in text
    (row,) = [r for r in re.findall(r"<tr>(.*?)</tr>", text) if r.startswith("<td>fit</td><td>6</td>")]
    assert "<td>1</td>" in row, "a different learning rate differs from the first epoch"


def test_report_command_takes_one_other_run(tiny):
    out = CliRunner().invoke(cli.app, ["report", str(tiny.recipe.source), "a.yaml", "b.yaml"])
    assert out.exit_code != 0 and "one run to compare with" in out.output


# --- in a real browser -----------------------------------------------------------------------------------


def open_in_chromium(page: Path, tmp: Path) -> tuple[str, list[str], Path]:
    """(the DOM once the page's scripts ran, the console's messages, a screenshot) from headless Chromium
    with every host name unresolvable: a load from the network fails, and the page's guard shows it."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr",
            "--v=0", f"--user-data-dir={tmp / 'chromium-profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=5000"]
    dom = subprocess.run([*args, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = tmp / f"{page.stem}.png"
    subprocess.run([*args, "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri()], capture_output=True,
                   timeout=120, check=True)
    return dom.stdout, [line for line in dom.stderr.splitlines() if ":CONSOLE" in line], shot


def problems(dom: str) -> list[str]:
    """What the page's guard listed: script errors, charts that failed, blocked loads."""
    box = re.search(r'<div id="report-errors"[^>]*>(.*?)</div><script>', dom, re.S)
    assert box, "the guard's box is missing"
    return re.findall(r"<div>(.*?)</div>", box.group(1))


def assert_renders(page: Path, tmp: Path) -> None:
    """Every chart drawn, no script error or console message, a screenshot that is not blank."""
    dom, console, shot = open_in_chromium(page, tmp)
    assert problems(dom) == [] and console == [], (problems(dom), console)
    charts = page.read_text().count("podiumPlot('fig-")
    assert charts > 0 and dom.count('class="plot-container plotly"') == charts, "a chart was not drawn"
    pixels = np.asarray(Image.open(shot).convert("RGB"), np.float64)
    assert pixels.std() > 20, "the screenshot is blank"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100, "the screenshot has almost no colours"


@needs_chromium
def test_the_report_loads_in_a_browser_without_errors(tiny, tmp_path):
    page = podium.api.report(tiny.recipe, store=tiny.store, out=tmp_path / "report.html", console=QUIET)
    assert_renders(page, tmp_path)


@needs_chromium
def test_the_browser_check_sees_script_errors_and_network_loads(tiny, tmp_path):
    """The check above can fail: a script error, a broken chart and a load from a host all show."""
    page = podium.api.report(tiny.recipe, store=tiny.store, out=tmp_path / "report.html", console=QUIET)
    bad = tmp_path / "bad.html"
    bad.write_text(page.read_text().replace("<main>", "<main><img src='https://example.com/x.png'>"
                                            "<script>notDefined();</script><div id='fig-0'></div>"
                                            "<script>podiumPlot('fig-0', null);</script>", 1))
    dom, console, _ = open_in_chromium(bad, tmp_path)
    found = problems(dom)
    assert any("notDefined" in p for p in found) and any("chart fig-0" in p for p in found)
    assert "blocked a load of https://example.com/x.png" in found
    assert any("notDefined" in line for line in console)
