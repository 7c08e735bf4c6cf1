"""Tools beside the detector: the benchmark (`bench*`), the team servers (`servers`,
`postgres`, `auth`) and measurements (`landscape`, `trust_cost`).

May import: anything in ids; nothing in ids imports it.
"""
