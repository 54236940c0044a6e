"""The documentation stays true: the site builds without a warning (every link and anchor
resolves), the README's links resolve to files of the repository, its table is what `report`
prints for the committed reference sweep, its test command is the one CI runs, and no file of the
package or its configs points at a path outside the repository."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# [text](target) and ![alt](target), the target up to the first space or closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """The site built once, strictly, into a temporary folder (never into the repository)."""
    out = tmp_path_factory.mktemp("site")
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
                       capture_output=True, text=True, cwd=ROOT)
    return out, p


def test_the_site_builds_strictly_without_a_warning(site):
    out, p = site
    assert "No module named mkdocs" not in p.stderr, 'mkdocs is missing: pip install -e ".[test]"'
    assert p.returncode == 0, p.stdout + p.stderr
    warnings = [line for line in (p.stdout + p.stderr).splitlines() if "WARNING" in line]
    assert not warnings, "\n".join(warnings)
    assert (out / "index.html").is_file() and (out / "uci-protocol" / "index.html").is_file()


def test_every_docs_page_is_in_the_nav():
    """A page left out of the nav is unreachable from the site; mkdocs only says so at INFO."""
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    listed = {page for entry in nav for page in entry.values()}
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages == listed


def _readme_links() -> list[str]:
    text = README.read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold no links
    return LINK.findall(text)


def _anchors(page_html: Path) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', page_html.read_text()))


def test_every_relative_link_of_the_readme_resolves(site):
    """Each relative link names a file of the repository; one into docs/ with an anchor names a
    heading the built page has."""
    out, p = site
    links = [t for t in _readme_links() if not re.match(r"[a-z]+:", t)]
    assert links, "the README links into docs/"
    for target in links:
        path, _, anchor = target.partition("#")
        if not path:
            raise AssertionError(f"README links to #{anchor}: link to the docs page that holds it")
        file = (ROOT / path).resolve()
        assert file.is_relative_to(ROOT), f"README links outside the repository: {target}"
        assert file.is_file(), f"README links to {target}, which is not a file of the repository"
        if anchor:
            assert path.startswith("docs/") and path.endswith(".md"), target
            assert p.returncode == 0, "the site did not build"
            page = out / Path(path).relative_to("docs").with_suffix("") / "index.html"
            if Path(path).name == "index.md":
                page = out / Path(path).relative_to("docs").parent / "index.html"
            assert anchor in _anchors(page), f"README links to {target}, but that page has no heading #{anchor}"


def test_readme_shows_its_picture_and_links_every_docs_page():
    links = _readme_links()
    assert any(t.startswith("results/reference/default_sweep/") and t.endswith(".png") for t in links)
    linked = {t.partition("#")[0] for t in links}
    pages = {f"docs/{p.relative_to(ROOT / 'docs').as_posix()}" for p in (ROOT / "docs").rglob("*.md")}
    assert pages <= linked, f"pages the README does not link: {sorted(pages - linked)}"


def test_readme_table_is_what_report_prints_for_the_reference_sweep():
    """The README's table is no figure of its own: it is `report` on the committed runs.csv."""
    cmd = "dropbench report results/reference/default_sweep --format markdown"
    text = README.read_text()
    assert cmd in text
    after = text.split(cmd, 1)[1]
    table = [line for line in after.split("\n\n", 2)[1].splitlines() if line.startswith("|")]
    p = subprocess.run([sys.executable, "-m", "dropbench", *cmd.split()[1:]], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    printed = [line for line in p.stdout.splitlines() if line.startswith("|")]
    assert table and table == printed


def test_readme_test_command_is_the_one_ci_runs():
    """.ci/run mirrors the README's second command (quietly), so a newcomer runs what CI runs."""
    blocks = re.findall(r"```bash\n(.*?)\n```", README.read_text(), flags=re.S)
    install_and_test = blocks[1]
    assert install_and_test.endswith("&& pytest -q") and '.[test]' in install_and_test
    assert install_and_test.replace("pip install ", "pip install -q ") in (ROOT / ".ci" / "run").read_text()
    assert blocks[0].startswith("python3 -m venv .venv") and "dropbench run" in blocks[0]


# ---- nothing of the package or its configs points outside the repository -------------------------
OUTSIDE = ("../shared", "/work/", "PROTOCOL.md")


def test_no_file_of_the_package_or_its_configs_points_outside_the_repository():
    """A user's clone has no ../shared: the protocol's facts are docs/uci-protocol.md."""
    found = set()
    for folder in ("dropbench", "conf"):
        for f in sorted((ROOT / folder).rglob("*")):
            if f.suffix not in (".py", ".yaml", ".md", ".txt", ".toml") or "__pycache__" in f.parts:
                continue
            text = f.read_text(errors="replace")
            found |= {(f.relative_to(ROOT).as_posix(), pattern) for pattern in OUTSIDE if pattern in text}
    assert not found, f"files that point outside the repository (the protocol is docs/uci-protocol.md): {sorted(found)}"


def test_the_docs_pages_the_package_and_configs_cite_exist():
    """conf/ and dropbench/ cite the protocol's facts as docs/uci-protocol.md: that page exists."""
    cited = set()
    for folder in ("dropbench", "conf"):
        for f in (ROOT / folder).rglob("*"):
            if f.suffix in (".py", ".yaml") and "__pycache__" not in f.parts:
                cited |= set(re.findall(r"docs/[\w./-]+\.md", f.read_text(errors="replace")))
    assert "docs/uci-protocol.md" in cited
    missing = sorted(c for c in cited if not (ROOT / c).is_file())
    assert not missing, missing


def test_the_development_page_names_every_module_and_package_of_the_tree():
    """docs/development.md's tree is the map a newcomer reads first: a module or package added
    without a line there fails here."""
    tree = (ROOT / "docs" / "development.md").read_text()
    pkg = ROOT / "dropbench"
    names = [f"{p.name}" for p in sorted(pkg.glob("*.py"))] + [f"{p.name}/" for p in sorted(pkg.iterdir())
                                                              if p.is_dir() and p.name != "__pycache__"]
    assert [n for n in names if n not in tree] == [], "add a line to docs/development.md's tree"
