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


_WORKER = "DataLoader worker process"
_PREFIX = "matchbench.errors.MatchbenchError: "


def user_message(e: MatchbenchError) -> str:
    """The message to print for ``e``. A MatchbenchError raised in a DataLoader worker reaches
    the main process re-raised with the worker's whole traceback as its message; the user's
    message is its last line."""
    text = str(e)
    if _WORKER not in text:
        return text
    lines = [line for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else text
    return last[len(_PREFIX) :] if last.startswith(_PREFIX) else last
