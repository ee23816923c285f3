"""The bot's HTTP session: aiogram's aiohttp session with a JSON body and a JSON-native answer.

Every Bot API call the bot makes goes through here, so its cost is paid about 1.25 times per
handled update (``bench pipeline``). aiogram's ``AiohttpSession`` sends each call as a form:
every nested value (a keyboard, entities) is JSON-encoded field by field and the whole form is
then percent-encoded byte by byte in Python by aiohttp; the answer is decoded with
``json.loads`` and the resulting dicts validated into models. Telegram takes the same fields
as an ``application/json`` body (``json.dumps`` is C), and pydantic validates the answer
straight from its JSON text (``model_validate_json``, in Rust): together about a quarter less
CPU per call (bench/RESULTS.md, issue 19's fifth round).

What is sent is what aiogram's form carries: the same fields, the same defaults resolved
(``Default`` values from the bot's properties), fields aiogram leaves out (``None``, empty)
left out. A call that uploads a file goes through aiogram's form unchanged; errors map through
aiogram's own ``check_response`` (so ``TelegramRetryAfter``, ``TelegramForbiddenError``, ...
are raised exactly as before), and network errors are aiogram's ``TelegramNetworkError``.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast

from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods.base import Response, TelegramMethod, TelegramType
from aiohttp import ClientError
from pydantic import ValidationError

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.types import InputFile

JSON_HEADERS = {"Content-Type": "application/json"}
# ``Response[T]`` per method class: pydantic's own lookup of a parametrised generic costs
# more than the dict (bot.app.pin_answer_types keeps the classes themselves alive).
_ANSWERS: dict[type[Any], Any] = {}


class LeanSession(AiohttpSession):
    """``AiohttpSession`` with a JSON request body and an answer validated from its JSON."""

    def json_body(self, bot: Bot, method: TelegramMethod[Any]) -> str | None:
        """The call's fields as one JSON object, or None when it uploads a file (a form is
        then the only way). Values are prepared by aiogram's ``prepare_value`` (defaults,
        enums, dates, nested objects), left as objects rather than JSON strings."""
        files: dict[str, InputFile] = {}
        fields: dict[str, Any] = {}
        # The fields as set (``__dict__``) plus extras: what ``model_dump`` gives at the top
        # level, without its copy of every nested object, which ``prepare_value`` dumps anyway.
        values = method.__dict__
        if method.__pydantic_extra__:
            values = {**values, **method.__pydantic_extra__}
        for key, value in values.items():
            prepared = self.prepare_value(value, bot=bot, files=files, _dumps_json=False)
            # aiogram's form leaves out exactly these (every other value is a non-empty string
            # there: False is "false", 0 is "0", [] is "[]").
            if prepared is None or prepared == "":
                continue
            fields[key] = prepared
        if files:
            return None
        return self.json_dumps(fields)

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109 - aiogram's signature
    ) -> TelegramType:
        body = self.json_body(bot, method)
        if body is None:
            return await super().make_request(bot, method, timeout)
        status, raw = await self.post_json(
            bot, method.__api_method__, body, lambda: method, timeout=timeout
        )
        if status == HTTPStatus.OK:
            answer = _ANSWERS.get(type(method))
            if answer is None:
                answer = _ANSWERS[type(method)] = Response[method.__returning__]  # type: ignore[name-defined]
            try:
                response = answer.model_validate_json(raw, context={"bot": bot})
            except ValidationError:
                pass  # aiogram's own path below raises its ClientDecodeError for it
            else:
                if response.ok:
                    return cast(TelegramType, response.result)
        response = self.check_response(bot=bot, method=method, status_code=status, content=raw)
        return cast(TelegramType, response.result)

    async def post_json(
        self,
        bot: Bot,
        api_method: str,
        body: str,
        describe: Callable[[], TelegramMethod[Any]],
        *,
        timeout: int | None = None,  # noqa: ASYNC109 - aiogram's per-call timeout
    ) -> tuple[int, str]:
        """POST a JSON ``body`` to ``api_method``: (HTTP status, the answer's text). A timeout
        or a network error raises aiogram's ``TelegramNetworkError`` naming ``describe()``
        (the call, built only then). The one home of the request for every JSON call, the
        push sender's lean ``sendMessage`` included (bot/adapters/survey_transport.py)."""
        session = await self.create_session()
        url = self.api.api_url(token=bot.token, method=api_method)
        try:
            async with session.post(
                url,
                data=body,
                headers=JSON_HEADERS,
                timeout=self.timeout if timeout is None else timeout,  # type: ignore[arg-type]
            ) as resp:
                return resp.status, await resp.text()
        except TimeoutError as error:
            raise TelegramNetworkError(
                method=describe(), message="Request timeout error"
            ) from error
        except ClientError as error:
            message = f"{type(error).__name__}: {error}"
            raise TelegramNetworkError(method=describe(), message=message) from error
