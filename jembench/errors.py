"""User-facing errors.

A :class:`JembenchError` carries one line that says what is wrong and what to do. The CLI prints it
on stderr and exits non-zero without a traceback; the Python API lets it propagate.
"""


class JembenchError(Exception):
    """A problem with the user's input (file, dataset, option), explained in one line."""

    exit_code = 2

    def lines(self) -> list[str]:
        """The problems it reports, one line each (several when found together, e.g. by the preflight)."""
        return [line for line in str(self).splitlines() if line.strip()] or [type(self).__name__]


class CheckpointError(JembenchError):
    """A checkpoint that cannot be read or explained."""


class DatasetError(JembenchError):
    """An unknown, absent or malformed dataset."""


class PreflightError(JembenchError):
    """Every problem the preflight found before any model pass, one line each."""

    def __init__(self, problems: list):
        lines = [line for p in problems for line in (p.lines() if isinstance(p, JembenchError) else [p])]
        self.problems = list(dict.fromkeys(lines))
        super().__init__("\n".join(self.problems))

    @classmethod
    def of(cls, problems: list) -> JembenchError:
        """The error to raise for ``problems`` (one-line texts or errors): a lone error keeps its own type
        (``CheckpointError``, ``SettingError``, ...), several become one :class:`PreflightError`."""
        if len(problems) == 1 and isinstance(problems[0], JembenchError):
            return problems[0]
        return cls(problems)


class NonFiniteError(JembenchError):
    """A model produced NaN or inf where a number was to be measured."""
