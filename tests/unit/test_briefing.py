"""The pure parts of the desk tools: the labelled transcript (lines, notes, albums, long
messages split under Telegram's limit, in order) and the canned replies' search and
"did you mean"."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from bot import i18n
from bot.desk import briefing, canned
from routing.policy.root import parse_policy
from routing.store.models import Message

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")
NAMES = {7: "Bob"}


def _m(
    sender: str, kind: str, text: str | None, mid: int, seconds: float = 0, agent: int | None = None
) -> Message:
    return Message(
        conversation_id=1, sender=sender, agent_id=agent, content_type=kind, text=text,
        file_id=None, chat_id=100 if sender == "customer" else 200, message_id=mid,
        created_at=T0 + timedelta(seconds=seconds),
    )  # fmt: skip


def _view(items: list[briefing.Briefing]) -> list[str]:
    return [
        i.text if i.text is not None else f"copy {i.from_chat_id} {list(i.message_ids)}"
        for i in items
    ]


def test_who_said_what_and_when_notes_marked_media_after_their_label() -> None:
    rows = [
        _m("customer", "text", "Hi <there>", 1),
        _m("agent", "text", "Hello", 2, 60, agent=7),
        _m("agent", "note", "VIP, be nice", 3, 61, agent=7),
        _m("customer", "photo", "the box", 4, 120),
        _m("customer", "photo", None, 5, 120.5),  # same album
        _m("bot", "survey", "Survey answer: NPS 3", 0, 130),
        _m("agent", "text", "Thanks", 6, 200, agent=99),  # an agent since removed
    ]
    with i18n.speaking("en"):
        items = briefing.labelled(rows, NAMES, UTC_ZONE, date(2026, 11, 23))
    assert _view(items) == [
        "Customer 12:00: Hi &lt;there&gt;\n"
        "Agent Bob 12:01: Hello\n"
        "📝 Internal note by Bob 12:01: VIP, be nice\n"
        "Customer 12:02: 2 × [photo] the box (below)",
        "copy 100 [4, 5]",
        "ℹ️ 12:02: Survey answer: NPS 3\nAgent (removed agent) 12:03: Thanks",
    ]


def test_another_day_shows_the_date_and_long_texts_are_split() -> None:
    long = "x" * 5000
    rows = [_m("customer", "text", long, 1), _m("customer", "text", "end", 2, 86400)]
    with i18n.speaking("en"):
        items = briefing.labelled(rows, {}, ZoneInfo("Asia/Shanghai"), date(2026, 11, 24))
    texts = [i.text or "" for i in items]
    assert all(len(t) <= 4096 for t in texts)
    assert texts[0].startswith("Customer 2026-11-23 20:00: xxx")
    assert sum(t.count("x") for t in texts) == 5000
    assert texts[-1].endswith("Customer 20:00: end")


def test_search_and_close_matches() -> None:
    policy = parse_policy(
        {
            "desk": {
                "canned": [
                    {"key": "hello", "text": {"en": "Hello {name}", "zh_Hans": "您好 {name}"}},
                    {"key": "refund", "text": "Your refund for {last_order} is on its way."},
                    {"key": "bye", "text": "Goodbye, and thank you!"},
                ]
            }
        }
    )
    replies = policy.desk.canned
    assert [c.key for c in canned.search(replies, "")] == ["hello", "refund", "bye"]
    assert [c.key for c in canned.search(replies, "REF")] == ["refund"]
    assert [c.key for c in canned.search(replies, "您好")] == ["hello"]
    assert [c.key for c in canned.search(replies, "thank you")] == ["bye"]
    assert canned.search(replies, "nothing like it") == []
    assert canned.close_matches(policy, "helo") == ["hello"]
    assert canned.close_matches(policy, "ref") == ["refund"]
    assert canned.close_matches(policy, "zzz") == []
