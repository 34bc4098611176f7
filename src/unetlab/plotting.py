"""Figures for files, without pyplot: no global backend switch, nothing left open.

``matplotlib.figure.Figure`` objects are independent of pyplot's state, so library code
that writes PNGs never changes the backend of a notebook that imported it.
"""

from __future__ import annotations


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=(6.4, 4.8), dpi=100, squeeze=True):
    """Like ``plt.subplots`` but returns a standalone figure (save it with ``savefig``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    axes = fig.subplots(nrows, ncols, squeeze=squeeze)
    return fig, axes
