"""``contactbot broadcast --tier T[,T] --text-file FILE [--at ISO-8601] [--dry-run]`` and
``contactbot broadcast status [KEY]``, in-process on a fresh SQLite database (``cli_env``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.cli import main
from bot.clock import set_file_clock
from routing.store.broadcast_models import Broadcast
from routing.store.db import make_engine, make_sessionmaker, upgrade
from routing.store.models import Customer, Survey

NOW = datetime(2026, 12, 10, 8, 0, tzinfo=UTC)
AT = "2026-12-10T09:00+01:00"  # 08:00 UTC: now
KEY_PREFIX = "news:20261210T0800Z:"
TOML = """\
en = '''
Our stores close at 18:00 on 31 December.
'''
zh_Hans = "12月31日门店18:00关门。"
"""


@pytest.fixture
def url(cli_db_url: str, cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    clock = cli_env / "clock.txt"
    set_file_clock(clock, NOW)
    monkeypatch.setenv("CONTACTBOT_CLOCK_FILE", str(clock))
    (cli_env / "news.toml").write_text(TOML, encoding="utf-8")
    return cli_db_url


async def _work(url: str, work: Any) -> Any:
    engine = make_engine(url)
    await upgrade(engine)
    try:
        async with make_sessionmaker(engine)() as s, s.begin():
            return await work(s)
    finally:
        await engine.dispose()


def _seed(url: str) -> None:
    async def work(s: Any) -> None:
        rows: list[tuple[str, int | None, dict[str, Any]]] = [
            ("VIP", 1, {"language": "zh-CN"}),
            ("VIP", 2, {}),
            ("A", 3, {}),
            ("A", 4, {"language": "zh_Hans"}),
            ("A", 5, {"news_opt_out": True}),
            ("A", 6, {"unreachable_at": NOW}),
            ("A", 7, {"is_guest": True}),
            ("A", None, {}),
            ("B", 9, {}),
        ]
        for i, (tier, tg, kw) in enumerate(rows):
            s.add(Customer(external_id=f"C{i}", tier=tier, telegram_id=tg, created_at=NOW,
                           updated_at=NOW, **kw))  # fmt: skip

    asyncio.run(_work(url, work))


def _counts(url: str) -> tuple[int, int]:
    async def work(s: Any) -> tuple[int, int]:
        b = await s.scalar(select(func.count()).select_from(Broadcast))
        r = await s.scalar(select(func.count()).select_from(Survey))
        return int(b or 0), int(r or 0)

    result: tuple[int, int] = asyncio.run(_work(url, work))
    return result


def _row(out: str, first: str) -> list[str]:
    line = next(x for x in out.splitlines() if x.strip("│ ").startswith(first + " "))
    return [c.strip() for c in line.strip("│ ").split("│")]


def test_dry_run_counts_per_tier_language_and_reason_and_writes_nothing(
    url: str, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(url)
    args = ["broadcast", "--tier", "A,VIP", "--text-file", "news.toml", "--at", AT, "--dry-run"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Broadcast to VIP, A at 2026-12-10 08:00 UTC: dry run, nothing written" in out
    # tier, would receive, en, zh_Hans, opted out, unreachable, cap, guest, no telegram chat
    assert _row(out, "VIP") == ["VIP", "2", "1", "1", "0", "0", "0", "0", "0"]
    assert _row(out, "A") == ["A", "2", "1", "1", "1", "1", "0", "1", "1"]
    assert _row(out, "all") == ["all", "4", "2", "2", "1", "1", "0", "1", "1"]
    assert "4 would receive it." in out
    assert _counts(url) == (0, 0)


def test_create_repeat_and_status(
    url: str, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(url)
    args = ["broadcast", "--tier", "VIP,A", "--text-file", "news.toml", "--at", AT]
    assert main(args) == 0
    out = capsys.readouterr().out
    key = next(w.rstrip(":") for w in out.split() if w.startswith(KEY_PREFIX))
    assert f"created {key}: 6 messages (6 written now)" in out
    assert _counts(url) == (1, 6)  # 4 to send, 2 skipped (opted out, unreachable)

    assert main(args) == 0  # the same command again: nothing written
    assert f"{key} was made before (6 messages): nothing written." in capsys.readouterr().out
    assert _counts(url) == (1, 6)

    assert main(["broadcast", "status"]) == 0
    out = capsys.readouterr().out
    # key, tiers, at, messages, sent, pending, skipped, failed, expired, done
    assert _row(out, key) == [key, "VIP,A", "2026-12-10 08:00 UTC", "6", "0", "4", "2", "0",
                              "0", "33%"]  # fmt: skip
    assert "skipped: opted out 1, unreachable 1" in out
    assert "no message (not reachable in Telegram): guest 1, no telegram chat 1" in out
    assert main(["broadcast", "status", key]) == 0
    assert key in capsys.readouterr().out
    assert main(["broadcast", "status", "news:nope"]) == 1
    assert "no broadcast 'news:nope'" in capsys.readouterr().err


def test_plain_text_file_is_the_default_language(
    url: str, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(url)
    (cli_env / "news.txt").write_text("Closed on <Monday> & Tuesday\n", encoding="utf-8")
    assert main(["broadcast", "--tier", "VIP", "--text-file", "news.txt", "--at", AT]) == 0
    out = capsys.readouterr().out
    assert "texts (characters): en 28; others get en" in out

    async def texts(s: Any) -> str:
        return str(await s.scalar(select(Broadcast.texts)))

    assert asyncio.run(_work(url, texts)) == '{"en": "Closed on <Monday> & Tuesday"}'


def test_status_without_broadcasts(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["broadcast", "status"]) == 0
    assert "No broadcasts yet." in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "files", "message"),
    [
        ([], {}, "broadcast needs --tier and --text-file"),
        (["--tier", "VIP"], {}, "broadcast needs --tier and --text-file"),
        (["--tier", "VIP,Gold", "--text-file", "t.txt"], {"t.txt": "hi"},
         "unknown tier 'Gold' (the policy's tiers: VIP, A, B, C)"),
        (["--tier", "VIP", "--text-file", "missing.txt"], {},
         "cannot read missing.txt: No such file or directory"),
        (["--tier", "VIP", "--text-file", "t.txt"], {"t.txt": " \n\n"},
         "t.txt: the en text is empty"),
        (["--tier", "VIP", "--text-file", "t.txt"], {"t.txt": "x" * 4097},
         "t.txt: the en text has 4097 characters; Telegram allows 4096 per message"),
        (["--tier", "VIP", "--text-file", "t.txt"], {"t.txt": b"\xff\xfe caf\xe9"},
         "t.txt: not UTF-8 text"),
        (["--tier", "VIP", "--text-file", "t.toml"], {"t.toml": 'en = "a"\nfr = "b"\n'},
         "t.toml: language 'fr' is not one the bot speaks ([selfservice] languages: en, zh_Hans)"),
        (["--tier", "VIP", "--text-file", "t.toml"], {"t.toml": 'zh_Hans = "你好"\n'},
         "t.toml: no text in the default language en"),
        (["--tier", "VIP", "--text-file", "t.toml"], {"t.toml": "en = 3\n"},
         "t.toml: 'en' must be a string"),
        (["--tier", "VIP", "--text-file", "t.toml"], {"t.toml": "en = '''\n"},
         "t.toml: not valid TOML"),
        (["--tier", "VIP", "--text-file", "t.txt", "--at", "2026-12-10T09:00"], {"t.txt": "hi"},
         "--at '2026-12-10T09:00' has no time zone: add one, e.g. 2026-12-10T09:00+01:00"),
        (["--tier", "VIP", "--text-file", "t.txt", "--at", "tomorrow"], {"t.txt": "hi"},
         "--at 'tomorrow' is not an ISO-8601 time"),
        (["--tier", "VIP", "--text-file", "t.txt", "--at", "2026-12-09T09:00Z"], {"t.txt": "hi"},
         "--at 2026-12-09 09:00 UTC is in the past"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(
    url: str,
    cli_env: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    files: dict[str, str | bytes],
    message: str,
) -> None:
    for name, content in files.items():
        path = cli_env / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    assert main(["broadcast", *args]) == 2
    # (Commands that open the database may log SQLAlchemy's reflection warning first.)
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("contactbot: ")]
    assert len(lines) == 1 and message in lines[0], lines
    assert _counts(url) == (0, 0)


def test_the_same_command_without_at_is_refused_the_second_time(
    url: str, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(url)
    args = ["broadcast", "--tier", "VIP", "--text-file", "news.toml"]
    assert main(args) == 0
    capsys.readouterr()
    set_file_clock(cli_env / "clock.txt", datetime(2026, 12, 10, 8, 30, tzinfo=UTC))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"was created as {KEY_PREFIX}" in err and "to send it again, give --at" in err
    assert _counts(url) == (1, 2)
