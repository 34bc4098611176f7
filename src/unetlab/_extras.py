"""Optional dependencies (the extras of pyproject.toml): import one, or say in one line
which extra installs it."""

from __future__ import annotations

from .errors import UnetlabError


def require(module: str, extra: str, what: str):
    """The top-level ``module`` imported, or a UnetlabError:
    ``WHAT: pip install "unetlab[EXTRA]"``."""
    try:
        return __import__(module)
    except ImportError:
        raise UnetlabError(f'{what}: pip install "unetlab[{extra}]"') from None
