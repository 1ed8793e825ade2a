"""The one exception type users see: its message is a complete, one-line explanation. And the one test of a count
that the checks raising it share."""

import numbers
from typing import TypeGuard


class DistilWhisperError(Exception):
    """Bad input (audio, checkpoint, options) that the caller can fix; the CLI prints it as one line."""


# Another library's one line can run to a page (torch's dispatcher, asked for a backend it lacks, lists them all).
MAX_REASON = 200


def first_line(error: BaseException) -> str:
    """The first line of another library's exception message ("" when it has none), cut to MAX_REASON
    characters, for one-line errors."""
    message = str(error).strip()
    line = message.splitlines()[0] if message else ""
    return line if len(line) <= MAX_REASON else line[: MAX_REASON - 1] + "…"


def is_whole_number(value: object) -> TypeGuard[int]:
    """An integer of any kind (numpy's too), but not a bool: Python makes True an int, yet `true` is no count."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
