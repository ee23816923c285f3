"""``contactbot conversations show ID``: a chat's facts and transcript, who said what and
when in the desk's time zone, internal notes marked, media as their kind; stored data
printed as data; one-line errors and their exit statuses."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.cli import main
from routing.queue import conversations
from routing.store.db import make_engine, make_sessionmaker, upgrade
from routing.store.models import ASSIGNED, Agent, Conversation, Customer

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def _seed(url: str) -> None:
    engine = make_engine(url)
    await upgrade(engine)
    async with make_sessionmaker(engine)() as s, s.begin():
        bob = Agent(telegram_id=900, name="Bob [b]", created_at=T0)
        cu = Customer(external_id="V-1", name="Victor", tier="VIP", telegram_id=501,
                      created_at=T0, updated_at=T0)  # fmt: skip
        s.add_all([bob, cu])
        await s.flush()
        conv = Conversation(customer_id=cu.id, status=ASSIGNED, tier="VIP", priority=0,
                            origin="human_first", queued_at=T0, queue_key=0.0,
                            agent_id=bob.id, assigned_at=T0 + timedelta(minutes=1))  # fmt: skip
        s.add(conv)
        await s.flush()

        async def say(sender: str, kind: str, text: str | None, mid: int, minutes: int) -> None:
            await conversations.add_message(
                s, conv, sender=sender, content_type=kind, text=text, file_id=None,
                chat_id=501 if sender == "customer" else 900, message_id=mid,
                now=T0 + timedelta(minutes=minutes), agent_id=bob.id if sender == "agent" else None,
            )  # fmt: skip

        await say("customer", "text", "My order <A-1> is late\nsince Monday", 1, 0)
        await say("agent", "text", "Let me check", 2, 2)
        await conversations.add_note(
            s, conv, agent_id=bob.id, text="courier lost it", chat_id=900, message_id=3,
            now=T0 + timedelta(minutes=3),
        )  # fmt: skip
        await say("customer", "photo", "the box", 4, 4)
    await engine.dispose()


@pytest.fixture
def seeded(cli_db_url: str, cli_env: Path) -> str:
    (cli_env / "contactbot.toml").write_text('[desk]\ntimezone = "Asia/Shanghai"\n')
    asyncio.run(_seed(cli_db_url))
    return cli_db_url


def test_show_prints_the_labelled_transcript_with_notes_marked(
    seeded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["conversations", "show", "#1"]) == 0
    out = capsys.readouterr().out
    assert "Chat #1" in out and "Victor" in out and "Bob [b]" in out  # data, not markup
    transcript = out[out.index("Transcript (4 messages, times Asia/Shanghai):") :]
    assert transcript.splitlines()[1:] == [
        "Customer 2026-11-23 20:00: My order <A-1> is late",
        "  since Monday",
        "Agent Bob [b] 2026-11-23 20:02: Let me check",
        "📝 Internal note by Bob [b] 2026-11-23 20:03: courier lost it",
        "Customer 2026-11-23 20:04: [photo] the box",
    ]


def test_no_such_chat_and_a_bad_id(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conversations", "show", "99"]) == 1
    assert "contactbot: no chat #99" in capsys.readouterr().err
    assert main(["conversations", "show", "abc"]) == 2
    assert "is not a chat number" in capsys.readouterr().err
