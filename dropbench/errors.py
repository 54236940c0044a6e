"""The one exception type the CLI turns into a one-line message and a non-zero exit, and the
did-you-mean hint such messages carry."""

from typing import Iterable


class UserError(Exception):
    """Bad input from the user: the message says what was wrong and how to fix it."""

    exit_code = 2


class AllRunsFailed(UserError):
    """Every run of a results folder failed: not bad input but an outcome, so the exit code is
    run's for failed runs (1), not bad input's (2)."""

    exit_code = 1


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """' (did you mean epochs?)' for the closest known spelling; '' where none is close."""
    import difflib

    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
