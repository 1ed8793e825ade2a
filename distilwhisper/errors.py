"""The one exception type users see: its message is a complete, one-line explanation."""


class DistilWhisperError(Exception):
    """Bad input (audio, checkpoint, options) that the caller can fix; the CLI prints it as one line."""
