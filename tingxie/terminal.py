"""Terminal manners for the command line: progress bars only where someone watches, colour only where it is
welcome (never with ``NO_COLOR`` set, https://no-color.org), nothing but errors with ``--quiet``."""

from __future__ import annotations

import os
from typing import TextIO

DIM, BOLD, RESET = "\x1b[2m", "\x1b[1m", "\x1b[0m"


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def color_enabled(stream: TextIO) -> bool:
    """Colour on a terminal, unless ``NO_COLOR`` is set to anything but an empty string or the terminal is dumb."""
    return not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb" and is_terminal(stream)


def styled(text: str, style: str, stream: TextIO) -> str:
    """``text`` in ``style`` (DIM, BOLD) where ``stream`` takes colour; as it is elsewhere."""
    return f"{style}{text}{RESET}" if color_enabled(stream) else text


def progress_enabled(requested: bool | None, stream: TextIO) -> bool:
    """``--progress``: True or False as asked; None (auto) shows bars only when ``stream`` is a terminal."""
    return is_terminal(stream) if requested is None else requested
