"""``contactbot broadcast --tier T[,T] --text-file FILE [--at ISO-8601] [--dry-run]`` and
``contactbot broadcast status [KEY]``: tier announcements (``surveys/broadcasts.py``).

The text file is either

* plain text (any name not ending in ``.toml``): the whole file is the text, in the default
  language (the first of ``[selfservice] languages``), sent to everyone; or
* a TOML file (``*.toml``) with one top-level key per language, each a string::

      en = '''
      Our stores close at 18:00 on 31 December.
      '''
      zh_Hans = "12月31日门店18:00关门。"

  the default language is required; a customer whose language has no text gets the default
  one. Literal strings (``'''...'''``) need no escapes.

The command writes the broadcast and its outbox rows and returns; the running bot sends
them from the fire time on (``contactbot run``), at the sender's pace. Problems with the
command line, the file or the texts are one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.cli.database import with_engine
from bot.cli.output import err, out, shown
from bot.clock import make_clock
from bot.config import Settings
from routing.policy.root import Policy
from routing.store import db
from routing.store.broadcast_models import Broadcast
from surveys import broadcast_figures as figures
from surveys.broadcasts import BroadcastError, Created, Draft, check_texts, create
from surveys.outbox_states import R_CAP, R_GUEST, R_NO_CHAT, R_OPTED_OUT, R_UNREACHABLE

__all__ = ["cmd_broadcast", "parse_at", "read_texts"]

# A --at this far in the past is a mistake (unless it names a broadcast already made).
PAST_GRACE = timedelta(minutes=5)
SKIP_ORDER = (R_OPTED_OUT, R_UNREACHABLE, R_CAP, R_GUEST, R_NO_CHAT)


def read_texts(path: Path, policy: Policy) -> dict[str, str]:
    """The texts by language, checked (see the module's docstring for the two formats)."""
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise BroadcastError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise BroadcastError(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".toml":
        try:
            table = tomllib.loads(raw)
        except tomllib.TOMLDecodeError as exc:
            raise BroadcastError(f"{path}: not valid TOML: {exc}") from None
        for lang, text in table.items():
            if not isinstance(text, str):
                raise BroadcastError(
                    f"{path}: {lang!r} must be a string (the text in that language)"
                )
        texts: dict[str, str] = table
    else:
        texts = {policy.selfservice.languages[0]: raw}
    try:
        return check_texts(texts, policy)
    except BroadcastError as exc:
        raise BroadcastError(f"{path}: {exc}") from None


def parse_at(value: str) -> datetime:
    """An ISO-8601 instant with its zone (``2026-12-10T09:00+01:00``, ``...Z``)."""
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BroadcastError(
            f"--at {value!r} is not an ISO-8601 time (e.g. 2026-12-10T09:00+01:00)"
        ) from None
    if at.tzinfo is None:
        raise BroadcastError(
            f"--at {value!r} has no time zone: add one, e.g. {value}+01:00 or {value}Z"
        )
    return at.astimezone(UTC)


def _when(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def cmd_broadcast(settings: Settings, args: argparse.Namespace) -> int:
    if args.broadcast_command == "status":
        return _status(settings, args.key)
    if not args.tier or args.text_file is None:
        err.print(
            "contactbot: broadcast needs --tier and --text-file (or: contactbot broadcast status)"
        )
        return 2
    policy = settings.load_policy()
    clock = make_clock(settings.clock_file)
    now = clock()
    try:
        texts = read_texts(args.text_file, policy)
        at = parse_at(args.at) if args.at is not None else now
        draft = Draft.make(policy, args.tier.split(","), texts, at, at_given=args.at is not None)
    except BroadcastError as exc:
        err.print(f"contactbot: {exc}")
        return 2

    async def work(engine: AsyncEngine) -> tuple[figures.Plan, Created | None]:
        sessions = db.make_sessionmaker(engine)
        async with sessions() as s:
            known = await s.get(Broadcast, draft.key) is not None
            if draft.at_given and not known and draft.fire_at < now - PAST_GRACE:
                raise BroadcastError(f"--at {_when(draft.fire_at)} is in the past")
            plan = await figures.plan(s, draft, policy)
        if args.dry_run:
            return plan, None
        return plan, await create(sessions, draft, policy, clock(), created_by=getpass.getuser())

    try:
        plan, created = asyncio.run(with_engine(settings, work))
    except BroadcastError as exc:
        err.print(f"contactbot: {exc}")
        return 2
    tiers = ", ".join(draft.tiers)
    if created is None:
        title = f"Broadcast to {tiers} at {_when(draft.fire_at)}: dry run, nothing written"
    else:
        title = f"Broadcast {created.key} to {tiers} at {_when(created.fire_at)}"
    out.print(_plan_table(title, plan, tuple(draft.texts)))
    sizes = ", ".join(f"{lang} {len(text)}" for lang, text in draft.texts.items())
    out.print(f"texts (characters): {sizes}; others get {draft.default_language}")
    if created is None:
        out.print(f"{plan.receivers} would receive it.")
    elif created.existed:
        out.print(f"{created.key} was made before ({created.rows} messages): nothing written.")
    else:
        verb = "finished writing" if created.resumed else "created"
        out.print(
            f"{verb} {created.key}: {created.rows} messages ({created.written} written now), "
            f"sent by the running bot from {_when(created.fire_at)}. "
            f"Progress: contactbot broadcast status {created.key}"
        )
    return 0


def _plan_table(title: str, plan: figures.Plan, languages: tuple[str, ...]) -> Table:
    table = Table(title=title)
    table.add_column("tier")
    table.add_column("would receive", justify="right")
    for lang in languages:
        table.add_column(lang, justify="right")
    for reason in SKIP_ORDER:
        table.add_column(reason + (" (est.)" if reason == R_CAP else ""), justify="right")
    rows = [*plan.tiers.items()]
    everyone = figures.TierPlan()
    for _, tp in rows:
        everyone.receive.update(tp.receive)
        everyone.skipped.update(tp.skipped)
    for name, tp in [*rows, ("all", everyone)] if len(rows) > 1 else rows:
        table.add_row(
            name,
            str(tp.receivers),
            *(str(tp.receive[lang]) for lang in languages),
            *(str(tp.skipped[reason]) for reason in SKIP_ORDER),
        )
    return table


def _status(settings: Settings, key: str | None) -> int:
    async def work(engine: AsyncEngine) -> list[figures.Progress]:
        async with db.make_sessionmaker(engine)() as s:
            return await figures.progress(s, key)

    found = asyncio.run(with_engine(settings, work))
    if key is not None and not found:
        err.print(f"contactbot: no broadcast {shown(key)!r}")
        return 1
    if not found:
        out.print("No broadcasts yet.")
        return 0
    table = Table(title="Broadcasts (latest first)")
    for col in ("key", "tiers", "at", "messages", "sent", "pending", "skipped", "failed",
                "expired", "done"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("key", "tiers", "at") else "right")
    for p in found:
        share = p.share_done
        table.add_row(
            p.key,
            p.tiers,
            _when(p.fire_at),
            str(p.rows) if p.finished else f"{p.rows} (writing)",
            str(p.sent),
            str(p.pending),
            str(sum(n for r, n in p.skipped.items() if r not in (R_GUEST, R_NO_CHAT))),
            str(sum(p.failed.values())),
            str(p.expired),
            "-" if share is None else f"{share:.0%}",
        )
    out.print(table)
    for p in found:
        out.print(_reasons(p))
    return 0


def _reasons(p: figures.Progress) -> str:
    def listed(counts: dict[str, int]) -> str:
        return ", ".join(f"{r} {n}" for r, n in sorted(counts.items(), key=lambda x: -x[1]))

    parts = []
    rows = {r: n for r, n in p.skipped.items() if r not in (R_GUEST, R_NO_CHAT)}
    if rows:
        parts.append(f"skipped: {listed(rows)}")
    if p.failed:
        parts.append(f"failed: {listed(p.failed)}")
    if p.quiet or p.retrying:
        parts.append(f"waiting: quiet hours {p.quiet}, Telegram retries {p.retrying}")
    outside = {r: n for r, n in p.skipped.items() if r in (R_GUEST, R_NO_CHAT)}
    if outside:
        parts.append(f"no message (not reachable in Telegram): {listed(outside)}")
    by = f" by {p.created_by}" if p.created_by else ""
    head = f"{p.key}: {', '.join(p.languages)}; created {_when(p.created_at)}{by}"
    return "; ".join([head, *parts])
