"""Bounds on what a flow file may make ids read: each is far above what a real NetFlow file
needs and far below what would exhaust the machine (`ids.data.reader`, `ids.serving.stream`).
Tests lower them to reach them with small files."""

from __future__ import annotations

MAX_RATIO = 1000  # bytes of CSV per compressed byte (real NF-* files: 7-25; zeros: >1000)
RATIO_FLOOR = 64 << 20  # the ratio is checked once this many bytes have been expanded
MAX_ZIP_ENTRIES = 10_000  # entries a zip may list (a published NF-* zip holds one CSV)
MAX_PARQUET_FOOTER = 64 << 20  # bytes of parquet metadata, read whole before any row
MAX_COLUMNS = 4096  # columns of a flow file (NF-v2: 45)
MAX_BATCH_BYTES = 256 << 20  # bytes of one batch of rows (65,536 NF-v2 flows: ~40 MiB)
MAX_ROW_BYTES = 1 << 20  # bytes of one flow: a CSV line on standard input, a parquet row (mean)


def size(n: float) -> str:
    """'64 MiB': a byte count in words."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} TiB"
