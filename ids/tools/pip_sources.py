"""The package sources pip is configured with, as `uv pip install` arguments: `make venv` installs
with uv (parallel downloads, bytecode compiled on every core; 2-3x faster than pip on 2 cores)
from the same places pip would use, and picks versions as pip does (the best match over every
index). Reads `pip config list` (config files and PIP_* variables): index-url,
extra-index-url, find-links, constraint. Standard library only: it runs before .venv exists.

    python3 ids/tools/pip_sources.py   # e.g. --find-links /opt/wheels --index-strategy ...
"""

from __future__ import annotations

import shlex
import subprocess
import sys

FLAGS = {"index-url": "--index-url", "extra-index-url": "--extra-index-url",
         "find-links": "--find-links", "constraint": "--constraint"}


def uv_args(pip_config: str) -> list[str]:
    """`uv pip install` arguments for the lines of `pip config list` (`scope.key='value'`)."""
    pairs: dict[tuple[str, str], None] = {}  # in order, each once (env and file may repeat)
    for line in pip_config.splitlines():
        key, _, value = line.partition("=")
        flag = FLAGS.get(key.rpartition(".")[2])
        if flag is not None and value:
            pairs.update(dict.fromkeys((flag, item)
                                       for item in " ".join(shlex.split(value)).split()))
    return [a for pair in pairs for a in pair] + ["--index-strategy", "unsafe-best-match"]


def main() -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                          capture_output=True, text=True, check=False)
    print(shlex.join(uv_args(proc.stdout if proc.returncode == 0 else "")))


if __name__ == "__main__":
    main()
