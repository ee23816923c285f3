"""A fake Telegram Bot API server for end-to-end tests.

The real bot (aiogram 3) is pointed at this server with
``AiohttpSession(api=TelegramAPIServer.from_base(api.url))``. Requests arrive at
``/bot{token}/{method}`` exactly as they would at api.telegram.org, so the whole client
stack (serialisation, multipart encoding, error mapping, long polling) is exercised.

The fake keeps just enough state to behave like Telegram where bots usually get it wrong:

* a per-chat message store, so ``copyMessage``/``editMessage*``/callback buttons refer to
  real content and unknown ids fail the way Telegram fails;
* message ids are a per-chat counter shared by user and bot messages;
* ``getUpdates`` is a real long poll with offset confirmation, ``allowed_updates``
  filtering and the 409 conflict when two pollers run at once;
* rate limits (429 + ``retry_after``), blocked users (403) and injected failures;
* HTML / MarkdownV2 mistakes that Telegram rejects with "can't parse entities";
* albums: users send them as separate updates sharing ``media_group_id``
  (:meth:`FakeBotAPI.user_album`); ``copyMessages`` copies them in one call, keeping the
  grouping, and ``sendMediaGroup`` sends new ones;
* outages (:meth:`FakeBotAPI.begin_outage` / :meth:`FakeBotAPI.outage`): every method answers
  ``{"ok": false, "error_code": 502, "description": "Bad Gateway"}``, which aiogram raises as
  ``TelegramServerError``, like api.telegram.org behind a failing gateway;
* updates the bot cannot parse (:meth:`FakeBotAPI.queue_raw_update`,
  :meth:`FakeBotAPI.unparseable_update`), as when Telegram ships a newer Bot API than the
  bot's library knows;
* webhook delivery (:meth:`FakeBotAPI.post_update`), POSTing an update the way Telegram does.

Rate limits: Telegram allows a bot about one message per second in a private chat (bursts
are tolerated briefly, then 429), 20 per minute in a group and about 30 per second overall.
``FakeBotAPI(per_chat_rate=1, global_rate=30)`` enforces that strictly (``per_chat_rate=1/3``
models a group's 20/min): ten ``copyMessage`` calls to one chat in a burst get one success
and nine 429s with ``retry_after >= 1``. Every
method that puts messages into a chat counts once per call, so ``copyMessages`` or
``sendMediaGroup`` with a whole album is one rate-limit check.

Tests drive users with :meth:`FakeBotAPI.user_message` / :meth:`FakeBotAPI.press` and
observe the bot through :attr:`FakeBotAPI.calls` and :meth:`FakeBotAPI.wait_for`.
Run ``python -m tests.fakes.bot_api --port 8081`` for a standalone server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import itertools
import json
import math
import mimetypes
import re
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Self

from aiohttp import ClientSession, ClientTimeout, web

__all__ = ["DEFAULT_TOKEN", "Call", "FakeBotAPI"]

DEFAULT_TOKEN = "123456:TEST-token-for-the-fake-api"

Params = dict[str, Any]
Message = dict[str, Any]
Files = dict[str, tuple[str, bytes]]  # multipart field -> (filename, content)
Handler = Callable[[Params, Files], Awaitable[Any]]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Form values arrive as strings; these keys are converted to int when they look like one.
_INT_KEYS = _words(
    "chat_id from_chat_id message_id user_id offset limit timeout reply_to_message_id "
    "message_thread_id duration width height length cache_time live_period heading "
    "proximity_alert_radius until_date"
)
_FLOAT_KEYS = frozenset({"latitude", "longitude", "horizontal_accuracy"})
# Free text is never JSON/bool-decoded: a user may well type "[1]" or "true".
_TEXT_KEYS = _words(
    "text caption title description short_description first_name last_name phone_number vcard "
    "address question explanation data query emoji name url parse_mode callback_query_id "
    "inline_message_id file_id language_code switch_inline_query custom_title message_effect_id "
    "business_connection_id secret_token"
)
_INT_RE = re.compile(r"-?\d+")

_MEDIA_KINDS = (
    "photo",
    "document",
    "voice",
    "video",
    "audio",
    "animation",
    "sticker",
    "video_note",
)
# Everything copyMessage carries over from the source message.
_CONTENT_KEYS = (
    *_MEDIA_KINDS,
    *("text", "entities", "caption", "caption_entities", "location", "contact"),
    "has_media_spoiler",
)
_SEND_METHODS = frozenset(
    ["sendMessage", "sendLocation", "sendContact"]
    + ["send" + "".join(p.title() for p in kind.split("_")) for kind in _MEDIA_KINDS]
)
# Methods that put a new message into chat_id: rate limited, blocked-checked, sent_to().
_CONTENT_METHODS = _SEND_METHODS | {
    "copyMessage",
    "copyMessages",
    "forwardMessage",
    "sendMediaGroup",
}
# InputMedia types sendMediaGroup accepts; documents and audio can't be mixed with others.
_ALBUM_KINDS = ("photo", "video", "document", "audio")
_ALBUM_LIMIT = 10  # items per album (sendMediaGroup)
_COPY_LIMIT = 100  # message_ids per copyMessages call
_DEFAULT_UPDATES = _words(
    "message edited_message channel_post edited_channel_post business_connection business_message "
    "edited_business_message deleted_business_messages inline_query chosen_inline_result "
    "callback_query shipping_query pre_checkout_query purchased_paid_media poll poll_answer "
    "my_chat_member chat_join_request chat_boost removed_chat_boost"
)
# Methods whose whole effect, for a bot under test, is answering true.
_TRUE_METHODS = _words(
    "setChatMenuButton close logOut setMyDescription setMyShortDescription setMyName"
)
_HTML_TAGS = _words(
    "b strong i em u ins s strike del span tg-spoiler a code pre blockquote tg-emoji"
)
_HTML_TAG_RE = re.compile(r"<(/?)([A-Za-z][\w-]*)?[^<>]*>")
_MD_SKIP_RE = re.compile(r"```.*?```|`(?:\\.|[^`\\])*`|\]\((?:\\.|[^)\\])*\)", re.S)
_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
# What nginx in front of api.telegram.org answers when the backend is gone: not JSON at all.
_NGINX_ERROR_PAGE = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
    "</body>\r\n</html>\r\n"
)


class ApiError(Exception):
    """An error answer (``ok: false``); raised inside handlers, rendered by the router."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(f"{code} {description}")
        self.code, self.description, self.retry_after = code, description, retry_after

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code}
        body["description"] = self.description
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


@dataclass
class Call:
    """One request the bot made; ``params`` are normalised (ints, bools, decoded JSON)."""

    method: str
    params: Params
    result: Any = None
    at: float = 0.0
    index: int = 0
    ok: bool = True
    error_code: int | None = None
    description: str | None = None
    files: Files = field(default_factory=dict, repr=False)
    outage: bool = False  # failed because an outage was on (begin_outage / outage)

    @property
    def chat_id(self) -> Any:
        return self.params.get("chat_id")

    @property
    def text(self) -> str | None:
        """The message text or caption, whichever was sent."""
        value = self.params.get("text", self.params.get("caption"))
        return None if value is None else str(value)

    def summary(self) -> str:
        status = "ok" if self.ok else f"{self.error_code} {self.description}"
        if self.outage:
            status += " (outage)"
        text = f" text={self.text[:60]!r}" if self.text is not None else ""
        return f"#{self.index} {self.method} chat_id={self.chat_id}{text} -> {status}"


@dataclass(frozen=True)
class _Outage:
    code: int
    description: str
    methods: frozenset[str] | None  # lower-case names; None: every method
    include_get_updates: bool
    html: bool

    def covers(self, method: str) -> bool:
        name = method.lower()
        if name == "getupdates" and not self.include_get_updates:
            return False
        return self.methods is None or name in self.methods


class _OutageError(ApiError):
    """The answer during an outage; ``html`` renders nginx's error page instead of JSON."""

    def __init__(self, outage: _Outage) -> None:
        super().__init__(outage.code, outage.description)
        self.html = outage.html


