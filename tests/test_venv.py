"""`make venv` installs with uv from the sources pip is configured with (ids/tools/pip_sources.py)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT
from ids.tools.pip_sources import uv_args


def test_pips_sources_become_uv_arguments_once_each():
    config = "\n".join([
        ":env:.find-links='/opt/wheels'",
        "global.find-links='/opt/wheels'",  # the same folder from a file: passed once
        "global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'",
        "global.index-url='https://mirror.example/simple'",
        "global.constraint='/etc/xdg/pip/constraints.txt'",
        "global.cert='/etc/ssl/certs/ca-certificates.crt'",  # not a source: left to uv
        "global.timeout='60'",
    ])
    assert uv_args(config) == [
        "--find-links", "/opt/wheels",
        "--extra-index-url", "file:///opt/pypi/simple",
        "--extra-index-url", "file:///opt/pypi-more/simple",
        "--index-url", "https://mirror.example/simple",
        "--constraint", "/etc/xdg/pip/constraints.txt",
        "--index-strategy", "unsafe-best-match"]  # pip's rule: the best version of any index
    assert uv_args("") == ["--index-strategy", "unsafe-best-match"]  # no config: PyPI


def test_the_script_runs_without_the_package_installed():
    """Make runs it with the system Python before .venv exists: standard library only."""
    proc = subprocess.run([sys.executable, "-S", "-I", str(ROOT / "ids/tools/pip_sources.py")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("--index-strategy unsafe-best-match")
