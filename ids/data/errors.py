"""The error every data problem raises (re-exported by `ids.data.flows`)."""


class DataError(ValueError):
    """Bad input data or data settings; the message names the problem and the fix."""
