"""The one exception type the command line turns into a one-line message."""


class UnetlabError(ValueError):
    """A user-facing error: bad input, missing file, unusable checkpoint.

    Subclasses ValueError so library callers can catch either. The message is one line
    that names the file or argument at fault.
    """


def exception_line(exc: BaseException, limit: int = 200) -> str:
    """``TypeName: first line of the message`` (at most ``limit`` characters of it), for
    one-line errors that wrap a library's exception."""
    text = str(exc).strip()
    return type(exc).__name__ + (f": {text.splitlines()[0][:limit]}" if text else "")


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
