"""The error of a data file that is present but cannot be trusted."""
from __future__ import annotations


class DataFileError(ValueError):
    """A data file is damaged, tampered with or inconsistent with the others.

    Distinct from a bad argument: the file, not the command, has to change
    (the message names it and says how to get a good copy).
    """
