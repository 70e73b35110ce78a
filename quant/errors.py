"""The one error type users see: a one-line message naming the problem and the fix."""


class TernError(Exception):
    """A user-facing error. The CLI prints ``error: <message>`` and exits with status 2."""

    def __init__(self, problem: str, fix: str | None = None):
        message = problem if fix is None else f"{problem}; {fix}"
        super().__init__(" ".join(message.split()))
