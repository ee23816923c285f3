"""``contactbot run`` checks its URLs and services first: a failure is one line and exit 3."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.utils.backoff import BackoffConfig

from bot.config import Settings
from bot.preflight import PreflightError, RetryLogFilter, install_log_filters, preflight
from tests.fakes.bot_api import DEFAULT_TOKEN, FakeBotAPI

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = "2"


def closed_port() -> int:
    """A local port nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as fake:
        yield fake


@pytest.fixture
def base_env(tmp_path: Path, api: FakeBotAPI) -> dict[str, str]:
    """Everything reachable: each test breaks just the one thing it is about."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CONTACTBOT_")} | {
        "CONTACTBOT_TOKEN": DEFAULT_TOKEN,
        "CONTACTBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        "CONTACTBOT_TELEGRAM_API_URL": api.url,
        "CONTACTBOT_PREFLIGHT_TIMEOUT": TIMEOUT,
    }


async def run_bot(env: dict[str, str]) -> tuple[int, str]:
    """``python -m bot run``; returns its exit code and stderr. The fake API runs in this
    event loop, so the process is awaited rather than run with subprocess.run."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("contactbot run did not stop: did preflight pass?") from None
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode(errors="replace")


def one_line(output: str) -> str:
    assert "Traceback" not in output, output
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("contactbot: "), output
    return lines[0]


async def test_unreachable_bot_api(base_env: dict[str, str]) -> None:
    port = closed_port()
    rc, output = await run_bot(
        base_env | {"CONTACTBOT_TELEGRAM_API_URL": f"http://127.0.0.1:{port}"}
    )
    line = one_line(output)
    assert rc == 3
    assert f"cannot reach the Telegram Bot API at http://127.0.0.1:{port}" in line
    assert DEFAULT_TOKEN.split(":")[1] not in line


async def test_unreachable_database(base_env: dict[str, str]) -> None:
    url = "postgresql+asyncpg://postgres@127.0.0.1:1/nope"
    rc, output = await run_bot(base_env | {"CONTACTBOT_DATABASE_URL": url})
    line = one_line(output)
    assert rc == 3
    assert f"cannot connect to the database at {url}: " in line


async def test_unreachable_redis(base_env: dict[str, str]) -> None:
    rc, output = await run_bot(base_env | {"CONTACTBOT_REDIS_URL": "redis://127.0.0.1:1/0"})
    line = one_line(output)
    assert rc == 3
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in line


@pytest.mark.parametrize("url", ["mysql://user:secret@db.example/contactbot", "ftp://x"])
async def test_unsupported_database_scheme(base_env: dict[str, str], url: str) -> None:
    rc, output = await run_bot(base_env | {"CONTACTBOT_DATABASE_URL": url})
    line = one_line(output)
    assert rc == 3
    scheme = url.split(":")[0]
    assert f"CONTACTBOT_DATABASE_URL has the unsupported scheme '{scheme}'" in line
    assert "secret" not in line


async def test_token_rejected(base_env: dict[str, str]) -> None:
    # A well-formed token the Bot API does not know: it answers 401 Unauthorized.
    other = "654321:ANOTHER-token-the-fake-api-rejects"
    rc, output = await run_bot(base_env | {"CONTACTBOT_TOKEN": other})
    line = one_line(output)
    assert rc == 3
    assert "the token was rejected by Telegram" in line
    assert "ANOTHER-token" not in line


# The rest run in this process: each `contactbot run` above costs seconds of imports.


@pytest.mark.parametrize(
    ("variable", "url", "scheme"),
    [
        ("database_url", "postgresql://postgres@127.0.0.1/db", "'postgresql'"),
        ("database_url", "sqlite:///contactbot.db", "'sqlite'"),
        ("database_url", "not a url", "'(none)'"),
        ("telegram_api_url", "ftp://api.example", "'ftp'"),
        ("telegram_api_url", "api.telegram.org", "''"),
        ("redis_url", "http://127.0.0.1:6379/0", "'http'"),
    ],
)
async def test_unsupported_schemes_fail_before_any_connection(
    variable: str, url: str, scheme: str
) -> None:
    settings = Settings.model_validate({variable: url})
    with pytest.raises(PreflightError) as caught:
        await preflight(settings, DEFAULT_TOKEN)
    assert f"CONTACTBOT_{variable.upper()} has the unsupported scheme {scheme}" in str(caught.value)


