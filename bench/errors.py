"""User-facing errors of the command line: printed as one line, exit code 2."""


class UsageError(Exception):
    """A wrong argument or environment problem the user can fix (one line: what, why, how)."""
