"""The one error type of the data package."""

from sharpvision.errors import SharpvisionError


class DataError(SharpvisionError, ValueError):
    """A dataset file or folder is missing or corrupt; the message names it and says how to get it.

    A ``ValueError`` (not ``FileNotFoundError``) because most cases are bad contents, not absent paths;
    callers catch one type either way.
    """
