"""The one error type of the data package."""


class DataError(ValueError):
    """A dataset file or folder is missing or corrupt; the message names it and says how to get it.

    A ``ValueError`` (not ``FileNotFoundError``) because most cases are bad contents, not absent paths;
    callers catch one type either way.
    """
