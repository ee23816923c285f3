"""``contactbot customers invite``: one-time deep links (and QR codes, CSVs for a tier)
that identify a customer."""

from __future__ import annotations

import argparse
import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.cli.database import with_engine
from bot.cli.output import err, out
from bot.config import Settings
from routing.policy.root import Policy
from routing.store import db


def _bot_username(settings: Settings, given: str | None) -> str:
    """--bot-username, else CONTACTBOT_BOT_USERNAME, else getMe with the configured token."""
    import os
    import re

    name = given or os.environ.get("CONTACTBOT_BOT_USERNAME")
    if not name:
        from bot.app import make_bot

        async def get_me() -> str:
            bot = make_bot(settings.require_token(), settings.telegram_api_url)
            try:
                return (await bot.get_me()).username or ""
            finally:
                await bot.session.close()

        name = asyncio.run(get_me())
    name = name.strip().lstrip("@")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{3,31}", name):
        raise ValueError(f"{name!r} is not a bot username")
    return name


def cmd_invite(settings: Settings, args: argparse.Namespace, policy: Policy) -> int:
    import csv
    import getpass
    from datetime import timedelta

    from routing.clock import utcnow
    from routing.customers import invitations

    if bool(args.external_id) == bool(args.tier) or bool(args.tier) != bool(args.out):
        err.print("contactbot: give an ID, or --tier T with --out FILE.csv", markup=False)
        return 2
    if args.tier and args.qr:
        err.print("contactbot: --qr makes one image: give an ID, not --tier", markup=False)
        return 2
    if args.tier and args.tier not in policy.tier_names:
        err.print(f"contactbot: no tier {args.tier!r} in the policy", markup=False)
        return 2
    try:
        ttl = (
            invitations.parse_duration(args.expires)
            if args.expires
            else timedelta(days=policy.identification.invite_expires_days)
        )
        username = _bot_username(settings, args.bot_username)
    except ValueError as exc:
        err.print(f"contactbot: {exc}", markup=False)
        return 2
    by = args.by or getpass.getuser()

    async def make(engine: AsyncEngine) -> list[invitations.NewInvitation] | None:
        async with db.make_sessionmaker(engine)() as s, s.begin():
            if args.tier:
                return await invitations.create_for_tier(
                    s, args.tier, now=utcnow(), ttl=ttl, created_by=by
                )
            one = await invitations.create_for_customer(
                s, args.external_id, now=utcnow(), ttl=ttl, created_by=by
            )
            return None if one is None else [one]

    made = asyncio.run(with_engine(settings, make))
    if made is None:
        err.print(f"contactbot: no customer with external_id {args.external_id!r}", markup=False)
        return 1
    until = made[0].expires_at.strftime("%Y-%m-%d %H:%M UTC") if made else "-"
    if args.tier:
        with args.out.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(invitations.CSV_COLUMNS)
            writer.writerows(invitations.csv_rows(made, username))
        out.print(
            f"{len(made)} invitations for tier {args.tier} written to {args.out} "
            f"(single-use, valid until {until})",
            markup=False,
        )
        return 0
    link = invitations.deep_link(username, made[0].token)
    out.print(link, markup=False, soft_wrap=True)
    err.print(f"single-use, valid until {until}", markup=False)
    if args.qr:
        import segno

        segno.make(link, error="m").save(str(args.qr), scale=8, border=4)
        err.print(f"QR code written to {args.qr}", markup=False)
    return 0
