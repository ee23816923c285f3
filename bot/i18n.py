"""Translation at run time: gettext catalogs (Babel) through aiogram's I18n, and the locale
of each update.

``_`` translates now (inside a handler, where :class:`LocaleMiddleware` has chosen the
locale); ``__`` is the lazy form; ``N_`` only marks a string for extraction (translate it
later with ``_(VALUE)``). Outside an I18n context (CLI, unit tests) ``_`` returns the
English source text, so code never crashes for lack of a locale. The bot's words
themselves live in ``bot/texts/``.

Catalogs: ``bot/locales/<locale>/LC_MESSAGES/contactbot.po`` and the compiled ``.mo``
shipped beside it (the bot reads only the ``.mo``). Extracting, updating, compiling and
checking them is development work, done by ``tools/i18n.py``::

    python -m tools.i18n update     # extract every _()/__()/N_() string into each .po
    (translate the new entries in bot/locales/zh_Hans/LC_MESSAGES/contactbot.po)
    python -m tools.i18n compile    # write the .mo files
    python -m tools.i18n check      # what tests/unit/test_i18n.py checks: complete, compiled
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18n, I18nMiddleware

from routing.policy.selfservice_parts import normalise_language

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
DOMAIN = "contactbot"


def gettext(singular: str, plural: str | None = None, n: int = 1, locale: str | None = None) -> str:
    i18n = I18n.get_current(no_error=True)
    if i18n is None:
        return singular if plural is None or n == 1 else plural
    return i18n.gettext(singular, plural, n, locale)


def lazy_gettext(singular: str, plural: str | None = None, n: int = 1) -> Any:
    from babel.support import LazyProxy

    return LazyProxy(gettext, singular, plural, n, enable_cache=False)


def noop(message: str) -> str:
    """Marks a string for extraction without translating it (translate it with ``_`` later)."""
    return message


_ = gettext
__ = lazy_gettext
N_ = noop


# --- locale choice --------------------------------------------------------------------
def make_i18n(default_locale: str = "en") -> I18n:
    return I18n(path=LOCALES_DIR, default_locale=default_locale, domain=DOMAIN)


def choose_locale(
    *,
    record_language: str | None,
    is_guest: bool,
    telegram_language: str | None,
    available: Sequence[str],
    default: str,
) -> str:
    """The customer record's language, else Telegram's ``language_code``, else the default.

    A guest's "record" language is only a copy of their language_code from first contact, so
    for guests the current language_code wins: switching Telegram's language switches ours.
    """
    order = (
        (telegram_language, record_language) if is_guest else (record_language, telegram_language)
    )
    for code in order:
        locale = normalise_language(code, available)
        if locale is not None:
            return locale
    return default


def customer_locale(customer: Any, i18n: I18n) -> str:
    """A customer's locale when they are not the one writing (an agent's message to them)."""
    return choose_locale(
        record_language=getattr(customer, "language", None),
        is_guest=False,
        telegram_language=None,
        available=i18n.available_locales,
        default=i18n.default_locale,
    )


class LocaleMiddleware(I18nMiddleware):
    """Chooses each update's locale. Registered after ``DbSessionMiddleware`` (which puts
    ``customer``/``agent`` in the data). Agents are served in the default language: the
    desk's working language, in which notifications about any customer reach them."""

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        customer = data.get("customer")
        user: User | None = data.get("event_from_user")
        if data.get("agent") is not None:
            return self.i18n.default_locale
        return choose_locale(
            record_language=getattr(customer, "language", None),
            is_guest=bool(getattr(customer, "is_guest", True)),
            telegram_language=user.language_code if user else None,
            available=self.i18n.available_locales,
            default=self.i18n.default_locale,
        )

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        locale = await self.get_locale(event, data)
        data["locale"] = locale
        with self.i18n.context(), self.i18n.use_locale(locale):
            return await handler(event, data)


def current_locale() -> str:
    i18n = I18n.get_current(no_error=True)
    return i18n.current_locale if i18n is not None else "en"


@contextmanager
def speaking(locale: str | None) -> Iterator[None]:
    """Translate into ``locale`` inside the block (e.g. a message to the other party).

    ``locale`` may be any language tag (``zh-CN``, ``en_GB``: normalised; unknown ones mean
    the default language). Works inside an update (where the middleware set a context) and
    outside one (scheduler jobs, e.g. a survey push: ``with speaking(push.language):``);
    with ``None`` it changes nothing.
    """
    if locale is None:
        yield
        return
    i18n = I18n.get_current(no_error=True)
    context = i18n is None
    if i18n is None:
        i18n = _shared_i18n()
    name = normalise_language(locale, i18n.available_locales) or i18n.default_locale
    if context:
        with i18n.context(), i18n.use_locale(name):
            yield
        return
    with i18n.use_locale(name):
        yield


_SHARED: list[I18n] = []


def _shared_i18n() -> I18n:
    # Catalogs are read-only package data: loading them once per process is enough.
    if not _SHARED:
        _SHARED.append(make_i18n())
    return _SHARED[0]


@contextmanager
def for_customer(customer: Any) -> Iterator[None]:
    """``with for_customer(c):`` speak the customer's language (when an agent acts)."""
    i18n = I18n.get_current(no_error=True) or _shared_i18n()
    with speaking(customer_locale(customer, i18n)):
        yield


@contextmanager
def for_agents() -> Iterator[None]:
    """``with for_agents():`` speak the desk's default language (when a customer acts)."""
    i18n = I18n.get_current(no_error=True) or _shared_i18n()
    with speaking(i18n.default_locale):
        yield