async def test_everything_down_is_still_one_line() -> None:
    settings = Settings(
        database_url="postgresql+asyncpg://postgres:hunter2@127.0.0.1:1/nope",
        redis_url="redis://:hunter3@127.0.0.1:1/0",
        telegram_api_url=f"http://127.0.0.1:{closed_port()}",
        preflight_timeout=2,
    )
    with pytest.raises(PreflightError) as caught:
        await preflight(settings, DEFAULT_TOKEN)
    message = str(caught.value)
    assert "\n" not in message
    assert "cannot connect to the database at postgresql+asyncpg://postgres:***@" in message
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in message
    assert "cannot reach the Telegram Bot API" in message
    assert "hunter" not in message and DEFAULT_TOKEN.split(":")[1] not in message


async def test_preflight_passes_when_everything_answers(api: FakeBotAPI, tmp_path: Path) -> None:
    settings = Settings(
        token=DEFAULT_TOKEN,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'ok.db'}",
        telegram_api_url=api.url,
        redis_url=os.environ.get("CONTACTBOT_TEST_REDIS_URL"),
        preflight_timeout=2,
    )
    await preflight(settings, DEFAULT_TOKEN)
    assert [c.method for c in api.calls] == ["getMe"]
    pg = os.environ.get("CONTACTBOT_TEST_PG_URL")
    if pg:
        await preflight(settings.model_copy(update={"database_url": pg}), DEFAULT_TOKEN)


async def test_preflight_gives_up_after_the_timeout(tmp_path: Path) -> None:
    # A server that accepts the connection and never answers.
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'ok.db'}",
        telegram_api_url=f"http://127.0.0.1:{port}",
        preflight_timeout=0.3,
    )
    try:
        with pytest.raises(PreflightError, match=r"no answer within 0\.3s"):
            await asyncio.wait_for(preflight(settings, DEFAULT_TOKEN), 5)
    finally:
        server.close()


class Records(logging.Handler):
    def __init__(self, wanted: int) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.tracebacks = 0
        self.wanted = wanted
        self.enough = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")
        self.tracebacks += record.exc_info is not None
        if len(self.lines) >= self.wanted:
            self.enough.set()


async def test_polling_logs_one_line_per_failed_attempt() -> None:
    """aiogram's getUpdates loop, with the network gone: one line per attempt, no traceback."""
    install_log_filters()
    install_log_filters()  # idempotent
    logger = logging.getLogger("aiogram.dispatcher")
    assert sum(isinstance(f, RetryLogFilter) for f in logger.filters) == 1
    records = Records(wanted=3)
    logger.addHandler(records)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    port = closed_port()
    session = AiohttpSession(api=TelegramAPIServer.from_base(f"http://127.0.0.1:{port}"))
    bot = Bot(DEFAULT_TOKEN, session=session)
    backoff = BackoffConfig(min_delay=0.01, max_delay=0.02, factor=1.1, jitter=0.0)

    async def poll() -> None:
        async for _ in Dispatcher._listen_updates(bot, polling_timeout=1, backoff_config=backoff):
            pass

    task = asyncio.create_task(poll())
    try:
        await asyncio.wait_for(records.enough.wait(), 10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        logger.removeHandler(records)
        logger.setLevel(old_level)
        await session.close()
    assert records.tracebacks == 0
    for n, line in enumerate(records.lines[:3], start=1):
        assert line.startswith("WARNING cannot fetch updates (TelegramNetworkError: "), line
        assert f"127.0.0.1:{port}" in line and line.endswith(f"(attempt {n})"), line
        assert "retrying in 0.0" in line
