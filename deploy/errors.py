"""Errors the command line turns into one clear message and exit code 2."""


class UsageError(Exception):
    """Bad input from the user (config key, file, argument): one line, exit 2, nothing written."""
