"""The one exception type the command line turns into a one-line message."""


class UnetlabError(ValueError):
    """A user-facing error: bad input, missing file, unusable checkpoint.

    Subclasses ValueError so library callers can catch either. The message is one line
    that names the file or argument at fault.
    """
