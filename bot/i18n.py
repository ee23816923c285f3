"""Translation entry points for every user-facing string.

``_`` translates now (inside a handler, where the I18n middleware has chosen the locale);
``__`` is the lazy form for module-level constants. Outside an I18n context (CLI, unit
tests) both return the English source text, so code never crashes for lack of a locale.
"""

from __future__ import annotations

from typing import Any

from aiogram.utils.i18n import I18n


def gettext(singular: str, plural: str | None = None, n: int = 1, locale: str | None = None) -> str:
    i18n = I18n.get_current(no_error=True)
    if i18n is None:
        return singular if plural is None or n == 1 else plural
    return i18n.gettext(singular, plural, n, locale)


def lazy_gettext(singular: str, plural: str | None = None, n: int = 1) -> Any:
    from babel.support import LazyProxy

    return LazyProxy(gettext, singular, plural, n, enable_cache=False)


_ = gettext
__ = lazy_gettext
