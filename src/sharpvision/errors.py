"""The errors sharpvision raises on purpose, for something a user can fix (recipe, file, checkpoint, run directory).

Every one derives from :class:`SharpvisionError`, and only those are printed by the CLI as one line with exit code
2; anything else is a bug and keeps its traceback. Each module defines its own subclass next to the code that
raises it (``ConfigError`` in config, ``DataError`` in data, ...).
"""

from __future__ import annotations


class SharpvisionError(Exception):
    """Something the user can fix; the message names the culprit and what to do."""
