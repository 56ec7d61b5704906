"""User mistakes: the CLI prints them on one line and exits 2."""


class UserError(Exception):
    """A bad config value, a missing file, a wrong path: something the user can fix."""


def one_line(err: UserError) -> str:
    """The message of err; for one a DataLoader worker re-raised, the original message alone.

    A worker's exception comes back as the same type with the worker's whole traceback as
    its text; its last line is "<module>.UserError: <the original message>".
    """
    text = str(err)
    if "\nOriginal Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    return last.partition("UserError: ")[2] or last


class ConfigError(UserError):
    """A config file or override that does not describe a valid experiment."""
