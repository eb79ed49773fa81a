"""User-facing data errors: one line saying what is wrong and how to fix it."""


class DataError(Exception):
    """A problem with the user's data or data arguments (the CLI prints it and exits with 2)."""
