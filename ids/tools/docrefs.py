"""Names in the docs that must still exist: `make docs` fails when one has moved.

The README, the docs pages and the docstrings name code as `ids.tuning.study.champion` and files
as `ids/data/reader.py` or `tests/test_sweep.py::test_x`. mkdocs checks links between pages, not
these; a rename would leave them pointing nowhere. `mkdocs.yml` runs this module as a hook: each
dotted `ids.` name must resolve in the package as griffe reads it (statically: nothing is
imported, so the build stays fast), and each path must exist in the checkout. An unresolved one
is a warning, which `mkdocs build --strict` turns into a failure.

    python -m ids.tools.docrefs     # the same check, printed, exit 1 when a name is unresolved
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"`(ids(?:\.\w+)+)")
PATH = re.compile(r"`((?:ids|tests|conf|docs|\.ci)/[\w/.-]*)(?:::\w+)?`")
# Dotted names that are not Python symbols: the MLflow tags ids writes on runs and versions.
NOT_SYMBOLS = {"ids.role", "ids.run_id", "ids.storage", "ids.study"}

log = logging.getLogger("mkdocs.plugins.ids.docrefs")


def _resolves(package, dotted: str) -> bool:
    obj = package
    for part in dotted.split(".")[1:]:
        if obj.is_alias:
            try:
                obj = obj.final_target
            except Exception:  # an alias to another package (numpy, mlflow): not ours to check
                return True
        if part not in obj.members:
            return obj.is_module and _assigned(obj.filepath, part)
        obj = obj.members[part]
    return True


def _assigned(source: Path, name: str) -> bool:
    """A module-level name griffe does not record: `FORMAT, VERSION = ...` unpacks a tuple."""
    pattern = rf"^(?:\w+\s*,\s*)*{re.escape(name)}\s*[,=:]"
    return bool(re.search(pattern, Path(source).read_text(), re.MULTILINE))


def _texts(root: Path, package) -> Iterator[tuple[str, str]]:
    """(where, text): the README, every docs page, every docstring of the package."""
    for page in [root / "README.md", *sorted((root / "docs").rglob("*.md"))]:
        yield str(page.relative_to(root)), page.read_text()
    stack = [package]
    while stack:
        obj = stack.pop()
        if obj.docstring:
            yield obj.path, obj.docstring.value
        stack.extend(m for m in obj.members.values() if not m.is_alias)


def unresolved(root: Path = ROOT) -> list[tuple[str, str]]:
    """(where, name) of every `ids.` name that does not resolve and every path that is missing."""
    import griffe

    package = griffe.load("ids", search_paths=[str(root)], resolve_aliases=False)
    missing = []
    for where, text in _texts(root, package):
        missing += [(where, m) for m in NAME.findall(text)
                    if m not in NOT_SYMBOLS and not _resolves(package, m)]
        missing += [(where, p) for p in PATH.findall(text) if not (root / p).exists()]
    return missing


def on_pre_build(config) -> None:
    """mkdocs hook: one warning per unresolved name (strict mode fails the build on them)."""
    root = Path(config["config_file_path"]).parent
    for where, name in unresolved(root):
        log.warning("%s names `%s`, which does not exist (moved or renamed?)", where, name)


if __name__ == "__main__":
    found = unresolved()
    for where, name in found:
        print(f"{where}: `{name}` does not exist")
    sys.exit(1 if found else 0)
