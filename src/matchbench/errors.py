"""The one exception type for user mistakes: the CLI prints it as one line and exits non-zero."""


class MatchbenchError(Exception):
    """A user-facing error: bad config, bad input file, checksum mismatch, ...

    The message must name the file, key or option at fault and what was expected.
    """
