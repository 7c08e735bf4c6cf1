"""Flows in, prepared arrays out: the NetFlow schema and reading (`flows`), the embedded
generator (`synthetic`), encoding (`encoding`), windows (`windows`), splits (`splits`), copies
of training flows (`copies`), `prepare` and its on-disk cache (`cache`).

May import: `ids.config` only (and numpy, pandas). Everything else in ids builds on it.
"""
