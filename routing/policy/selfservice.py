"""The self-service section of the policy: a menu tree, FAQ entries, per-tier access.

A business edits this in the policy file without code, so everything that can go wrong in a
file (a menu item naming nothing, menus that contain each other, a text missing a language,
an unknown tier, malformed opening hours) is a load-time error that names the node, never a
crash in the middle of a chat.

Node ids, not paths, go into Telegram's callback data (64 bytes at most): ids are limited to
40 characters of ``A-Za-z0-9_.-``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from routing.policy.base import Strict
from routing.policy.check import Problem, no_such_tier
from routing.policy.selfservice_parts import (
    HUMAN,
    ActionNode,
    FaqEntry,
    LocalText,
    MenuNode,
    NodeId,
    SearchPolicy,
    TierAccess,
    _canonical_key,
)


def _t(en: str, zh: str) -> dict[str, str]:
    return {"en": en, "zh_Hans": zh}


class SelfServicePolicy(Strict):
    # Locale names every table-form text must cover; the first is the default language.
    languages: tuple[str, ...] = ("en", "zh_Hans")
    root: NodeId = "main"
    # Defaults are the shipped tree: a file that sets only some keys keeps the rest.
    faq: tuple[FaqEntry, ...] = Field(default_factory=lambda: _default_faq())
    menus: dict[str, MenuNode] = Field(default_factory=lambda: _default_menus())
    actions: dict[str, ActionNode] = Field(default_factory=lambda: _default_actions())
    tiers: dict[str, TierAccess] = Field(default_factory=lambda: _default_tiers())
    search: SearchPolicy = Field(default_factory=lambda: SearchPolicy())
    # "my orders" lists this many of the most recent orders.
    recent_orders: int = Field(default=5, ge=1, le=20)
    # A self-service session ends after this many minutes without activity; one that ends
    # without a hand-off to a person counts as deflected.
    session_minutes: int = Field(default=30, ge=1)

    @field_validator("languages", mode="before")
    @classmethod
    def _langs(cls, v: Any) -> Any:
        if isinstance(v, list | tuple):  # non-strings are left to the type check
            return tuple(_canonical_key(x) if isinstance(x, str) else x for x in v)
        return v

    @model_validator(mode="after")
    def _check(self) -> SelfServicePolicy:
        if not self.languages:
            raise ValueError("languages: at least one language")
        ids: dict[str, str] = {}
        for kind, names in (
            ("faq entry", [f.id for f in self.faq]),
            ("menu", list(self.menus)),
            ("action", list(self.actions)),
        ):
            for name in names:
                if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
                    raise ValueError(f"{kind} {name!r}: ids are 1-40 characters of A-Za-z0-9_.-")
                if name == HUMAN:
                    raise ValueError(
                        f"{kind} {name!r}: the id 'human' is reserved for the hand-off"
                    )
                if name in ids:
                    if ids[name] == kind:
                        raise ValueError(f"duplicate {kind.split()[0]} id {name!r}")
                    raise ValueError(f"{kind} {name!r}: id already used by a {ids[name]}")
                ids[name] = kind
        for where, text in self._texts():
            self._check_text(where, text)
        if self.root not in self.menus:
            raise ValueError(f"root: {self.root!r} is not a menu (menus: {sorted(self.menus)})")
        for name, menu in self.menus.items():
            for item in menu.items:
                if item != HUMAN and item not in ids:
                    raise ValueError(
                        f"menu {name!r}: item {item!r} is not a menu, faq entry or action"
                    )
            if len(set(menu.items)) != len(menu.items):
                raise ValueError(f"menu {name!r}: an item is listed twice")
        self._check_cycles()
        for tier, access in self.tiers.items():
            if access.menu is not None and access.menu not in self.menus:
                raise ValueError(f"tiers.{tier}.menu: {access.menu!r} is not a menu")
        return self

    def _texts(self) -> Iterator[tuple[str, LocalText]]:
        for f in self.faq:
            yield f"faq entry {f.id!r} question", f.question
            yield f"faq entry {f.id!r} answer", f.answer
        for name, m in self.menus.items():
            yield f"menu {name!r} title", m.title
            yield f"menu {name!r} text", m.text
        for name, a in self.actions.items():
            yield f"action {name!r} title", a.title
        for name, t in self.tiers.items():
            if t.benefits:
                yield f"tiers.{name}.benefits", t.benefits

    def _check_text(self, where: str, text: LocalText) -> None:
        if isinstance(text, str):
            if not text.strip():
                raise ValueError(f"{where}: empty text")
            return
        missing = [lang for lang in self.languages if not text.get(lang, "").strip()]
        if missing:
            raise ValueError(f"{where}: missing translation for {', '.join(missing)}")
        extra = sorted(set(text) - set(self.languages))
        if extra:
            raise ValueError(
                f"{where}: language {', '.join(extra)} is not in selfservice.languages "
                f"{list(self.languages)}"
            )

    def _check_cycles(self) -> None:
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done

        def visit(name: str, path: list[str]) -> None:
            state[name] = 1
            for item in self.menus[name].items:
                if item not in self.menus:
                    continue
                if state.get(item) == 1:
                    loop = [*path[path.index(item) :], item] if item in path else [name, item]
                    raise ValueError(f"menu {item!r}: cycle {' -> '.join(loop)}")
                if item not in state:
                    visit(item, [*path, item])
            state[name] = 2

        for name in self.menus:
            if name not in state:
                visit(name, [name])

    def tier_problems(self, tier_names: Iterable[str]) -> list[Problem]:
        """Tier names used here that the policy does not define (called by the Policy, which
        knows the tiers). Only what the file sets: the shipped benefits name the shipped
        tiers, and with renamed tiers they just go unused."""
        names = tuple(tier_names)
        found: list[Problem] = []
        if "tiers" in self.model_fields_set:
            found += [(("tiers", t), no_such_tier(names)) for t in self.tiers if t not in names]
        nodes: list[tuple[tuple[str | int, ...], tuple[str, ...]]] = [
            *((("faq", i, "tiers"), f.tiers) for i, f in enumerate(self.faq)),
            *((("menus", n, "tiers"), m.tiers) for n, m in self.menus.items()),
            *((("actions", n, "tiers"), a.tiers) for n, a in self.actions.items()),
        ]
        for loc, tiers in nodes:
            found += [(loc, no_such_tier(names, t)) for t in tiers if t not in names]
        return found

    # --- lookups --------------------------------------------------------------------
    @property
    def default_language(self) -> str:
        return self.languages[0]

    def text(self, value: LocalText, language: str | None) -> str:
        if isinstance(value, str):
            return value
        if language and language in value:
            return value[language]
        return value.get(self.default_language) or next(iter(value.values()), "")

    def entry(self, node_id: str) -> FaqEntry | None:
        return next((f for f in self.faq if f.id == node_id), None)

    def access(self, tier: str) -> TierAccess:
        return self.tiers.get(tier) or TierAccess()

    def root_for(self, tier: str) -> str:
        return self.access(tier).menu or self.root

    def visible(self, node_id: str, tier: str) -> bool:
        tiers: tuple[str, ...]
        if node_id == HUMAN:
            return self.access(tier).human != "never"
        if node_id in self.menus:
            tiers = self.menus[node_id].tiers
        elif node_id in self.actions:
            tiers = self.actions[node_id].tiers
        elif (e := self.entry(node_id)) is not None:
            tiers = e.tiers
        else:
            return False
        return not tiers or tier in tiers

    def parents(self) -> dict[str, str]:
        """Each node's menu for the Back button: the first menu listing it, breadth-first
        from the root (a node may sit in several menus; ids, not paths, travel in buttons)."""
        parent: dict[str, str] = {}
        order = [self.root, *(m for m in self.menus if m != self.root)]
        for start in order:
            if start in parent and start != self.root:
                continue
            queue = [start]
            while queue:
                name = queue.pop(0)
                for item in self.menus[name].items:
                    if item not in parent and item != self.root:
                        parent[item] = name
                        if item in self.menus:
                            queue.append(item)
        return parent


def default_selfservice() -> SelfServicePolicy:
    """The shipped menu tree and FAQ (contactbot.example.toml is a copy of this)."""
    return SelfServicePolicy()


def _default_faq() -> tuple[FaqEntry, ...]:
    return (
        FaqEntry(
            id="hours",
            question=_t("Opening hours", "营业时间"),
            answer=_t(
                "Our team answers chats 24/7, weekends included.",
                "我们的团队全天候（24/7）回复消息，周末也不例外。",
            ),
            keywords={
                "en": ("open", "opening", "hours", "time", "when", "closed", "weekend"),
                "zh_Hans": ("几点", "时间", "上班", "周末", "营业"),
            },
        ),
        FaqEntry(
            id="delivery",
            question=_t("Delivery times", "配送时间"),
            answer=_t(
                "Orders ship within 2 business days; delivery takes 3-5 days.",
                "订单在 2 个工作日内发货，配送需要 3-5 天。",
            ),
            keywords={
                "en": ("delivery", "shipping", "ship", "arrive", "parcel", "package", "late"),
                "zh_Hans": ("发货", "快递", "物流", "配送", "到货", "包裹"),
            },
        ),
        FaqEntry(
            id="returns",
            question=_t("Returns", "退货"),
            answer=_t(
                "You can return any item within 30 days of delivery.",
                "收货后 30 天内可以退回任何商品。",
            ),
            keywords={
                "en": ("return", "send back", "exchange", "wrong size", "broken"),
                "zh_Hans": ("退货", "换货", "退回", "尺码"),
            },
        ),
        FaqEntry(
            id="refunds",
            question=_t("Refunds", "退款"),
            answer=_t(
                "Refunds reach your original payment method within 5 business days "
                "of our receiving the return.",
                "我们收到退货后 5 个工作日内，退款将退回您原来的支付方式。",
            ),
            keywords={
                "en": ("refund", "money back", "reimburse"),
                "zh_Hans": ("退款", "退钱", "返还"),
            },
        ),
        FaqEntry(
            id="payment",
            question=_t("Payment methods", "付款方式"),
            answer=_t(
                "We accept cards, bank transfer, PayPal, Alipay and WeChat Pay.",
                "我们接受银行卡、银行转账、PayPal、支付宝和微信支付。",
            ),
            keywords={
                "en": (
                    "pay",
                    "payment",
                    "credit card",
                    "paypal",
                    "alipay",
                    "wechat",
                    "invoice",
                ),
                "zh_Hans": ("付款", "支付", "支付宝", "微信", "信用卡"),
            },
        ),
        FaqEntry(
            id="address",
            question=_t("Change my address", "修改地址"),
            answer=_t(
                "Send us the new address before your order ships and we will change it; "
                "after shipping, the carrier's tracking page lets you redirect it.",
                "请在订单发货前把新地址发给我们，我们会为您修改；发货后可在快递的跟踪页面改派。",
            ),
            keywords={
                "en": ("address", "move", "moved", "change", "redirect"),
                "zh_Hans": ("地址", "改地址", "搬家", "收货地址"),
            },
        ),
    )


def _default_menus() -> dict[str, MenuNode]:
    return {
        "main": MenuNode(
            title=_t("Main menu", "主菜单"),
            text=_t(
                "Hello! Pick a topic below, ask your question in your own words, or "
                "talk to a person.",
                "您好！请选择下面的主题，直接输入您的问题，或联系人工客服。",
            ),
            items=("hours", "orders", "account", "payment", "complaint", HUMAN),
        ),
        "orders": MenuNode(
            title=_t("Orders and delivery", "订单与配送"),
            text=_t("Orders and delivery: what do you need?", "订单与配送：您需要什么帮助？"),
            items=("my_orders", "order_status", "delivery", "returns", "refunds"),
        ),
        "account": MenuNode(
            title=_t("My account", "我的账户"),
            text=_t("Your account:", "您的账户："),
            items=("my_tier", "address"),
        ),
    }


def _default_actions() -> dict[str, ActionNode]:
    return {
        "my_orders": ActionNode(title=_t("My recent orders", "我的最近订单"), action="my_orders"),
        "order_status": ActionNode(
            title=_t("Status of an order", "查询订单状态"), action="order_status"
        ),
        "my_tier": ActionNode(title=_t("My tier and benefits", "我的等级与权益"), action="my_tier"),
        "complaint": ActionNode(title=_t("File a complaint", "我要投诉"), action="complaint"),
    }


def _default_tiers() -> dict[str, TierAccess]:
    return {
        "VIP": TierAccess(
            benefits=_t(
                "A person answers you at once, 24/7; your account manager is paged first; "
                "free express delivery.",
                "全天候即时人工服务；优先联系您的专属客户经理；免费加急配送。",
            )
        ),
        "A": TierAccess(
            benefits=_t(
                "Priority in the queue for a person; free delivery.",
                "人工客服优先排队；免费配送。",
            )
        ),
        "B": TierAccess(benefits=_t("Free delivery on orders over 50.", "订单满 50 免费配送。")),
        "C": TierAccess(
            benefits=_t(
                "Self-service any time, and a person when you need one.",
                "随时自助服务，需要时可联系人工客服。",
            )
        ),
    }
