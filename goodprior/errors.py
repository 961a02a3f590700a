"""User-facing errors: the CLI prints these as one line, never as a traceback."""


class UserError(Exception):
    """A problem with the user's input (file, flag, model) that they can fix."""


class BackendError(UserError):
    """A model backend could not answer. `transient`: the server may answer later (timeouts, 429, 5xx after the HTTP
    engine's retries), so a batch job records the item as failed and goes on; otherwise (a wrong key, an unknown
    model) nothing later in the run can succeed and it stops in one line."""

    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient
