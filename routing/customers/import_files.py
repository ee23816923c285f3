"""Reading a CRM export file: encoding, delimiter, header, records, and ``ImportFileError``.

The file is read as UTF-8 (Excel's byte order mark allowed); the delimiter is detected from the
header line; ``scan`` reads the whole file once, before anything is written, so a file that
cannot be read to the end (not UTF-8, malformed CSV, no header, a required column missing, a
column twice) raises ``ImportFileError`` and writes nothing. ``Batches`` then hands out the data
rows a batch at a time, each turned into a valid row or a ``RowError`` by the parser it is
given (``routing.customers.import_rows``). Nothing here touches the database.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TextIO

from routing.customers.import_rows import Row, RowError, show_cell
from routing.policy.root import Policy

__all__ = [
    "DELIMITERS",
    "Batches",
    "Header",
    "ImportFileError",
    "open_csv",
    "scan",
]

DELIMITERS = (",", ";", "\t", "|")


class ImportFileError(Exception):
    """The file as a whole cannot be imported; the message is one line naming the file."""


def open_csv(path: Path) -> TextIO:
    try:
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte order mark.
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read file ({exc.strerror or exc})") from None


def _records(f: TextIO, path: Path, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """(physical line of the record's first line, cells) for every CSV record."""
    reader = csv.reader(f, delimiter=delimiter)
    last = 0
    try:
        for cells in reader:
            # line_num counts physical lines consumed, so a quoted multi-line field does not
            # shift the numbers of later records.
            yield last + 1, cells
            last = reader.line_num
    except UnicodeDecodeError:
        raise ImportFileError(
            f"{path}: not UTF-8 text (line {_first_non_utf8_line(path)}); save it as 'CSV UTF-8'"
        ) from None
    except csv.Error as exc:
        raise ImportFileError(f"{path}: malformed CSV near line {last + 1}: {exc}") from None


def _first_non_utf8_line(path: Path) -> int:
    """The physical line holding the first byte that is not UTF-8 (text mode decodes in
    chunks, so its error does not say). A newline byte never occurs inside a UTF-8 sequence,
    so lines can be decoded one by one."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 1  # pragma: no cover - only called after a decoding error


def _blank(cells: list[str]) -> bool:
    # The same as "every cell strips to nothing", without a Python loop over the cells
    # (it runs for every record the fast path does not take).
    return not "".join(cells).strip()


def _delimiter(path: Path, known: tuple[str, ...]) -> str:
    """The delimiter of the file: of ``DELIMITERS``, the one that splits the header line into
    the most known column names (then into the most cells); ',' when nothing tells."""
    line = ""
    with open_csv(path) as f:
        try:
            for raw in f:
                if raw.strip("".join(DELIMITERS) + " \r\n"):
                    line = raw
                    break
        except UnicodeDecodeError:
            return ","  # the scan reports it, with its line
    best, best_score = ",", (0, 0)
    for delimiter in DELIMITERS:
        cells = next(csv.reader([line], delimiter=delimiter), [])
        score = (sum(cell.strip().lower() in known for cell in cells), len(cells))
        if score > best_score:
            best, best_score = delimiter, score
    return best


@dataclass
class Header:
    columns: list[tuple[int, str]]  # (position, name) of the known columns
    width: int
    present: frozenset[str]
    unknown: list[str]
    delimiter: str = ","


def _header(
    cells: list[str], path: Path, known: tuple[str, ...], required: tuple[str, ...]
) -> Header:
    names = [cell.strip().lower() for cell in cells]
    columns: list[tuple[int, str]] = []
    unknown: list[str] = []
    for position, name in enumerate(names):
        if name in known:
            if any(name == seen for _, seen in columns):
                raise ImportFileError(f"{path}: column '{name}' appears twice in the header")
            columns.append((position, name))
        else:
            unknown.append(name or f"(unnamed column {position + 1})")
    present = frozenset(name for _, name in columns)
    missing = [name for name in required if name not in present]
    if missing:
        shown = ", ".join(show_cell(n)[1:-1] for n in names if n) or "nothing"
        raise ImportFileError(
            f"{path}: missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}; the header has: {shown}"
        )
    return Header(columns, len(names), present, unknown)


def scan(path: Path, known: tuple[str, ...], required: tuple[str, ...]) -> Header:
    """Read the whole file once, before writing anything, for file-level problems."""
    delimiter = _delimiter(path, known)
    with open_csv(path) as f:
        records = _records(f, path, delimiter)
        header: Header | None = None
        for _, cells in records:
            if not _blank(cells):
                header = _header(cells, path, known, required)
                break
        if header is None:
            raise ImportFileError(f"{path}: the file is empty (no header row)")
        for _ in records:
            pass
    header.delimiter = delimiter
    return header


class Batches(Generic[Row]):
    """Parses the data rows of an open file, a batch at a time (called from a worker thread)."""

    def __init__(
        self,
        f: TextIO,
        path: Path,
        header: Header,
        parse: Callable[[dict[str, str], int, Policy], Row | RowError],
        policy: Policy,
        fast: Callable[[list[str], int], Row | None] | None = None,
    ) -> None:
        self._records = _records(f, path, header.delimiter)
        self._header = header
        self._parse = parse
        self._policy = policy
        # Tried first on a record of exactly the header's width: a valid row, or None to
        # parse the record the general way (``routing.customers.import_rows.order_fast_path``).
        self._fast = fast
        self.done = False
        for _, cells in self._records:  # skip to just past the header
            if not _blank(cells):
                break

    def next(self, size: int) -> tuple[int, list[Row | RowError]]:
        """Up to ``size`` non-blank rows: (how many, parsed rows or errors)."""
        out: list[Row | RowError] = []
        columns, width = self._header.columns, self._header.width
        fast = self._fast
        for line, cells in self._records:
            if fast is not None and len(cells) == width:
                parsed = fast(cells, line)
                if parsed is not None:
                    out.append(parsed)
                    if len(out) >= size:
                        return len(out), out
                    continue
            if _blank(cells):
                continue
            if len(cells) > width and not _blank(cells[width:]):
                out.append(RowError(line, f"{len(cells)} fields but the header has {width}"))
            else:
                n = len(cells)
                row = {name: cells[pos].strip() if pos < n else "" for pos, name in columns}
                nul = [name for name, value in row.items() if "\x00" in value]
                if nul:
                    # PostgreSQL cannot store one, and would fail the whole batch.
                    out.append(RowError(line, f"NUL character in {', '.join(nul)}"))
                else:
                    out.append(self._parse(row, line, self._policy))
            if len(out) >= size:
                return len(out), out
        self.done = True
        return len(out), out
