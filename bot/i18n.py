"""Translation: gettext catalogs (Babel) through aiogram's I18n, and the locale of each update.

``_`` translates now (inside a handler, where :class:`LocaleMiddleware` has chosen the
locale); ``__`` is the lazy form; ``N_`` only marks a string for extraction (translate it
later with ``_(VALUE)``). Outside an I18n context (CLI, unit tests) ``_`` returns the
English source text, so code never crashes for lack of a locale.

Catalogs: ``bot/locales/<locale>/LC_MESSAGES/contactbot.po`` (and the compiled ``.mo``
shipped beside it). After adding or changing strings anywhere in ``bot/``::

    python -m bot.i18n update     # extract every _()/__()/N_() string into each .po
    (translate the new entries in bot/locales/zh_Hans/LC_MESSAGES/contactbot.po)
    python -m bot.i18n compile    # write the .mo files
    python -m bot.i18n check      # what tests/unit/test_i18n.py checks: complete, compiled
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18n, I18nMiddleware

from routing.policy.selfservice_parts import normalise_language

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
DOMAIN = "contactbot"
ROOT = Path(__file__).resolve().parents[1]
# Where user-facing strings live. routing/ and surveys/ are scanned too, in case.
SOURCE_DIRS = ("bot", "routing", "surveys")
FIX_HINT = (
    "run `python -m bot.i18n update`, translate the new entries in "
    "bot/locales/zh_Hans/LC_MESSAGES/contactbot.po, then `python -m bot.i18n compile`"
)


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


# --- catalogs: extract / update / compile / check ------------------------------------------
_SINGULAR = {"_": None, "__": None, "N_": None, "gettext": None, "lazy_gettext": None}
_PLURAL = {"_": (1, 2), "__": (1, 2), "gettext": (1, 2), "lazy_gettext": (1, 2)}
_PLACEHOLDER = re.compile(r"\{(\w*)[^{}]*\}")


def extract(root: Path = ROOT) -> Any:
    """Every translatable string in the source, as a Babel catalog (the template)."""
    from babel.messages.catalog import Catalog
    from babel.messages.extract import extract_from_dir

    template = Catalog(project="contactbot", domain=DOMAIN, charset="utf-8")
    found: dict[str, tuple[Any, list[tuple[str, int]], list[str]]] = {}
    for sub in SOURCE_DIRS:
        base = root / sub
        if not base.is_dir():
            continue
        for keywords in (_PLURAL, _SINGULAR):
            for filename, lineno, message, comments, _ctx in extract_from_dir(
                base, method_map=[("**.py", "python")], keywords=keywords, comment_tags=("i18n:",)
            ):
                key = message[0] if isinstance(message, tuple) else message
                loc = (f"{sub}/{filename}", lineno)
                if key in found:
                    msg, locs, comm = found[key]
                    if isinstance(message, tuple):
                        msg = message
                    if loc not in locs:
                        locs.append(loc)
                    found[key] = (msg, locs, comm)
                else:
                    found[key] = (message, [loc], list(comments))
    for key in sorted(found):
        msg, locs, comments = found[key]
        template.add(msg, locations=sorted(locs), auto_comments=comments)
    return template


def _po_path(locale: str) -> Path:
    return LOCALES_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


def locales() -> list[str]:
    return sorted(p.parent.parent.name for p in LOCALES_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def _read(locale: str) -> Any:
    from babel.messages.pofile import read_po

    with _po_path(locale).open("rb") as f:
        return read_po(f, locale=locale, domain=DOMAIN)


def _write_po(catalog: Any, path: Path) -> None:
    from babel.messages.pofile import write_po

    buf = io.BytesIO()
    # No line numbers: several people edit the sources, and a moved line is no change.
    catalog.fuzzy = False
    write_po(
        buf,
        catalog,
        width=100,
        sort_output=True,
        omit_header=False,
        ignore_obsolete=True,
        include_lineno=False,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def update(root: Path = ROOT) -> dict[str, int]:
    """Merge the source's strings into every catalog; returns untranslated counts."""
    template = extract(root)
    result: dict[str, int] = {}
    for locale in locales():
        catalog = _read(locale)
        catalog.update(template, no_fuzzy_matching=True)
        _write_po(catalog, _po_path(locale))
        result[locale] = len(untranslated(catalog)) if locale != "en" else 0
    return result


def untranslated(catalog: Any) -> list[str]:
    out = []
    for m in catalog:
        if not m.id:
            continue
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        if m.fuzzy or not all(strings):
            out.append(m.id[0] if isinstance(m.id, tuple) else m.id)
    return out


def compiled(locale: str) -> bytes:
    from babel.messages.mofile import write_mo

    buf = io.BytesIO()
    write_mo(buf, _read(locale), use_fuzzy=False)
    return buf.getvalue()


def _mo_content(data: bytes) -> dict[tuple[Any, Any], Any]:
    """The messages a compiled catalog holds, without its header.

    The header records the Babel version and the compile date, so two .mo files built from
    the same .po by different Babel releases differ byte for byte; what a reader sees does not.
    """
    from babel.messages.mofile import read_mo

    return {(m.id, m.context): m.string for m in read_mo(io.BytesIO(data)) if m.id}


def compile_all() -> list[Path]:
    written = []
    for locale in locales():
        mo = _po_path(locale).with_suffix(".mo")
        mo.write_bytes(compiled(locale))
        written.append(mo)
    return written


def problems(root: Path = ROOT, translate: Sequence[str] = ("zh_Hans",)) -> list[str]:
    """What is wrong with the catalogs, one line each (empty: all good)."""
    out: list[str] = []
    source = {m.id if isinstance(m.id, str) else m.id[0]: m for m in extract(root) if m.id}
    for locale in locales():
        catalog = _read(locale)
        have = {m.id if isinstance(m.id, str) else m.id[0]: m for m in catalog if m.id}
        missing = sorted(set(source) - set(have))
        for msgid in missing:
            out.append(f"{locale}: not in the catalog: {msgid!r}")
        if locale in translate:
            for msgid in untranslated(catalog):
                if msgid in source:
                    out.append(f"{locale}: no translation for {msgid!r}")
            for msgid, m in have.items():
                strings = m.string if isinstance(m.string, tuple) else (m.string,)
                want = set(_PLACEHOLDER.findall(msgid))
                for s in strings:
                    if s and set(_PLACEHOLDER.findall(s)) != want:
                        out.append(f"{locale}: placeholders differ in the translation of {msgid!r}")
        mo = _po_path(locale).with_suffix(".mo")
        if not mo.exists() or _mo_content(mo.read_bytes()) != _mo_content(compiled(locale)):
            out.append(f"{locale}: {mo.relative_to(root)} is not compiled from the current .po")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bot.i18n", description="gettext catalogs")
    p.add_argument(
        "action",
        choices=["extract", "update", "compile", "check"],
        help="extract: list the source's strings; update: merge them into every .po; "
        "compile: write the .mo files; check: report missing translations and stale .mo",
    )
    args = p.parse_args(argv)
    if args.action == "extract":
        for m in extract():
            if m.id:
                print(m.id if isinstance(m.id, str) else m.id[0])
        return 0
    if args.action == "update":
        for locale, n in update().items():
            print(f"{_po_path(locale).relative_to(ROOT)}: {n} untranslated")
        return 0
    if args.action == "compile":
        for path in compile_all():
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    found = problems()
    for line in found:
        print(line)
    if found:
        print(f"\nTo fix: {FIX_HINT}.", file=sys.stderr)
        return 1
    print("catalogs complete and compiled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
