"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """Bad input from the user: the message says what was wrong and how to fix it."""

    exit_code = 2
