"""The error every data problem raises (re-exported by `ids.data.flows`)."""

from ids.config import InputError


class DataError(InputError, ValueError):
    """Bad input data or data settings; the message names the problem and the fix."""
