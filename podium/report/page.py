"""The page: one self-contained HTML file that opens offline.

Styles, images and the plotly.js bundle (once, however many charts) are inlined; nothing is loaded
from anywhere. A small guard script runs first: a chart that fails in the browser, or anything that
tries to load a file, becomes a visible note at the top of the page instead of a silent blank.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from plotly.offline import get_plotlyjs

from podium.report.draw import Figures, esc

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{padding:1em 2em;background:#fff;border-bottom:1px solid #ddd}
header h1{margin:0 0 .2em 0;font-size:1.5em} header p{margin:0;color:#555}
nav{position:sticky;top:0;z-index:10;background:#fff;border-bottom:1px solid #ddd;padding:.4em 2em}
nav a{margin-right:1.2em;color:#1f5fa8;text-decoration:none;font-size:.92em}
main{padding:0 2em 3em 2em}
section{background:#fff;border:1px solid #e3e3e3;border-radius:6px;margin:1.2em 0;padding:.8em 1.2em}
h2{font-size:1.2em;margin:.2em 0 .6em 0} h3{font-size:1.02em;margin:1em 0 .4em 0;color:#333}
table{border-collapse:collapse;margin:.4em 0} td,th{border:1px solid #ddd;padding:3px 8px;font-size:13px}
th{background:#f3f3f3;text-align:left} tr:target{background:#fff6c2}
.scroll{overflow-x:auto}
.plot{width:100%;min-height:300px}
figure.item{margin:.8em 0 1.4em 0} figure.item>figcaption{font-weight:600;margin-bottom:.3em}
.grid{display:grid;gap:8px}
.tile{margin:0;padding:3px;border:2px solid transparent;background:#fff} .tile img{display:block;outline:1px solid #ddd}
.tile.flagged{border-color:#d62728} .tile figcaption{font-size:11px;max-width:190px;word-wrap:break-word}
.good{color:#1b7a1b;font-weight:600} .bad{color:#d62728;font-weight:700;text-decoration:underline}
.extra{color:#e6550d;text-decoration:line-through}
.note{color:#555;font-size:.9em;margin:.3em 0}
.failed{border-left:4px solid #d62728;background:#fdecea;padding:.5em .8em;margin:.6em 0;font-size:.92em}
#report-errors{border:2px solid #d62728;background:#fdecea;padding:.6em 1em;margin:1em 2em}
svg.pipeline a:hover rect{stroke-width:3}
"""

GUARD = """
(function () {
  var box = document.getElementById('report-errors');
  function show(message) {
    var line = document.createElement('div');
    line.textContent = message;
    box.appendChild(line);
    box.hidden = false;
  }
  window.addEventListener('error', function (e) {
    var t = e.target;
    show(t && t !== window && (t.src || t.href) ? 'blocked a load of ' + (t.src || t.href)
                                                 : 'script error: ' + (e.message || e));
  }, true);
  window.addEventListener('unhandledrejection', function (e) { show('script error: ' + e.reason); });
  window.podiumPlot = function (id, fig) {
    function fail(err) {
      var div = document.getElementById(id);
      if (div) div.textContent = 'This chart could not be drawn: ' + err;
      show('chart ' + id + ': ' + err);
    }
    try {
      var drawn = Plotly.newPlot(id, fig.data, fig.layout, {displaylogo: false, responsive: true});
      if (drawn && drawn.catch) drawn.catch(fail);
    } catch (err) {
      fail(err);
    }
  };
})();
"""


@dataclass
class Section:
    anchor: str
    title: str
    body: str


@dataclass
class Page:
    """Sections in order, their navigation links, and the notes of the parts that could not be drawn."""

    title: str
    subtitle: str
    figures: Figures = field(default_factory=Figures)
    sections: list[Section] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def add(self, anchor: str, title: str, body: str) -> None:
        self.sections.append(Section(anchor, title, body))

    def render(self) -> str:
        nav = "".join(f"<a href='#{esc(s.anchor)}'>{esc(s.title)}</a>" for s in self.sections)
        failed = ""
        if self.failures:
            items = "".join(f"<li>{esc(f)}</li>" for f in self.failures)
            failed = (f"<div class='failed'><b>{len(self.failures)} part(s) of this report could not be drawn</b>"
                      f"<ul>{items}</ul></div>")
        sections = "".join(f"<section id='{esc(s.anchor)}'><h2>{esc(s.title)}</h2>{s.body}</section>"
                           for s in self.sections)
        return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
                "<meta name='viewport' content='width=device-width, initial-scale=1'>"
                f"<title>{esc(self.title)}</title><style>{STYLE}</style></head><body>"
                "<div id='report-errors' hidden><b>Problems in this page:</b></div>"
                f"<script>{GUARD}</script><script>{get_plotlyjs()}</script>"
                f"<header><h1>{esc(self.title)}</h1><p>{self.subtitle}</p></header><nav>{nav}</nav>"
                f"<main>{failed}{sections}</main></body></html>")
