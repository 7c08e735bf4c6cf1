"""Tools beside the detector: benchmark, team servers, measurements."""
