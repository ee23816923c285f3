"""CSV cells a spreadsheet shows as text, never runs: the one rule every CSV we write follows
(invitations for a mail merge, ``contactbot report --format csv``).

A cell that starts like a formula (``=``, ``+``, ``-``, ``@``), or hides one after a tab or a
line break, gets a leading ``'``: Excel, LibreOffice and Google Sheets then show it as typed.
"""

from __future__ import annotations

__all__ = ["FORMULA_START", "spreadsheet_safe"]

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
    """A CSV cell a spreadsheet shows as text: one that starts like a formula gets a quote."""
    return "'" + cell if cell.startswith(FORMULA_START) else cell
