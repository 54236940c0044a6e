"""`dropbench report --format html`: one self-contained page whose summary table is the CSV
output, cell for cell, rendered by a real headless chromium without a console error."""

from __future__ import annotations

import base64
import csv
import io
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import platform, write_sweep
from dropbench.cli import app

runner = CliRunner()
CHROMIUM = next((p for p in (os.environ.get("DROPBENCH_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: apt-get install chromium (or set DROPBENCH_CHROMIUM)")


class Page(HTMLParser):
    """What a test reads back from a page: the summary table's header (data-column) and cells
    (data-value, and the text shown), every image's src, the notes' classes and texts."""

    def __init__(self) -> None:
        super().__init__()
        self.header: list[str] = []
        self.rows: list[list[tuple[str, str]]] = []
        self.images: list[str] = []
        self.notes: list[tuple[str, str]] = []
        self.pre: list[str] = []
        self._in_table = False
        self._text: list[str] | None = None
        self._cell: dict[str, str] = {}
        self._where = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "table" and a.get("id") == "summary-table":
            self._in_table = True
        elif self._in_table and tag == "th":
            self.header.append(a["data-column"])
        elif self._in_table and tag == "tr" and self.header:
            self.rows.append([])
        elif self._in_table and tag == "td":
            self._cell, self._text, self._where = a, [], "td"
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "li":
            self._cell, self._text, self._where = a, [], "li"
        elif tag == "pre":
            self._text, self._where = [], "pre"

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = False
        elif tag == self._where and self._text is not None:
            text = "".join(self._text)
            if tag == "td":
                self.rows[-1].append((self._cell["data-value"], text))
            elif tag == "li":
                self.notes.append((self._cell.get("class", ""), text))
            else:
                self.pre.append(text)
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def read_page(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


@pytest.fixture
def mixed_sweep(hand_sweep: Path) -> Path:
    """hand_sweep with its runs on two platforms (a WARNING) and a recorded command."""
    rows = list(csv.DictReader((hand_sweep / "runs.csv").open()))
    for i, r in enumerate(rows):
        r.update(platform(capability="AVX512" if i % 2 else "AVX2"))
        r["seed"], r["p"] = int(r["seed"]), r["p"]
    curves = list(csv.DictReader((hand_sweep / "curves.csv").open()))
    folder = write_sweep(hand_sweep.parent / "mixed", [{k: v for k, v in r.items() if k != "run_id"} for r in rows], curves)
    (folder / "sweep.yaml").write_text(yaml.safe_dump({"commands": [
        {"overrides": ["reg=none,dropout", "seed=range(3)", "<b>&"], "multirun": True, "cwd": "/home/me"}]}))
    return folder


def cli(*args: str) -> str:
    res = runner.invoke(app, ["report", *args])
    assert res.exit_code == 0, res.output
    return res.stdout


def test_page_holds_the_csv_table_plots_warning_configs_and_commands(mixed_sweep, tmp_path):
    out = tmp_path / "report.html"
    cli(str(mixed_sweep), "--format", "html", "-o", str(out))
    page = read_page(out.read_text())
    want = list(csv.reader(io.StringIO(cli(str(mixed_sweep), "--format", "csv"))))
    assert page.header == want[0]
    assert [[v for v, _ in r] for r in page.rows] == want[1:]
    shown = {v: t for r in page.rows for v, t in r}
    test_mean = want[0].index("test_mean")
    assert [shown[r[test_mean]] for r in want[1:]] == [f"{float(r[test_mean]):.4g}" for r in want[1:]]
    assert any(cls == "warning" and "2 platforms" in text for cls, text in page.notes), page.notes
    assert len(page.images) >= 2 and all(base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
                                         for src in page.images)
    assert all(src.startswith("data:image/png;base64,") for src in page.images), "self-contained: no image from elsewhere"
    html = out.read_text()
    assert "reg=dropout (3 run(s), seeds 0, 1, 2)</summary>" in html and "<th>p</th><td>0.5</td>" in html
    assert "<th>epochs</th><td>100</td>" in html
    assert page.pre == ["# in /home/me\ndropbench run -m reg=none,dropout seed=range(3) <b>&"], "commands are shown, escaped"
    assert "http://" not in html and "https://" not in html and "<script" not in html


def test_html_without_a_recorded_command_says_why(hand_sweep):
    html = cli(str(hand_sweep), "--format", "html")
    assert "sweep.yaml is missing" in html and html.rstrip().endswith("</html>")


def chromium_dom(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """The DOM chromium built from `page` (after its scripts, had it any) and the console
    messages and page errors it logged."""
    p = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                        "--enable-logging=stderr", "--v=0", "--dump-dom", page.resolve().as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    console = [line for line in p.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return p.stdout, console


@needs_chromium
def test_chromium_catches_a_console_error(tmp_path):
    """The console check can fail: a page that logs an error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><html><body><p>x</p><script>console.error('boom'); undefinedCall();</script></body></html>")
    _, console = chromium_dom(bad, tmp_path)
    assert any("boom" in line for line in console) and any("undefinedCall" in line for line in console), console


@needs_chromium
def test_chromium_renders_it_without_console_errors_and_its_dom_tables_equal_the_csv(mixed_sweep, tmp_path):
    out = tmp_path / "report.html"
    cli(str(mixed_sweep), "--format", "html", "-o", str(out))
    dom, console = chromium_dom(out, tmp_path)
    assert not console, console
    page = read_page(dom)
    want = list(csv.reader(io.StringIO(cli(str(mixed_sweep), "--format", "csv"))))
    assert [page.header, *[[v for v, _ in r] for r in page.rows]] == want
    assert len(page.images) >= 2 and any(cls == "warning" for cls, _ in page.notes)
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
                    "--window-size=1000,800", f"--screenshot={shot}", out.resolve().as_uri()], capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
