"""The README stays the first five minutes and points at docs pages that exist; the tables it
shares with the docs say the same thing in both; every module has its API page; and a name the
docs give for code that has moved is caught (`ids.tools.docrefs`, run by `make docs` too).
"""

from __future__ import annotations

import re
import shutil

import yaml

from conftest import ROOT
from ids.tools import docrefs

README = ROOT / "README.md"


def _table(text: str, header: str) -> str:
    start = text.index(header)
    end = text.find("\n\n", start)
    return text[start:end if end > 0 else len(text)].strip()


def test_the_readme_is_short_and_its_links_reach_docs_pages_that_build():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    links = [link.split("#")[0] for link in re.findall(r"\]\(([^)\s]+)\)", text)
             if not link.startswith(("http://", "https://"))]
    assert links, "the README links no docs page"
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert missing == []
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    in_nav = set(re.findall(r"[\w/-]+\.md", str(nav)))
    assert {link.removeprefix("docs/") for link in links if link.startswith("docs/")} <= in_nav


def test_tables_in_the_readme_and_the_docs_are_the_same():
    text = README.read_text()
    for header, page in [("| command | what it does |", "docs/getting-started.md"),
                         ("| key | default | what it sets |", "docs/guide/configuration.md")]:
        assert _table(text, header) == _table((ROOT / page).read_text(), header), page


def test_every_module_has_its_api_page():
    """A subpackage's page shows its modules (`show_submodules`); the top-level modules are
    listed on the `ids` page one by one."""
    pages = "\n".join(p.read_text() for p in (ROOT / "docs" / "reference").glob("*.md"))
    documented = set(re.findall(r"^::: ([\w.]+)$", pages, re.MULTILINE))
    subpackages = {d for d in documented if (ROOT / d.replace(".", "/") / "__init__.py").exists()
                   and d != "ids"}
    assert "show_submodules: true" in pages
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
               for p in (ROOT / "ids").rglob("*.py")}
    shown = {m for m in modules if m in documented or m.rpartition(".")[0] in subpackages}
    assert sorted(modules - shown) == []
    assert sorted(documented - modules) == []


def test_the_checkout_names_only_code_and_files_that_exist():
    assert docrefs.unresolved(ROOT) == []


def test_a_name_or_path_that_moved_is_reported(tmp_path):
    """A copy of the checkout's package and a page naming a moved function, a moved file."""
    shutil.copytree(ROOT / "ids", tmp_path / "ids")
    for folder in ("tests", "conf", ".ci"):  # what docstrings name, as they are
        (tmp_path / folder).symlink_to(ROOT / folder)
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "Ties go to `ids.tuning.study.champion`; the reader is `ids/data/reader.py`.\n")
    (tmp_path / "docs" / "page.md").write_text(
        "Ties go to `ids.tuning.champion`, tested in `tests/test_gone.py::test_x`.\n")
    source = tmp_path / "ids" / "model" / "network.py"
    source.write_text(source.read_text().replace("`ids.model.lstm.UnrolledBiLSTM`",
                                                 "`ids.lstm.UnrolledBiLSTM`"))
    assert sorted(docrefs.unresolved(tmp_path)) == [
        ("docs/page.md", "ids.tuning.champion"),
        ("docs/page.md", "tests/test_gone.py"),
        ("ids.model.network", "ids.lstm.UnrolledBiLSTM")]
