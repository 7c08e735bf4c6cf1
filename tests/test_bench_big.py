"""`python -m ids.tools.bench --quick --sections big`: every figure of the full-size section is
there and finite on a small generated file (no timing is asserted: the machine is shared)."""

from __future__ import annotations

import math

import pytest

from ids.tools import bench


@pytest.mark.slow  # generates a file, prepares it twice and trains four times: ~1 min
def test_the_big_section_reports_every_figure(tmp_path):
    out = bench.run_bench(["--quick", "--sections", "big", "--big-dir", str(tmp_path),
                           "--no-log", f"cache_dir={tmp_path}/unused"])
    values = out["values"]
    tag = "big.60k"
    for key in ("file_gb", "generate_seconds", "prepare.seconds", "prepare.flows_per_s",
                "prepare.peak_rss_mb", "prepare.store_gb", "copies_share", "reuse.seconds",
                "reuse.process_seconds", "prepare.hash_seconds", "prepare.hash_share",
                "copied.seconds", "trial.store_subset_vs_memory",
                "trial.store_prefix_vs_memory"):
        assert math.isfinite(values[f"{tag}.{key}"]), key
    assert 0 < values[f"{tag}.copies_share"] < 1
    assert (tmp_path / "ids-v2-60000.csv").is_file()


def test_the_big_section_needs_a_folder():
    with pytest.raises(SystemExit, match="--big-dir"):
        bench.run_bench(["--quick", "--sections", "big", "--no-log"])
