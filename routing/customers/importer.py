"""Bulk import of CRM exports: ``customers.csv`` and ``orders.csv``.

The file is streamed: rows are read, validated and written in batches of ``BATCH_SIZE``
(orders: ``ORDER_BATCH_SIZE``), each batch in its own transaction, so a 10-million-row export
neither sits in memory nor holds one giant transaction (on SQLite the bot's own writers get
their turn between batches). Bad rows are reported as ``line N: reason`` and skipped; good
rows load. Writing is an idempotent upsert (customers by ``external_id``, orders by
``order_id``): importing the same file twice leaves the same data.

Before anything is written the whole file is scanned once for file-level problems (not UTF-8,
malformed CSV, missing header columns), which raise ``ImportFileError``: a file that cannot be
read to the end writes nothing.

Empty cells keep what is stored: a CRM export that leaves a column blank for some rows must not
wipe the values (or release the tier pins) the bot and its people set. Clearing a stored value
takes the explicit token ``(clear)`` (``CLEAR``) in the cell. Releasing a tier override that
way is written to the tier history with who ("import FILE") and why, and the customer is
regraded at once, as ``customers override ID --clear`` does.

Counting: ``inserted``, ``updated`` and ``unchanged`` are exact counts of distinct keys
(``external_id`` / ``order_id``): keys that did not exist before the import, keys that existed
and whose stored values the import changed, and keys that existed with exactly the values of
the file (nothing is written for them). They are established by a look-up in the same
transaction as each batch's write (a concurrent writer between look-up and write on
PostgreSQL could make one count off, never the data). A key repeated in the file counts once.
All three are 0 for a dry run. ``ok`` counts every accepted row, including rows later
superseded by a repeat of their key.

Real CRM exports: the delimiter (``,`` ``;`` tab ``|``) is detected from the header line;
``date_format`` (a strptime format) and ``decimal_comma`` (``1.234,56``) read what regional
settings produce. A national phone number that cannot be read without
``[identification] default_region`` loads the customer without the phone, counted in one
warning. A cell holding a NUL character is a row error (PostgreSQL cannot store one).

Memory: rows are not kept, but the keys already seen (for the "later row wins" warnings and
the counts) are: roughly 150 bytes per distinct key.

Where it lives: this module holds the public entry points (``import_customers``,
``import_orders``) and the names their callers need (``ImportReport``, ``ImportFileError``,
``ImportOptionError``, ``check_date_format``). ``import_files`` reads the file,
``import_rows`` validates a row, ``import_driver`` runs the batches and counts,
``customer_importer`` and ``order_importer`` write each kind.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from routing.customers.customer_importer import CustomerImporter
from routing.customers.import_driver import ImportReport
from routing.customers.import_files import ImportFileError
from routing.customers.import_rows import ImportOptionError, check_date_format
from routing.customers.order_importer import OrderImporter
from routing.policy.root import Policy

__all__ = [
    "BATCH_SIZE",
    "ORDER_BATCH_SIZE",
    "ImportFileError",
    "ImportOptionError",
    "ImportReport",
    "check_date_format",
    "import_customers",
    "import_orders",
]

BATCH_SIZE = 5000
# Orders in larger transactions: every batch rewrites the covering index's pages it touches,
# so fewer, larger batches write far less (the SQL of 1,000,000 orders 14 -> 9 s of CPU from
# 5,000 to 20,000 rows, bench/RESULTS.md). A batch holds SQLite's write lock from its BEGIN
# IMMEDIATE to its COMMIT: for 20,000 orders a median 0.3 s on a quiet 2-core box, 0.7-0.9 s
# at load 3-4, at most 1.7 s (10,000: median 0.5 s, at most 0.7 s, but the import 45% slower;
# bench/RESULTS.md). A bot writer waits that long behind it (busy timeout 30 s): acceptable
# during a bulk import, not much more, so not larger.
ORDER_BATCH_SIZE = 20_000


async def import_customers(
    sessions: async_sessionmaker[AsyncSession],
    path: Path,
    policy: Policy,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Upsert customers.csv by ``external_id``; see the module docstring for the rules.

    New customers get ``tier`` = their override or the lowest tier (rescoring follows an
    import); an update never touches ``tier`` or ``spend_12m``. An empty cell keeps the stored
    value; ``(clear)`` sets NULL. A ``tier_override`` the file changes records "import FILE"
    as who pinned it; a ``(clear)`` releases the pin, logs who and why in the tier history and
    regrades the customer at once. A telegram_id held by a guest moves to the imported
    customer (the guest row and its conversations stay as they are); one held by another
    imported customer, or taken by an earlier row of the same file, is a row error.
    """
    return await CustomerImporter(policy, dry_run, now).run(sessions, path, batch_size)


async def import_orders(
    sessions: async_sessionmaker[AsyncSession],
    path: Path,
    policy: Policy,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    batch_size: int = ORDER_BATCH_SIZE,
    date_format: str | None = None,
    decimal_comma: bool = False,
) -> ImportReport:
    """Upsert orders.csv by ``order_id``; orders of not-yet-imported customers load too.

    ``date_format``: a strptime format for ``ordered_at`` (ISO 8601 is read as well);
    ``ImportOptionError`` if it cannot read a full date. ``decimal_comma``: amounts are
    written 1.234,56.
    """
    importer = OrderImporter(policy, dry_run, now, date_format, decimal_comma)
    return await importer.run(sessions, path, batch_size)
