"""What customers read about announcements (``contactbot broadcast``): the replies to
``/stop_news`` and ``/start_news``. The announcements themselves are the operator's text,
sent as written. Every text is a function translating at call time (see :mod:`bot.texts`).
"""

from __future__ import annotations

from bot.i18n import _


def stopped() -> str:
    return _(
        "You will receive no more announcements from us. Send /start_news to receive them "
        "again. (Surveys have their own switch: /stop_surveys.)"
    )


def started() -> str:
    return _("Announcements are on again. Send /stop_news to turn them off.")
