"""The add-on's user-facing error: a problem and its fix, shown in the panel or CLI."""


class StoryShadeError(Exception):
    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        self.status = 0  # the HTTP status when the server refused a request
        super().__init__(f"{problem} Fix: {fix}" if fix else problem)


class ConnectionLost(StoryShadeError):
    """The server could not be reached or dropped the connection: worth a retry."""


class JobFailed(StoryShadeError):
    """The server ended the job as failed: nothing more will come of it."""


class InputError(StoryShadeError):
    """A bad input the user can fix (a missing or refused file, a malformed setting): the
    CLI exits 2 for these, as `storyshade render` does, so scripts tell them from failures."""

    exit_code = 2
