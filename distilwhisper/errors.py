"""The one exception type users see: its message is a complete, one-line explanation."""


class DistilWhisperError(Exception):
    """Bad input (audio, checkpoint, options) that the caller can fix; the CLI prints it as one line."""


def first_line(error: BaseException) -> str:
    """The first line of another library's exception message ("" when it has none), for one-line errors."""
    message = str(error).strip()
    return message.splitlines()[0] if message else ""
