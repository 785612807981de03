"""The add-on's user-facing error: a problem and its fix, shown in the panel or CLI."""


class StoryShadeError(Exception):
    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} Fix: {fix}" if fix else problem)


class ConnectionLost(StoryShadeError):
    """The server could not be reached or dropped the connection: worth a retry."""
