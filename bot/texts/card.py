"""The customer card agents read: at a hand-over, in a care reminder, atop a forum topic.

One rendering for every place it appears, from :class:`routing.care.card.Card` (data only).
Agents are served in the desk's language; stored values (names, categories, order ids) are
escaped, never interpreted as markup. Every text is a function (see :mod:`bot.texts`).
"""

from __future__ import annotations

from html import escape

from bot.i18n import _
from routing.care.card import Card
from routing.store.models import Customer


def _money(cents_or_units: float) -> str:
    return f"{cents_or_units:,.0f}"


def _who(customer: Customer) -> str:
    name = customer.name or (_("guest") if customer.is_guest else customer.external_id or "?")
    return escape(name)


def _trend(card: Card) -> str:
    if card.peak is not None and card.peak - card.score >= 0.05:
        return _("down {points} from {peak}").format(
            points=f"{card.peak - card.score:.1f}", peak=f"{card.peak:.1f}"
        )
    if card.below_count > 0:
        return _("below its tier in {n} evaluation(s): a downgrade is pending").format(
            n=card.below_count
        )
    return _("steady")


def customer_card(card: Card, *, path: str | None = None, question: str | None = None) -> str:
    """The card as one HTML message: who, tier and score, manager, language, last orders,
    last CSAT, open complaints, and (at a hand-over) the self-service path and question."""
    c = card.customer
    lines = [
        _("<b>{who}</b> · {tier} · score {score} ({trend})").format(
            who=_who(c), tier=escape(c.tier), score=f"{card.score:.1f}", trend=_trend(card)
        ),
        _("Customer {id} · manager {manager} · language {language}").format(
            id=escape(c.external_id or _("none (guest)")),
            manager=escape(c.account_manager or _("none")),
            language=escape(c.language or "?"),
        ),
        _("12-month spend {spend}").format(spend=_money(c.spend_12m)),
    ]
    if card.last_change is not None:
        ch = card.last_change
        lines.append(
            _("Last tier change: {from_tier} → {to_tier} on {day}").format(
                from_tier=escape(ch.from_tier or "-"),
                to_tier=escape(ch.to_tier),
                day=ch.changed_at.date().isoformat(),
            )
        )
    if card.orders:
        shown = "; ".join(
            f"{escape(o.order_id)} {_money(o.amount_cents / 100)} {o.ordered_at.date().isoformat()}"
            for o in card.orders
        )
        lines.append(_("Last orders: {orders}").format(orders=shown))
    else:
        lines.append(_("Last orders: none"))
    if card.last_csat is not None and card.last_csat.score is not None:
        lines.append(_("Last CSAT: {score}/5").format(score=card.last_csat.score))
    else:
        lines.append(_("Last CSAT: none"))
    if card.open_complaints:
        cases = ", ".join(
            f"#{k.id} {escape(k.category)} ({escape(k.status)})" for k in card.open_complaints
        )
        lines.append(_("Open complaints: {cases}").format(cases=cases))
    if path:
        lines.append(_("Self-service path: {path}").format(path=escape(path)))
    if question:
        lines.append(_("Asked: {question}").format(question=escape(question)))
    return "\n".join(lines)
