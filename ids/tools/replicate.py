"""A larger NetFlow file for scale measurements: shuffled copies of a sample, concatenated.

    python -m ids.tools.replicate ../shared/data/nf-bot-iot-sample.csv.gz \
        /work/scratch/nf-bot-iot-x5.csv.gz --copies 5 --seed 0

Each copy is the whole input in its own random row order (seeded), so the output has the
input's class mix and the same distinct flows, as a real capture many times the sample's size
has (95 % of a 228,781-flow NF-BoT-IoT file's training flows are copies of another one; here
87 % of the sample's are, and more with every copy). Columns and values are written unchanged.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from ids import outputs


def replicate(src: str, dst: str, copies: int, seed: int) -> int:
    """Write `copies` shuffled copies of `src` to `dst` (CSV, gzipped if it ends in .gz)."""
    frame = pd.read_csv(src)
    rng = np.random.default_rng(seed)
    out = pd.concat([frame.iloc[rng.permutation(len(frame))] for _ in range(copies)],
                    ignore_index=True)
    with outputs.replacing(dst, overwrite=True, key="dst", inputs=(src,)) as fh:
        out.to_csv(fh, index=False)
    return len(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--copies", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.copies < 1:
        p.error(f"--copies must be >= 1, but got {args.copies}")
    try:
        n = replicate(args.src, args.dst, args.copies, args.seed)
    except outputs.OutputError as exc:
        p.exit(2, f"error: {exc}\n")
    print(f"{args.dst}: {n} flows ({args.copies} shuffled copies of {args.src})")


if __name__ == "__main__":
    main(sys.argv[1:])
