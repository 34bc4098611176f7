"""The one exception type the command line turns into a one-line message."""


class UnetlabError(ValueError):
    """A user-facing error: bad input, missing file, unusable checkpoint.

    Subclasses ValueError so library callers can catch either. The message is one line
    that names the file or argument at fault.
    """


def read_yaml(path, what: str = "config file"):
    """Parse a YAML file; a missing file or bad YAML is a one-line UnetlabError."""
    from pathlib import Path

    import yaml

    path = Path(path)
    if not path.is_file():
        raise UnetlabError(f"{what} {path} not found")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UnetlabError(f"{path}: invalid YAML ({' '.join(str(exc).split())})") from None