# The six colours Telegram allows for a topic's icon (createForumTopic's icon_color).
_TOPIC_COLORS = (0x6FB9F0, 0xFFD67E, 0xCB86DB, 0x8EEE98, 0xFF93B2, 0xFB6F5F)


@dataclass
class _Topic:
    message_thread_id: int
    name: str
    icon_color: int
    closed: bool = False
    renames: list[str] = field(default_factory=list)


@dataclass
class _Forum:
    chat_id: int
    title: str
    is_forum: bool
    bot_status: str
    can_manage_topics: bool
    topics: dict[int, _Topic] = field(default_factory=dict)
    members: dict[int, str] = field(default_factory=dict)  # user id -> status


@dataclass
class _Failure:
    code: int
    description: str
    retry_after: int | None
    chat_id: int | None


class _Signal:
    """A broadcast wake-up that, unlike asyncio.Condition, can be fired from sync code.

    ``user_message()`` is synchronous but must wake a pending long poll immediately.
    Waiters check their state and then ``await wait()`` without yielding in between, so a
    notification can't be lost.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, seconds: float) -> None:
        """Return on the next notify() or after ``seconds``, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), max(seconds, 0))


class _Window:
    """Sliding-window limiter: at most ``capacity`` events per ``span`` seconds, O(1) amortised.

    Rates below 1/s widen the window (0.5/s = 1 message per 2 s) instead of rounding to 0.
    """

    __slots__ = ("capacity", "span", "stamps")

    def __init__(self, rate: float) -> None:
        self.span = max(1.0, 1.0 / rate)
        self.capacity = max(1, int(rate * self.span + 1e-9))
        self.stamps: deque[float] = deque()

    def retry_after(self, now: float) -> int | None:
        """Seconds to wait (>= 1) if one more event now would exceed the limit, else None."""
        while self.stamps and self.stamps[0] <= now - self.span:
            self.stamps.popleft()
        if len(self.stamps) < self.capacity:
            return None
        return max(1, math.ceil(self.stamps[0] + self.span - now))


