"""User-facing errors.

A :class:`JembenchError` carries one line that says what is wrong and what to do. The CLI prints it
on stderr and exits non-zero without a traceback; the Python API lets it propagate.
"""


class JembenchError(Exception):
    """A problem with the user's input (file, dataset, option), explained in one line."""

    exit_code = 2


class CheckpointError(JembenchError):
    """A checkpoint that cannot be read or explained."""


class DatasetError(JembenchError):
    """An unknown, absent or malformed dataset."""


class NonFiniteError(JembenchError):
    """A model produced NaN or inf where a number was to be measured."""
