"""The one exception type for user mistakes: the CLI prints it on one line and exits 2."""


class UserError(Exception):
    """A bad config value, a missing file, a wrong path: something the user can fix."""