def _utf16_len(text: str) -> int:
    """Telegram measures entity offsets/lengths in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _normalise(key: str, value: Any) -> Any:
    if not isinstance(value, str) or key in _TEXT_KEYS:
        return value
    if key in _INT_KEYS and _INT_RE.fullmatch(value):
        return int(value)
    if key in _FLOAT_KEYS:
        with contextlib.suppress(ValueError):
            return float(value)
    if value in ("true", "false"):
        return value == "true"
    if value.lstrip()[:1] in ("{", "["):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


def _render(text: str, parse_mode: Any) -> str:
    """Validate ``text`` like Telegram does and return the plain text users would see."""
    mode = str(parse_mode or "").lower()
    if mode == "html":
        stack: list[str] = []
        pos = text.find("<")
        while pos != -1:
            match = _HTML_TAG_RE.match(text, pos)
            offset = len(text[:pos].encode())
            name = (match.group(2) or "").lower() if match else ""
            if match is None or name not in _HTML_TAGS:
                raise _bad(
                    f'can\'t parse entities: Unsupported start tag "{name}" at byte offset {offset}'
                )
            if not match.group(1):
                stack.append(name)
            elif not stack or stack.pop() != name:
                raise _bad(f"can't parse entities: Unmatched end tag at byte offset {offset}")
            pos = text.find("<", match.end())
        if stack:
            raise _bad(
                "can't parse entities: Can't find end tag corresponding to start tag "
                f'"{stack[-1]}"'
            )
        return html.unescape(_HTML_TAG_RE.sub("", text))
    if mode == "markdownv2":
        scrubbed = _MD_SKIP_RE.sub("", text)
        i = 0
        while i < len(scrubbed):
            ch = scrubbed[i]
            if ch == "\\":
                i += 2
                continue
            if ch in "#+-={}.!()" or (ch == ">" and i > 0 and scrubbed[i - 1] != "\n"):
                raise _bad(
                    f"can't parse entities: Character '{ch}' is reserved and must be escaped "
                    "with the preceding '\\'"
                )
            i += 1
    return text


class FakeBotAPI:
    """In-process fake of https://api.telegram.org for one bot token. See module docstring."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        global_rate: float | None = None,
        per_chat_rate: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        check_parse_mode: bool = True,
    ) -> None:
        self.token = token
        self.host, self.port = host, port
        self.global_rate, self.per_chat_rate = global_rate, per_chat_rate
        self.check_parse_mode = check_parse_mode
        self.bot_user: dict[str, Any] = {
            "id": int(token.split(":", 1)[0]),
            "is_bot": True,
            "first_name": "ContactBot",
            "username": "contactbot_test_bot",
            "can_join_groups": False,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.calls: list[Call] = []
        self.blocked: set[int] = set()
        self.count_429 = 0
        self.discarded_updates: list[dict[str, Any]] = []  # filtered out by allowed_updates
        self.webhook_url = ""
        self.commands: dict[tuple[str, str], list[Any]] = {}
        self._pending: deque[dict[str, Any]] = deque()
        self._allowed = _DEFAULT_UPDATES
        self._next_update_id = 1
        self._poll_generation = 0
        self._messages: dict[int, dict[int, Message]] = {}
        self._last_message_id: dict[int, int] = {}
        self._users: dict[int, dict[str, Any]] = {}
        self._callback_ids: set[str] = set()
        self._files: Files = {}
        self._seq = 0
        self._failures: dict[str, deque[_Failure]] = {}
        self._outage: _Outage | None = None
        self._outage_timer: asyncio.TimerHandle | None = None
        self._global_window = _Window(global_rate) if global_rate else None
        self._chat_windows: dict[int, _Window] = {}
        self._updates_signal = _Signal()
        self._calls_signal = _Signal()
        self._inflight = 0
        self._last_activity = time.monotonic()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._methods: dict[str, tuple[str, Handler]] = {}
        for name in _TRUE_METHODS:
            self._route(name, self._true)
        for name, handler in {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "sendLocation": self._send_location,
            "sendContact": self._send_contact,
            "sendChatAction": self._send_chat_action,
            "copyMessage": self._copy_message,
            "copyMessages": self._copy_messages,
            "sendMediaGroup": self._send_media_group,
            "forwardMessage": self._forward_message,
            "editMessageText": self._edit_text,
            "editMessageCaption": self._edit_caption,
            "editMessageReplyMarkup": self._edit_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "getFile": self._get_file,
        }.items():
            self._route(name, handler)
        for kind in _MEDIA_KINDS:
            self._route("send" + kind.title().replace("_", ""), partial(self._send_media, kind))
        self._init_forums()
        self._init_inline()

    def _route(self, name: str, handler: Handler) -> None:
        self._methods[name.lower()] = (name, handler)

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """Base URL for ``TelegramAPIServer.from_base``."""
        if self._url is None:
            raise RuntimeError("FakeBotAPI is not started")
        return self._url

    async def start(self) -> None:
        self._closing = False
        # client_max_size: Telegram accepts 50 MB uploads; aiohttp's default is 1 MB.
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        app.router.add_post("/_fake/message", self._debug_message)
        app.router.add_post("/_fake/press", self._debug_press)
        app.router.add_get("/_fake/calls", self._debug_calls)
        # handler_cancellation: a long poll whose client went away (dp.stop_polling) must not
        # linger; shutdown_timeout: stop() should never wait a minute on a stuck handler.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=2.0, access_log=None
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        self._url = f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        self._closing = True
        self.end_outage()
        self._updates_signal.notify()  # pending long polls answer [] right away
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ HTTP plumbing

    async def _read_params(self, request: web.Request) -> tuple[Params, Files]:
        raw: dict[str, Any] = dict(request.query)
        files: Files = {}
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise _bad("can't parse JSON request body") from None
                if isinstance(body, dict):
                    raw.update(body)
            else:
                for key, value in (await request.post()).items():
                    if isinstance(value, web.FileField):
                        files[key] = (value.filename, value.file.read())
                    else:
                        raw[key] = value
        return {key: _normalise(key, value) for key, value in raw.items()}, files

    async def _handle(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        requested = request.match_info["method"]
        name, handler = self._methods.get(requested.lower(), (requested, None))
        background = name == "getUpdates"  # long polls don't count as bot activity
        if not background:
            self._inflight += 1
        call = Call(name, {}, at=at)
        html_page = False
        try:
            call.params, call.files = await self._read_params(request)
            if self._outage is not None and self._outage.covers(name):
                raise _OutageError(self._outage)
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            self._inject_failure(name, call.params)
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            if name in _CONTENT_METHODS:
                self._check_limits(call.params)
            call.result = await handler(call.params, call.files)
            body: dict[str, Any] = {"ok": True, "result": call.result}
            status = 200
        except ApiError as error:
            call.ok, call.error_code, call.description = False, error.code, error.description
            if isinstance(error, _OutageError):
                call.outage, html_page = True, error.html
            if error.code == 429:
                self.count_429 += 1
            body, status = error.body(), error.code
        except Exception as error:  # a bug in the fake: say so instead of a bare HTML 500
            call.ok, call.error_code = False, 500
            call.description = f"Internal Server Error: FakeBotAPI crashed: {error!r}"
            body, status = ApiError(500, call.description).body(), 500
        finally:
            if not background:
                self._inflight -= 1
        self._record(call, activity=not background)
        if html_page:
            reason = str(call.description)
            page = _NGINX_ERROR_PAGE.format(code=status, reason=reason)
            return web.Response(text=page, status=status, content_type="text/html")
        return web.json_response(body, status=status)

    def _record(self, call: Call, *, activity: bool) -> None:
        call.index = len(self.calls)
        self.calls.append(call)
        if activity:
            self._last_activity = time.monotonic()
        self._calls_signal.notify()

    def _inject_failure(self, method: str, params: Params) -> None:
        queue = self._failures.get(method.lower())
        if not queue:
            return
        for failure in queue:
            if failure.chat_id is None or failure.chat_id == params.get("chat_id"):
                queue.remove(failure)
                raise ApiError(failure.code, failure.description, failure.retry_after)

    def _check_limits(self, params: Params) -> None:
        """Rate limits first (Telegram counts the attempt), then the blocked list."""
        chat_id = params.get("chat_id")
        now = time.monotonic()
        chat_window = None
        if self.per_chat_rate and isinstance(chat_id, int):
            chat_window = self._chat_windows.get(chat_id)
            if chat_window is None:
                chat_window = self._chat_windows[chat_id] = _Window(self.per_chat_rate)
        windows = [w for w in (self._global_window, chat_window) if w is not None]
        waits = [wait for w in windows if (wait := w.retry_after(now)) is not None]
        if waits:
            retry = max(waits)
            raise ApiError(429, f"Too Many Requests: retry after {retry}", retry)
        for window in windows:
            window.stamps.append(now)
        if chat_id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(ApiError(401, "Unauthorized").body(), status=401)
        file_id = request.match_info["path"].removeprefix("files/")
        _, data = self._files.get(file_id, ("", f"fake file {file_id}".encode()))
        return web.Response(body=data)

    # Tiny control endpoints so the standalone server can be poked with curl.
    async def _debug_message(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(self.user_message(**await request.json()))
        except (TypeError, ValueError, LookupError) as error:
            return web.json_response({"error": str(error)}, status=400)

    async def _debug_press(self, request: web.Request) -> web.Response:
        try:
            return web.json_response({"callback_query_id": self.press(**await request.json())})
        except (TypeError, ValueError, LookupError) as error:
            return web.json_response({"error": str(error)}, status=400)

    async def _debug_calls(self, request: web.Request) -> web.Response:
        since = int(request.query.get("since", 0))
        return web.json_response([c.summary() for c in self.calls[since:]])

    # ------------------------------------------------------------------ test-side API

    def calls_of(self, method: str, chat_id: int | None = None) -> list[Call]:
        wanted = method.lower()
        return [
            c
            for c in self.calls
            if c.method.lower() == wanted and (chat_id is None or c.chat_id == chat_id)
        ]

    def sent_to(self, chat_id: int) -> list[Call]:
        """Successful calls that put a new message into ``chat_id``, in order."""
        return [
            c for c in self.calls if c.ok and c.method in _CONTENT_METHODS and c.chat_id == chat_id
        ]

    def mark(self) -> int:
        """The index the next call will get; pass it as ``since=`` to ignore earlier calls."""
        return len(self.calls)

    async def wait_for(
        self,
        method: str | None = None,
        *,
        chat_id: int | None = None,
        since: int = 0,
        timeout: float = 10.0,  # noqa: ASYNC109 - a deadline is the point of this helper
        text_contains: str | None = None,
        predicate: Callable[[Call], bool] | None = None,
    ) -> Call:
        """The first call (index >= since) matching every given filter; waits for new calls."""
        wanted = method.lower() if method else None

        def matches(c: Call) -> bool:
            return (
                (wanted is None or c.method.lower() == wanted)
                and (chat_id is None or c.chat_id == chat_id)
                and (text_contains is None or text_contains in (c.text or ""))
                and (predicate is None or predicate(c))
            )

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        index = since
        while True:
            while index < len(self.calls):
                call = self.calls[index]
                index += 1
                if matches(call):
                    return call
            remaining = deadline - loop.time()
            if remaining <= 0:
                wanted_desc = f"method={method!r} chat_id={chat_id!r} text~{text_contains!r}"
                recent = "\n  ".join(c.summary() for c in self.calls[-20:]) or "(none)"
                raise AssertionError(
                    f"no call matching {wanted_desc} (since #{since}) within {timeout}s; "
                    f"last calls:\n  {recent}"
                )
            await self._calls_signal.wait(remaining)

    async def wait_idle(self, quiet: float = 0.3, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until no request (other than getUpdates) ran or was in flight for ``quiet`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            idle_for = time.monotonic() - self._last_activity
            if self._inflight == 0 and idle_for >= quiet:
                return
            if loop.time() >= deadline:
                raise AssertionError(f"bot not idle for {quiet}s within {timeout}s")
            wait = quiet - idle_for if self._inflight == 0 else deadline - loop.time()
            await self._calls_signal.wait(min(wait, deadline - loop.time()))

    def fail_next(
        self,
        method: str,
        error_code: int,
        description: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
        *,
        chat_id: int | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (optionally only to ``chat_id``) with
        an error. A 429 always carries ``retry_after`` (default 1) so aiogram raises
        TelegramRetryAfter."""
        if error_code == 429 and retry_after is None:
            retry_after = 1
        if description is None:
            description = (
                f"Too Many Requests: retry after {retry_after}"
                if error_code == 429
                else _DEFAULT_DESCRIPTIONS.get(error_code, f"Error {error_code}")
            )
        failure = _Failure(error_code, description, retry_after, chat_id)
        self._failures.setdefault(method.lower(), deque()).extend([failure] * times)

    def begin_outage(
        self,
        code: int = 502,
        *,
        description: str | None = None,
        methods: Iterable[str] | None = None,
        include_get_updates: bool = True,
        html: bool = False,
    ) -> None:
        """Until :meth:`end_outage`, answer every request (only ``methods`` if given; getUpdates
        only while ``include_get_updates``) with HTTP ``code`` and Telegram's JSON error body,
        e.g. ``{"ok": false, "error_code": 502, "description": "Bad Gateway"}``: aiogram raises
        TelegramServerError. Long polls already waiting fail as well. ``html=True`` answers
        nginx's HTML error page instead, which aiogram can only report as ClientDecodeError.
        Failed calls are recorded with ``ok=False, error_code=code, outage=True``."""
        if not 500 <= code <= 599:
            raise ValueError("an outage answers a 5xx status; use fail_next() for others")
        self._cancel_outage_timer()
        self._outage = _Outage(
            code,
            description or _DEFAULT_DESCRIPTIONS.get(code, "Internal Server Error"),
            None if methods is None else frozenset(m.lower() for m in methods),
            include_get_updates,
            html,
        )
        self._updates_signal.notify()

    def end_outage(self) -> None:
        """Answer normally again (no-op if no outage is on)."""
        self._cancel_outage_timer()
        self._outage = None

    def outage(
        self,
        seconds: float,
        code: int = 502,
        methods: Iterable[str] | None = None,
        *,
        include_get_updates: bool = True,
        html: bool = False,
    ) -> None:
        """:meth:`begin_outage` now and :meth:`end_outage` after ``seconds`` (call it from
        inside the event loop)."""
        self.begin_outage(code, methods=methods, include_get_updates=include_get_updates, html=html)
        self._outage_timer = asyncio.get_running_loop().call_later(seconds, self.end_outage)

    @property
    def in_outage(self) -> bool:
        return self._outage is not None

    def outage_calls(self, method: str | None = None) -> list[Call]:
        """Calls (attempts) answered with the outage error, optionally of one method."""
        wanted = method.lower() if method else None
        return [
            c for c in self.calls if c.outage and (wanted is None or c.method.lower() == wanted)
        ]

    def _cancel_outage_timer(self) -> None:
        if self._outage_timer is not None:
            self._outage_timer.cancel()
            self._outage_timer = None

    def messages_in(self, chat_id: int) -> list[Message]:
        """Stored (not deleted) messages of a chat, oldest first. Treat them as read-only."""
        return list(self._messages.get(chat_id, {}).values())

    def message(self, chat_id: int, message_id: int) -> Message:
        try:
            return self._messages[chat_id][message_id]
        except KeyError:
            raise LookupError(f"no message {message_id} in chat {chat_id}") from None

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        return list(self._pending)

    def queue_update(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue any update type (``my_chat_member``, ``edited_message``, ...) for getUpdates."""
        return self.queue_raw_update({kind: payload})

    def queue_raw_update(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue ``payload`` as it is, with the next update_id (any ``update_id`` in it is
        replaced), e.g. ``{"message": {..., "chat": "not-an-object"}}``: nothing is validated,
        so the bot can be fed JSON its library cannot deserialise. The update's type is its
        first key; allowed_updates filtering applies as usual. Returns the queued update."""
        body = {k: v for k, v in payload.items() if k != "update_id"}
        if not body:
            raise ValueError("an update needs a field besides update_id")
        update = {"update_id": self._next_update_id, **body}
        self._next_update_id += 1
        self._pending.append(update)
        self._updates_signal.notify()
        return update

    def unparseable_update(self, user_id: int, *, first_name: str = "User") -> dict[str, Any]:
        """Queue a realistic update the bot cannot parse: a private message from ``user_id``
        (stored, taking the chat's next message_id) carrying a ``poll`` shaped for another Bot
        API version, without the required ``options`` and ``total_voter_count``. Real aiogram
        rejects the whole getUpdates answer with ClientDecodeError. Returns the update."""
        user = self._users.get(user_id) or self._register_user(user_id, first_name, None, "en")
        poll = {
            "id": str(self._next_seq() + 5 * 10**18),
            "question": "Which plan suits you?",
            "is_closed": False,
            "is_anonymous": True,
            "type": "regular",
            "allows_multiple_answers": False,
        }
        return self.queue_update("message", self._store(user_id, user, {"poll": poll}))

    async def post_update(self, url: str, update: dict[str, Any], secret: str | None = None) -> int:
        """POST ``update`` to a webhook ``url`` as Telegram does (JSON body, the secret in
        ``X-Telegram-Bot-Api-Secret-Token`` unless None) and return the HTTP status. An update
        without ``update_id`` gets the next one. getUpdates' queue is not involved."""
        if "update_id" not in update:
            update = {"update_id": self._next_update_id, **update}
            self._next_update_id += 1
        headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
        async with (
            ClientSession(timeout=ClientTimeout(total=60)) as http,
            http.post(url, json=update, headers=headers) as response,
        ):
            await response.read()
            return response.status

    def user_message(
        self,
        user_id: int,
        text: str | None = None,
        *,
        first_name: str = "User",
        username: str | None = None,
        language_code: str = "en",
        photo: bool | str = False,
        document: bool | str = False,
        voice: bool | str = False,
        caption: str | None = None,
        contact: dict[str, Any] | None = None,
        reply_to_message_id: int | None = None,
        media_group_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Message:
        """Queue a private message from a user; returns the message (with its message_id).

        ``photo``/``document``/``voice`` may be True (generated file_id) or a file_id.
        ``media_group_id`` marks the message as one item of an album (see :meth:`user_album`).
        ``extra`` is merged into the message for content types without a shortcut.
        """
        media = {"photo": photo, "document": document, "voice": voice}
        content: dict[str, Any] = {}
        for kind, value in media.items():
            if value:
                file_id = value if isinstance(value, str) else self._new_file_id(kind)
                content[kind] = self._media_field(kind, file_id, {})
        if content and text is not None:
            raise ValueError("a media message has no text; pass caption=")
        if text is not None:
            content["text"] = text
            if text.startswith("/"):
                command = text.split(maxsplit=1)[0]
                entity = {"type": "bot_command", "offset": 0, "length": _utf16_len(command)}
                content["entities"] = [entity]
        if caption is not None:
            content["caption"] = caption
        if contact is not None:
            content["contact"] = {"first_name": first_name, **contact}
        if reply_to_message_id is not None:
            content["reply_to_message"] = self._reply_target(user_id, reply_to_message_id)
        if media_group_id is not None:
            content["media_group_id"] = media_group_id
        content.update(extra or {})
        if not content:
            raise ValueError("user_message needs text, media, contact or extra")
        user = self._register_user(user_id, first_name, username, language_code)
        message = self._store(user_id, user, content)
        self.queue_update("message", message)
        return message

    def user_album(
        self,
        user_id: int,
        count: int = 2,
        caption: str | None = None,
        *,
        kind: str = "photo",
        media_group_id: str | None = None,
        first_name: str = "User",
        username: str | None = None,
        language_code: str = "en",
    ) -> list[Message]:
        """Queue an album the way Telegram delivers one: ``count`` separate message updates
        (consecutive message_ids) sharing a ``media_group_id``, each with its own generated
        file; the album's caption rides on the first item. ``kind``: photo, video, document
        or audio. Returns the messages in order."""
        if kind not in _ALBUM_KINDS:
            raise ValueError(f"an album holds {', '.join(_ALBUM_KINDS)}, not {kind}")
        if not 1 <= count <= _ALBUM_LIMIT:
            raise ValueError(f"an album has 1-{_ALBUM_LIMIT} items")
        group = media_group_id or self._new_media_group_id()
        return [
            self.user_message(
                user_id,
                first_name=first_name,
                username=username,
                language_code=language_code,
                caption=caption if i == 0 else None,
                media_group_id=group,
                extra={kind: self._media_field(kind, self._new_file_id(kind), {})},
            )
            for i in range(count)
        ]

    def press(self, user_id: int, message_id: int, data: str, *, first_name: str = "User") -> str:
        """Queue a callback_query for an inline button under a stored message in the user's chat;
        returns the callback query id."""
        message = self.message(user_id, message_id)
        user = self._users.get(user_id) or self._register_user(user_id, first_name, None, "en")
        query_id = str(self._next_seq() + 10**15)
        self._callback_ids.add(query_id)
        query = {
            "id": query_id,
            "from": user,
            "chat_instance": f"ci{user_id}",
            "message": message,
            "data": data,
        }
        self.queue_update("callback_query", query)
        return query_id

    # ------------------------------------------------------------------ state helpers

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _new_file_id(self, kind: str) -> str:
        return f"FAKE-{kind}-{self._next_seq()}"

    def _new_media_group_id(self) -> str:
        return str(13 * 10**15 + self._next_seq())  # Telegram's look like "13584731293051873"

    def _register_user(
        self, user_id: int, first_name: str, username: str | None, language_code: str
    ) -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        user["language_code"] = language_code
        self._users[user_id] = user
        return user

    def _chat(self, chat_id: int) -> dict[str, Any]:
        if chat_id < 0:
            kind = "supergroup" if str(chat_id).startswith("-100") else "group"
            group = {"id": chat_id, "type": kind, "title": f"Chat {chat_id}"}
            forum = self.forums.get(chat_id)
            if forum is not None:
                group["title"] = forum.title
                if forum.is_forum:
                    group["is_forum"] = True
            return group
        user = self._users.get(chat_id, {})
        chat = {"id": chat_id, "type": "private", "first_name": user.get("first_name", "User")}
        if "username" in user:
            chat["username"] = user["username"]
        return chat

    def _store(self, chat_id: int, sender: dict[str, Any], content: dict[str, Any]) -> Message:
        """Append a message to a chat. Stored dicts are replaced, never mutated, on edit, so
        updates and call results that reference them keep the state of their moment."""
        message_id = self._last_message_id.get(chat_id, 0) + 1
        self._last_message_id[chat_id] = message_id
        message = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": self._chat(chat_id),
            "from": sender,
            **content,
        }
        self._messages.setdefault(chat_id, {})[message_id] = message
        return message

    def _reply_target(self, chat_id: int, message_id: int) -> Message:
        target = self.message(chat_id, message_id)
        return {k: v for k, v in target.items() if k != "reply_to_message"}

    def _media_field(self, kind: str, file_id: str, info: dict[str, Any]) -> Any:
        """The Message field for a file, in the shape Telegram uses for ``kind``."""
        base = {"file_id": file_id, "file_unique_id": f"U{file_id}"[:32]}
        size = info.get("file_size", 1024)
        name = info.get("file_name") or "document.pdf"
        shapes: dict[str, dict[str, Any]] = {
            "photo": {"width": 1280, "height": 960, "file_size": size},
            "document": {
                "file_name": name,
                "mime_type": mimetypes.guess_type(name)[0] or "application/octet-stream",
                "file_size": size,
            },
            "voice": {"duration": 3, "mime_type": "audio/ogg", "file_size": size},
            "video": {"width": 640, "height": 480, "duration": 5, "file_size": size},
            "audio": {"duration": 30, "file_size": size},
            "animation": {"width": 320, "height": 240, "duration": 2, "file_size": size},
            "sticker": {"type": "regular", "width": 512, "height": 512}
            | {"is_animated": False, "is_video": False},
            "video_note": {"length": 240, "duration": 5, "file_size": size},
        }
        value = base | shapes[kind]
        return [value] if kind == "photo" else value

    def _chat_id(self, params: Params, key: str = "chat_id") -> int:
        chat_id = params.get(key)
        if chat_id is None or chat_id == "":
            raise _bad(f"{key} is empty")
        if not isinstance(chat_id, int):
            raise _bad("chat not found")
        return chat_id

    def _text(self, params: Params, key: str, limit: int) -> str | None:
        text = params.get(key)
        if text is None:
            return None
        text = str(text)
        if self.check_parse_mode:
            text = _render(text, params.get("parse_mode"))
        if len(text) > limit:
            raise _bad("message is too long" if key == "text" else "message caption is too long")
        return text

    def _deliver(self, params: Params, content: dict[str, Any]) -> Message:
        """Store a bot message in params' chat with the options every send method shares."""
        chat_id = self._chat_id(params)
        content.update(self._thread_of(chat_id, params))  # forum topics (block below)
        markup = params.get("reply_markup")
        # Only inline keyboards come back in Message.reply_markup (aiogram's model is
        # InlineKeyboardMarkup-only); reply keyboards just change the user's client.
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            content["reply_markup"] = markup
        if params.get("protect_content"):
            content["has_protected_content"] = True
        reply = params.get("reply_parameters")
        reply_id = reply.get("message_id") if isinstance(reply, dict) else None
        reply_id = reply_id or params.get("reply_to_message_id")
        if reply_id:
            try:
                content["reply_to_message"] = self._reply_target(chat_id, reply_id)
            except LookupError:
                allow = params.get("allow_sending_without_reply") or (
                    isinstance(reply, dict) and reply.get("allow_sending_without_reply")
                )
                if not allow:
                    raise _bad("message to be replied not found") from None
        return self._store(chat_id, self.bot_user, content)

    def _resolve_file(self, kind: str, params: Params, files: Files) -> tuple[str, dict[str, Any]]:
        value = params.get(kind)
        if not value or not isinstance(value, str):
            raise _bad(f"there is no {kind} in the request")
        if value.startswith("attach://"):
            upload = files.get(value.removeprefix("attach://"))
            if upload is None:
                raise _bad(f"file {value} not found in the request")
            file_id = self._new_file_id(kind)
            self._files[file_id] = upload
            return file_id, {"file_name": upload[0], "file_size": len(upload[1])}
        if value.startswith(("http://", "https://")):
            return self._new_file_id(kind), {}
        stored = self._files.get(value)
        return value, {"file_name": stored[0], "file_size": len(stored[1])} if stored else {}

    # ------------------------------------------------------------------ method handlers

    async def _true(self, params: Params, _files: Any) -> Any:
        return True

    async def _get_me(self, params: Params, _files: Any) -> Any:
        return self.bot_user

    async def _get_updates(self, params: Params, _files: Any) -> Any:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = params.get("offset")
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = max(float(params.get("timeout") or 0), 0.0)
        if "allowed_updates" in params:
            self._allowed = frozenset(params["allowed_updates"] or ()) or _DEFAULT_UPDATES
        # A new poll terminates the previous one with 409, like Telegram does.
        self._poll_generation += 1
        generation = self._poll_generation
        self._updates_signal.notify()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._outage is not None and self._outage.covers("getUpdates"):
                raise _OutageError(self._outage)  # a long poll in flight fails too
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )
            if isinstance(offset, int):
                self._confirm(offset)
            batch = self._take(limit)
            remaining = deadline - loop.time()
            if batch or self._closing or remaining <= 0:
                return batch
            await self._updates_signal.wait(remaining)

    def _confirm(self, offset: int) -> None:
        if offset < 0:
            while len(self._pending) > -offset:
                self._pending.popleft()
            return
        while self._pending and self._pending[0]["update_id"] < offset:
            self._pending.popleft()

    def _take(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` pending updates; ones not in allowed_updates are discarded, since
        Telegram would never have delivered them (a classic "my button does nothing" bug)."""
        if any(self._update_kind(u) not in self._allowed for u in self._pending):
            kept: deque[dict[str, Any]] = deque()
            for update in self._pending:
                if self._update_kind(update) in self._allowed:
                    kept.append(update)
                else:
                    self.discarded_updates.append(update)
            self._pending = kept
        return list(itertools.islice(self._pending, limit))

    @staticmethod
    def _update_kind(update: dict[str, Any]) -> str:
        return next(key for key in update if key != "update_id")

    async def _set_webhook(self, params: Params, _files: Any) -> Any:
        self.webhook_url = str(params.get("url") or "")
        return True

    async def _delete_webhook(self, params: Params, _files: Any) -> Any:
        self.webhook_url = ""
        if params.get("drop_pending_updates"):
            self._pending.clear()
        return True

    async def _get_webhook_info(self, params: Params, _files: Any) -> Any:
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }

    @staticmethod
    def _commands_key(params: Params) -> tuple[str, str]:
        scope = json.dumps(params.get("scope") or {"type": "default"}, sort_keys=True)
        return scope, str(params.get("language_code") or "")

    async def _set_my_commands(self, params: Params, _files: Any) -> Any:
        self.commands[self._commands_key(params)] = list(params.get("commands") or [])
        return True

    async def _get_my_commands(self, params: Params, _files: Any) -> Any:
        return self.commands.get(self._commands_key(params), [])

    async def _delete_my_commands(self, params: Params, _files: Any) -> Any:
        self.commands.pop(self._commands_key(params), None)
        return True

    async def _send_message(self, params: Params, _files: Any) -> Any:
        text = self._text(params, "text", 4096)
        if not text:
            raise _bad("message text is empty")
        content: dict[str, Any] = {"text": text}
        if params.get("entities"):
            content["entities"] = params["entities"]
        return self._deliver(params, content)

    async def _send_media(self, kind: str, params: Params, files: Files) -> Any:
        file_id, info = self._resolve_file(kind, params, files)
        content: dict[str, Any] = {kind: self._media_field(kind, file_id, info)}
        if kind == "animation":  # Telegram also fills `document` for animations
            content["document"] = self._media_field("document", file_id, info)
        caption = self._text(params, "caption", 1024)
        if caption:
            content["caption"] = caption
            if params.get("caption_entities"):
                content["caption_entities"] = params["caption_entities"]
        if params.get("has_spoiler"):
            content["has_media_spoiler"] = True
        return self._deliver(params, content)

    async def _send_location(self, params: Params, _files: Any) -> Any:
        location = {"latitude": params.get("latitude"), "longitude": params.get("longitude")}
        if not all(isinstance(v, int | float) and v is not True for v in location.values()):
            raise _bad("latitude and longitude must be numbers")
        return self._deliver(params, {"location": location})

    async def _send_contact(self, params: Params, _files: Any) -> Any:
        if not params.get("phone_number") or not params.get("first_name"):
            raise _bad("phone_number and first_name are required")
        keys = ("phone_number", "first_name", "last_name", "vcard", "user_id")
        contact = {k: params[k] for k in keys if params.get(k) is not None}
        return self._deliver(params, {"contact": contact})

    async def _send_chat_action(self, params: Params, _files: Any) -> Any:
        if self._chat_id(params) in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return True

    def _source(self, params: Params, missing: str) -> Message:
        from_chat = self._chat_id(params, "from_chat_id")
        try:
            return self.message(from_chat, int(params.get("message_id") or 0))
        except LookupError:
            raise _bad(missing) from None

    async def _copy_message(self, params: Params, _files: Any) -> Any:
        source = self._source(params, "message to copy not found")
        content = {k: source[k] for k in _CONTENT_KEYS if k in source}
        has_media = any(kind in source for kind in _MEDIA_KINDS)
        if has_media and "caption" in params:
            content.pop("caption_entities", None)
            caption = self._text(params, "caption", 1024)
            content.pop("caption", None)
            if caption:
                content["caption"] = caption
            if params.get("caption_entities"):
                content["caption_entities"] = params["caption_entities"]
        return {"message_id": self._deliver(params, content)["message_id"]}

    @staticmethod
    def _message_ids(params: Params) -> list[int]:
        """copyMessages' ``message_ids``, checked like the Bot API server checks them."""
        raw = params.get("message_ids")
        if raw is None or raw == "":
            raise _bad("message identifiers are not specified")
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                raise _bad("can't parse message_ids JSON object") from None
        if not isinstance(raw, list):
            raise _bad("expected an Array of message identifiers")
        if len(raw) > _COPY_LIMIT:
            raise _bad("too many message identifiers specified")
        ids: list[int] = []
        for item in raw:
            if isinstance(item, bool) or not isinstance(item, int | float | str):
                raise _bad("message identifier must be a Number")
            if not _INT_RE.fullmatch(str(item)):
                raise _bad("can't parse message identifier as a Number")
            if int(item) <= 0:
                raise _bad("invalid message identifier specified")
            ids.append(int(item))
        if not ids:
            raise _bad("message identifiers are not specified")
        if any(later <= earlier for earlier, later in itertools.pairwise(ids)):
            raise _bad("message identifiers must be in a strictly increasing order")
        return ids

    async def _copy_messages(self, params: Params, _files: Any) -> Any:
        """Like Telegram: missing ids are skipped (only all missing is an error), each album
        copied gets one new media_group_id, and the answer is a list of MessageId."""
        self._chat_id(params)
        from_chat = self._chat_id(params, "from_chat_id")
        stored = self._messages.get(from_chat, {})
        sources = [stored[i] for i in self._message_ids(params) if i in stored]
        if not sources:
            raise _bad("there are no messages to forward")  # sic: Telegram's wording
        groups: dict[str, str] = {}
        copied: list[dict[str, int]] = []
        for source in sources:
            content = {k: source[k] for k in _CONTENT_KEYS if k in source}
            if params.get("remove_caption") and any(kind in source for kind in _MEDIA_KINDS):
                content.pop("caption", None)
                content.pop("caption_entities", None)
            if "media_group_id" in source:
                group = source["media_group_id"]
                if group not in groups:
                    groups[group] = self._new_media_group_id()
                content["media_group_id"] = groups[group]
            copied.append({"message_id": self._deliver(params, content)["message_id"]})
        return copied

    async def _send_media_group(self, params: Params, files: Files) -> Any:
        media = params.get("media")
        if media is None or media == "":
            raise _bad('parameter "media" is required')
        if isinstance(media, str):
            try:
                media = json.loads(media)
            except ValueError:
                raise _bad("can't parse media JSON object") from None
        if not isinstance(media, list):
            raise _bad("expected an Array of InputMedia")
        if not media:
            raise _bad("there are no messages to send")
        if len(media) > _ALBUM_LIMIT:
            raise _bad("too many messages to send as an album")
        for item in media:
            if not isinstance(item, dict):
                raise _bad("can't parse InputMedia: expected an Object")
            kind = item.get("type")
            if kind not in _ALBUM_KINDS:
                why = (
                    "can't be used in sendMediaGroup" if kind in _MEDIA_KINDS else "is unsupported"
                )
                raise _bad(f'can\'t parse InputMedia: type "{kind}" {why}')
        kinds = [item["type"] for item in media]
        for alone in ("document", "audio"):
            if alone in kinds and any(kind != alone for kind in kinds):
                raise _bad(f"{alone} can't be mixed with other media types")
        group = self._new_media_group_id()
        contents: list[dict[str, Any]] = []
        for item in media:  # validate every item before storing any message
            kind = item["type"]
            try:
                file_id, info = self._resolve_file(kind, {kind: item.get("media")}, files)
            except ApiError:
                raise _bad("can't parse InputMedia: media not found") from None
            content: dict[str, Any] = {
                kind: self._media_field(kind, file_id, info),
                "media_group_id": group,
            }
            caption = self._text(item, "caption", 1024)
            if caption:
                content["caption"] = caption
                if item.get("caption_entities"):
                    content["caption_entities"] = item["caption_entities"]
            if item.get("has_spoiler"):
                content["has_media_spoiler"] = True
            contents.append(content)
        return [self._deliver(params, content) for content in contents]

    async def _forward_message(self, params: Params, _files: Any) -> Any:
        source = self._source(params, "message to forward not found")
        content = {k: source[k] for k in _CONTENT_KEYS if k in source}
        sender = source.get("from") or self.bot_user
        content["forward_origin"] = {"type": "user", "date": source["date"], "sender_user": sender}
        return self._deliver(params, content)

    def _editable(self, params: Params) -> Message | None:
        """The stored bot message an edit targets; None for inline messages."""
        if params.get("inline_message_id"):
            return None
        chat_id = self._chat_id(params)
        try:
            message = self.message(chat_id, int(params.get("message_id") or 0))
        except LookupError:
            raise _bad("message to edit not found") from None
        if message.get("from", {}).get("id") != self.bot_user["id"]:
            raise _bad("message can't be edited")
        return message

    def _replace(self, old: Message, changes: dict[str, Any], params: Params) -> Message:
        """Apply an edit. Like Telegram, an edit without reply_markup drops the keyboard, and
        an edit that changes nothing is an error bots must handle."""
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            changes["reply_markup"] = markup
        new = {k: v for k, v in old.items() if k not in ("reply_markup", "edit_date", *changes)}
        new.update({k: v for k, v in changes.items() if v is not None})
        if new == {k: v for k, v in old.items() if k != "edit_date"}:
            raise _bad(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        new["edit_date"] = int(time.time())
        self._messages[old["chat"]["id"]][old["message_id"]] = new
        return new

    async def _edit_text(self, params: Params, _files: Any) -> Any:
        message = self._editable(params)
        text = self._text(params, "text", 4096)
        if not text:
            raise _bad("message text is empty")
        if message is None:
            return True
        if "text" not in message:
            raise _bad("there is no text in the message to edit")
        return self._replace(message, {"text": text, "entities": params.get("entities")}, params)

    async def _edit_caption(self, params: Params, _files: Any) -> Any:
        message = self._editable(params)
        if message is None:
            return True
        if not any(kind in message for kind in _MEDIA_KINDS):
            raise _bad("there is no caption in the message to edit")
        caption = self._text(params, "caption", 1024) or None
        changes = {"caption": caption, "caption_entities": params.get("caption_entities")}
        return self._replace(message, changes, params)

    async def _edit_reply_markup(self, params: Params, _files: Any) -> Any:
        message = self._editable(params)
        return True if message is None else self._replace(message, {}, params)

    async def _delete_message(self, params: Params, _files: Any) -> Any:
        chat_id = self._chat_id(params)
        if self._messages.get(chat_id, {}).pop(int(params.get("message_id") or 0), None) is None:
            raise _bad("message to delete not found")
        return True

    async def _answer_callback_query(self, params: Params, _files: Any) -> Any:
        query_id = str(params.get("callback_query_id") or "")
        if query_id not in self._callback_ids:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        self._callback_ids.discard(query_id)
        return True

    async def _get_file(self, params: Params, _files: Any) -> Any:
        file_id = str(params.get("file_id") or "")
        if not file_id:
            raise _bad("file_id is empty")
        _, data = self._files.get(file_id, ("", b"x" * 1024))
        return {
            "file_id": file_id,
            "file_unique_id": f"U{file_id}"[:32],
            "file_size": len(data),
            "file_path": f"files/{file_id}",
        }

    # ================================================================== forum topics
    # Topics mode of the agents' desk (and, later, inline queries): a forum supergroup with
    # topics, the bot's rights in it, topic management, messages in topics and edits.
    # Configure a group with :meth:`make_forum`; agents write in it with :meth:`group_message`
    # (and press its buttons with :meth:`press_in`); :meth:`edit_user_message` queues an
    # ``edited_message`` from a user (in a private chat or a group).

    def _init_forums(self) -> None:
        self.forums: dict[int, _Forum] = {}
        for name, handler in {
            "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
            "createForumTopic": self._create_forum_topic,
            "editForumTopic": self._edit_forum_topic,
            "closeForumTopic": self._close_forum_topic,
            "reopenForumTopic": self._reopen_forum_topic,
        }.items():
            self._route(name, handler)

    def make_forum(
        self,
        chat_id: int,
        *,
        title: str = "Support desk",
        is_forum: bool = True,
        bot_status: str = "administrator",
        can_manage_topics: bool = True,
    ) -> _Forum:
        """A supergroup (id -100...) the bot is in; ``bot_status`` "administrator" or
        "member", ``is_forum`` whether topics are enabled."""
        forum = _Forum(chat_id, title, is_forum, bot_status, can_manage_topics)
        self.forums[chat_id] = forum
        return forum

    def topic(self, chat_id: int, thread_id: int) -> _Topic:
        return self.forums[chat_id].topics[thread_id]

    def topics_of(self, chat_id: int) -> list[_Topic]:
        return list(self.forums[chat_id].topics.values())

    def _forum(self, params: Params) -> _Forum:
        chat_id = self._chat_id(params)
        forum = self.forums.get(chat_id)
        if forum is None:
            raise _bad("chat not found")
        return forum

    def _thread_of(self, chat_id: int, params: Params) -> dict[str, Any]:
        """What a message sent with ``message_thread_id`` carries, checked like Telegram."""
        thread = params.get("message_thread_id")
        if not thread:
            return {}
        forum = self.forums.get(chat_id)
        if forum is None or not forum.is_forum:
            # Telegram ignores the id outside forums.
            return {}
        topic = forum.topics.get(int(thread))
        if topic is None:
            raise _bad("message thread not found")
        if topic.closed and forum.bot_status != "administrator":
            raise _bad("TOPIC_CLOSED")
        return {"message_thread_id": topic.message_thread_id, "is_topic_message": True}

    def _rights(self, forum: _Forum) -> None:
        if not forum.is_forum:
            raise _bad("the chat is not a forum")
        if forum.bot_status != "administrator" or not forum.can_manage_topics:
            raise _bad("not enough rights to manage topics")

    async def _get_chat(self, params: Params, _files: Any) -> Any:
        chat_id = self._chat_id(params)
        if chat_id < 0 and chat_id not in self.forums:
            raise _bad("chat not found")
        chat = self._chat(chat_id)
        return (
            chat
            | {"accent_color_id": 0, "max_reaction_count": 11}
            | {
                "accepted_gift_types": {
                    "unlimited_gifts": False,
                    "limited_gifts": False,
                    "unique_gifts": False,
                    "premium_subscription": False,
                    "gifts_from_channels": False,
                }
            }
        )

    async def _get_chat_member(self, params: Params, _files: Any) -> Any:
        forum = self._forum(params)
        user_id = params.get("user_id")
        if user_id != self.bot_user["id"]:
            user = self._users.get(int(user_id or 0))
            if user is None:
                raise _bad("user not found")
            status = forum.members.get(user["id"], "member")
            return {"status": status, "user": user}
        if forum.bot_status != "administrator":
            return {"status": forum.bot_status, "user": self.bot_user}
        rights = dict.fromkeys(
            _words(
                "can_manage_chat can_delete_messages can_manage_video_chats can_restrict_members "
                "can_change_info can_invite_users can_post_stories can_edit_stories "
                "can_delete_stories can_pin_messages"
            ),
            True,
        )
        return {
            "status": "administrator",
            "user": self.bot_user,
            "can_be_edited": False,
            "is_anonymous": False,
            "can_promote_members": False,
            "can_send_welcome_messages": False,
            "can_manage_topics": forum.can_manage_topics,
            **rights,
        }

    async def _create_forum_topic(self, params: Params, _files: Any) -> Any:
        forum = self._forum(params)
        self._rights(forum)
        name = str(params.get("name") or "")
        if not 1 <= len(name) <= 128:
            raise _bad("TOPIC_TITLE_EMPTY" if not name else "TOPIC_TITLE_INVALID")
        color = int(params.get("icon_color") or _TOPIC_COLORS[0])
        if color not in _TOPIC_COLORS:
            raise _bad("TOPIC_ICON_COLOR_INVALID")
        # The topic's id is the id of its creation service message, as in Telegram.
        created = {"name": name, "icon_color": color}
        service = self._store(forum.chat_id, self.bot_user, {"forum_topic_created": created})
        thread = int(service["message_id"])
        service["message_thread_id"] = thread
        service["is_topic_message"] = True
        forum.topics[thread] = _Topic(thread, name, color)
        return {"message_thread_id": thread, "name": name, "icon_color": color}

    def _topic_of(self, params: Params) -> tuple[_Forum, _Topic]:
        forum = self._forum(params)
        self._rights(forum)
        topic = forum.topics.get(int(params.get("message_thread_id") or 0))
        if topic is None:
            raise _bad("TOPIC_ID_INVALID")
        return forum, topic

    async def _edit_forum_topic(self, params: Params, _files: Any) -> Any:
        _forum, topic = self._topic_of(params)
        name = params.get("name")
        if name is not None and not 1 <= len(str(name)) <= 128:
            raise _bad("TOPIC_TITLE_INVALID")
        if name is None or str(name) == topic.name:
            raise _bad("TOPIC_NOT_MODIFIED")
        topic.name = str(name)
        topic.renames.append(topic.name)
        return True

    async def _close_forum_topic(self, params: Params, _files: Any) -> Any:
        _forum, topic = self._topic_of(params)
        if topic.closed:
            raise _bad("TOPIC_NOT_MODIFIED")
        topic.closed = True
        return True

    async def _reopen_forum_topic(self, params: Params, _files: Any) -> Any:
        _forum, topic = self._topic_of(params)
        if not topic.closed:
            raise _bad("TOPIC_NOT_MODIFIED")
        topic.closed = False
        return True

    def group_message(
        self,
        chat_id: int,
        user_id: int,
        text: str | None = None,
        *,
        thread_id: int | None = None,
        first_name: str = "Agent",
        photo: bool | str = False,
        caption: str | None = None,
        media_group_id: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> Message:
        """Queue a message from a user in a group (in topic ``thread_id`` if given). As in
        Telegram, a message in a topic that replies to nothing replies to the topic's
        creation message and carries ``is_topic_message`` and ``message_thread_id``."""
        user = self._users.get(user_id) or self._register_user(user_id, first_name, None, "en")
        content: dict[str, Any] = {}
        if photo:
            file_id = photo if isinstance(photo, str) else self._new_file_id("photo")
            content["photo"] = self._media_field("photo", file_id, {})
            if caption is not None:
                content["caption"] = caption
        elif text is not None:
            content["text"] = text
            if text.startswith("/"):
                command = text.split(maxsplit=1)[0]
                entity = {"type": "bot_command", "offset": 0, "length": _utf16_len(command)}
                content["entities"] = [entity]
        else:
            raise ValueError("group_message needs text or a photo")
        if media_group_id is not None:
            content["media_group_id"] = media_group_id
        if thread_id is not None:
            self.topic(chat_id, thread_id)  # it must exist
            content["message_thread_id"] = thread_id
            content["is_topic_message"] = True
            target = reply_to_message_id or thread_id
            content["reply_to_message"] = self._reply_target(chat_id, target)
        elif reply_to_message_id is not None:
            content["reply_to_message"] = self._reply_target(chat_id, reply_to_message_id)
        message = self._store(chat_id, user, content)
        self.queue_update("message", message)
        return message

    def edit_user_message(self, chat_id: int, message_id: int, text: str) -> Message:
        """A user edits their message (text, or a media message's caption): the stored
        message changes and an ``edited_message`` update is queued."""
        old = self.message(chat_id, message_id)
        key = "caption" if any(kind in old for kind in _MEDIA_KINDS) else "text"
        new = {k: v for k, v in old.items() if k not in ("entities", "caption_entities")}
        new[key] = text
        new["edit_date"] = int(time.time())
        self._messages[chat_id][message_id] = new
        self.queue_update("edited_message", new)
        return new

    def press_in(self, chat_id: int, user_id: int, message_id: int, data: str) -> str:
        """Like :meth:`press`, for a button under a message in a group."""
        message = self.message(chat_id, message_id)
        user = self._users.get(user_id) or self._register_user(user_id, "Agent", None, "en")
        query_id = str(self._next_seq() + 10**15)
        self._callback_ids.add(query_id)
        query = {
            "id": query_id,
            "from": user,
            "chat_instance": f"ci{chat_id}",
            "message": message,
            "data": data,
        }
        self.queue_update("callback_query", query)
        return query_id

    # ============================================================== end of forum topics

    # ================================================================== inline mode
    # Canned replies in inline mode (issue 17): a user types "@bot words" (:meth:`inline_query`
    # queues the inline_query update), the bot answers with answerInlineQuery (checked as
    # Telegram checks it: a known query id answered once, at most 50 results with unique ids,
    # an article's title and message text, the text's parse mode), and the user picks one
    # (:meth:`choose_inline_result`): the result's text arrives as the user's own message
    # with ``via_bot``, in the chat the query came from.

    def _init_inline(self) -> None:
        # query id -> (user id, chat the query was typed in); answers by query id.
        self._inline_queries: dict[str, tuple[int, int | None]] = {}
        self.inline_answers: dict[str, dict[str, Any]] = {}
        self._route("answerInlineQuery", self._answer_inline_query)

    def inline_query(
        self,
        user_id: int,
        query: str = "",
        *,
        chat_type: str = "sender",
        chat_id: int | None = None,
        first_name: str = "User",
    ) -> str:
        """Queue an inline query typed by ``user_id`` (``chat_type`` "sender": in their chat
        with the bot; else in ``chat_id``); returns its id."""
        user = self._users.get(user_id) or self._register_user(user_id, first_name, None, "en")
        query_id = str(self._next_seq() + 2 * 10**15)
        where = user_id if chat_type == "sender" else chat_id
        self._inline_queries[query_id] = (user_id, where)
        body = {"id": query_id, "from": user, "query": query, "offset": "", "chat_type": chat_type}
        self.queue_update("inline_query", body)
        return query_id

    def inline_results(self, query_id: str) -> list[dict[str, Any]]:
        """The results the bot answered ``query_id`` with (KeyError: not answered)."""
        return list(self.inline_answers[query_id]["results"])

    def choose_inline_result(self, query_id: str, result_id: str) -> Message:
        """The user picks a result: its message goes into the chat the query came from, as
        the user's message sent via the bot. Returns the message."""
        user_id, chat_id = self._inline_queries[query_id]
        result = next(r for r in self.inline_results(query_id) if str(r["id"]) == result_id)
        content = result["input_message_content"]
        text = _render(str(content["message_text"]), content.get("parse_mode"))
        if chat_id is None:
            raise ValueError("the query was not typed in a known chat")
        message = self._store(
            chat_id, self._users[user_id], {"text": text, "via_bot": self.bot_user}
        )
        self.queue_update("message", message)
        return message

    async def _answer_inline_query(self, params: Params, _files: Any) -> Any:
        query_id = str(params.get("inline_query_id") or "")
        if query_id not in self._inline_queries or query_id in self.inline_answers:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        results = params.get("results")
        if not isinstance(results, list):
            raise _bad("RESULTS_INVALID")
        if len(results) > 50:
            raise _bad("RESULTS_TOO_MUCH")
        seen: set[str] = set()
        for r in results:
            rid = str(r.get("id") or "")
            if not 1 <= len(rid.encode()) <= 64:
                raise _bad("RESULT_ID_INVALID")
            if rid in seen:
                raise _bad("RESULT_ID_DUPLICATE")
            seen.add(rid)
            if r.get("type") == "article":
                content = r.get("input_message_content") or {}
                if not r.get("title"):
                    raise _bad("RESULT_TITLE_EMPTY")
                text = content.get("message_text")
                if not text:
                    raise _bad("MESSAGE_EMPTY")
                if self.check_parse_mode:
                    plain = _render(str(text), content.get("parse_mode"))
                    if len(plain) > 4096:
                        raise _bad("MESSAGE_TOO_LONG")
        self.inline_answers[query_id] = dict(params)
        return True

    # ============================================================== end of inline mode


async def _serve(args: argparse.Namespace) -> None:
    api = FakeBotAPI(
        args.token,
        host=args.host,
        port=args.port,
        global_rate=args.global_rate,
        per_chat_rate=args.per_chat_rate,
    )
    await api.start()
    print(f"Fake Telegram Bot API at {api.url}\ntoken: {api.token}", flush=True)
    print(
        f'simulate a user: curl -d \'{{"user_id": 42, "text": "/start"}}\' '
        f"-H 'Content-Type: application/json' {api.url}/_fake/message\n"
        f"see the bot's calls: curl {api.url}/_fake/calls",
        flush=True,
    )
    stopped = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stopped.set)
    try:
        await stopped.wait()
    finally:
        await api.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake Telegram Bot API server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--global-rate", type=float, default=None)
    parser.add_argument("--per-chat-rate", type=float, default=None)
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
