"""Errors that are the user's to fix: the CLI prints them on one line and exits with code 2."""


class UsageError(Exception):
    """Bad input: an unknown name, a value of the wrong type or range, an unusable path."""
