"""User-facing errors: the CLI prints these as one line, never as a traceback."""


class UserError(Exception):
    """A problem with the user's input (file, flag, model) that they can fix."""
