"""How the CLI prints: DataConsole and shown(), so stored data is printed as data.

Customer names, CSV cells and agent names come from outside: they are never read as rich
markup or :emoji: codes, and control characters in them (ESC among them) are printed as
\\xNN escapes. ``out`` and ``err`` are the two consoles every command prints through.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.text import Text

# Control characters (C0, DEL, C1: ESC among them) in stored strings are shown as \xNN.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# The consoles' own safety net keeps newlines and tabs: messages may span lines.
_CONTROL_BUT_LAYOUT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Piped output is not wrapped: a script reads one record per line.
_PIPE_WIDTH = 100_000


def _escape_control(text: str, pattern: re.Pattern[str] = _CONTROL) -> str:
    return pattern.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def shown(value: object) -> str:
    """A stored value as printed: control characters (newlines too) as \\xNN escapes."""
    return "" if value is None else _escape_control(str(value))


class DataConsole(Console):
    """A console that prints data, never interprets it: no markup, no :emoji: codes, no
    highlighting, and control characters other than newline and tab shown as escapes, in
    every string it renders (print arguments, table cells and titles)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, emoji=False, highlight=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(_escape_control(text, _CONTROL_BUT_LAYOUT), **kwargs)


out = DataConsole()
# soft_wrap: an error stays one line however narrow the terminal.
err = DataConsole(stderr=True, soft_wrap=True)


def fit_output() -> None:
    """Output to a pipe or file is not wrapped at 80 columns, tables included."""
    for console in (out, err):
        if not console.is_terminal:
            console.soft_wrap = True
            console.width = _PIPE_WIDTH
