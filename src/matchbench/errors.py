"""The one exception type for user mistakes: the CLI prints it as one line and exits non-zero."""

import difflib
from collections.abc import Iterable


class MatchbenchError(Exception):
    """A user-facing error: bad config, bad input file, checksum mismatch, ...

    The message must name the file, key or option at fault and what was expected. The CLI
    prints it after ``matchbench <stage>: error:`` and exits 2, without a traceback; a message
    listing several problems (an invalid config) puts one per indented line.
    """


def did_you_mean(name: str, known: Iterable[str], n: int = 3) -> str:
    """``"; did you mean a, b?"`` for the known names close to ``name``, or ``""``."""
    close = difflib.get_close_matches(name, list(known), n=n)
    return f"; did you mean {', '.join(close)}?" if close else ""
