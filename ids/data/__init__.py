"""Flows in, prepared arrays out: the NetFlow schema and validation (`flows`, `errors`), the one
reader of flow files in batches (`reader`) and its bounds (`limits`), the embedded generator (`synthetic`) and its v2
files of any size (`synthetic_v2`), its NF-v3 mode with hosts and time (`synthetic_v3`), encoding (`encoding`), windows (`windows`), splits
(`splits`), copies of training flows (`copies`), distinct windows (`distinct`), pass one over a
file (`ingest`), `prepare` and the prepared store on disk, checksummed (`cache`).

May import: `ids.config` only (and numpy, pandas, pyarrow). Everything else in ids builds on it.
"""
