"""Writing customers.csv to the database: ``CustomerImporter``, the upsert by ``external_id``.

For each batch: read back the stored customers, settle telegram_id claims (a guest's id moves
to the imported customer; one held by another customer, or taken by an earlier row of the file,
is a row error), merge a key's rows, write only the customers whose values change, apply
``(clear)`` cells, and for a released tier pin write the tier history and regrade the customer
at once. The import's rules are described in ``routing.customers.importer``; the run around a
batch is ``routing.customers.import_driver.Importer``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from routing.customers.import_driver import CUSTOMERS, Importer, Merged, dialect_insert, keep_stored
from routing.customers.import_rows import (
    CLEAR,
    CUSTOMER_COLUMNS,
    CUSTOMER_REQUIRED,
    CustomerRow,
    RowError,
    parse_customer_row,
)
from routing.policy.root import Policy
from routing.scoring import rescoring
from routing.store.models import TierChange

__all__ = [
    "CustomerImporter",
]

# Customer columns read back to tell changed rows from unchanged ones, and to log releases.
_STORED_EXTRA = ("id", "tier", "score", "spend_12m", "tier_override_by", "tier_override_reason")


class CustomerImporter(Importer[CustomerRow]):
    kind = "customers"
    known = CUSTOMER_COLUMNS
    required = CUSTOMER_REQUIRED

    def __init__(self, policy: Policy, dry_run: bool, now: datetime | None) -> None:
        super().__init__(policy, dry_run, now)
        # telegram_id -> external_id of the row in this file that took it.
        self.claims: dict[int, str] = {}
        self.stmt: Any = None
        self.first_skipped_phone = 0  # line

    def parse(self, row: dict[str, str], line: int, policy: Policy) -> CustomerRow | RowError:
        return parse_customer_row(row, line, policy)

    @property
    def written(self) -> tuple[str, ...]:
        """The file's optional columns, in table order."""
        return tuple(c for c in CUSTOMER_COLUMNS[1:] if c in self.present)

    def _upsert(self, session: AsyncSession) -> Any:
        if self.stmt is None:
            stmt = dialect_insert(session, CUSTOMERS)
            excluded = stmt.excluded
            set_: dict[str, ColumnElement[Any]] = {}
            for column in self.written:
                # An empty cell keeps the stored value ((clear) is a separate UPDATE).
                set_[column] = keep_stored(column, excluded, CUSTOMERS)
            if "tier_override" in self.present:
                # Who pinned it: kept unless this file sets a different tier.
                for column in ("tier_override_by", "tier_override_reason", "tier_override_at"):
                    set_[column] = case(
                        (excluded.tier_override.is_(None), CUSTOMERS.c[column]),
                        else_=excluded[column],
                    )
            # tier and spend_12m are the rescoring's: an update never touches them.
            set_["is_guest"] = excluded["is_guest"]
            set_["updated_at"] = excluded["updated_at"]
            self.stmt = stmt.on_conflict_do_update(index_elements=["external_id"], set_=set_)
        return self.stmt

    async def _stored(self, session: AsyncSession, keys: set[str]) -> dict[str, dict[str, Any]]:
        c = CUSTOMERS.c
        names = ("external_id", *self.written, *_STORED_EXTRA)
        result = await session.execute(
            select(*(c[n] for n in names)).where(self.among(c.external_id, keys))
        )
        return {row[0]: dict(zip(names, row, strict=True)) for row in result}

    async def write(self, session: AsyncSession, rows: list[CustomerRow]) -> None:
        c = CUSTOMERS.c
        stored: dict[str, dict[str, Any]] = {}
        if not self.dry_run:
            stored = await self._stored(session, {r.external_id for r in rows})
        owners: dict[int, tuple[str | None, bool, int]] = {}
        wanted = {r.telegram_id for r in rows if r.telegram_id is not None}
        if wanted:
            result = await session.execute(
                select(c.telegram_id, c.external_id, c.is_guest, c.id).where(
                    self.among(c.telegram_id, wanted)
                )
            )
            owners = {tg: (ext, guest, id_) for tg, ext, guest, id_ in result}

        detach: set[int] = set()
        merged: dict[str, Merged] = {}
        first: set[str] = set()
        for r in rows:
            tg = r.telegram_id
            if tg is not None:
                holder = self.claims.get(tg)
                if holder is None and tg in owners:
                    ext, guest, id_ = owners[tg]
                    if ext != r.external_id:
                        if guest:
                            detach.add(tg)
                        else:
                            holder = ext if ext is not None else f"#{id_}"
                if holder is not None and holder != r.external_id:
                    self.listed.error(
                        RowError(r.line, f"telegram_id {tg} already belongs to customer {holder}")
                    )
                    continue
                self.claims[tg] = r.external_id
            if self.accept("external_id", r.external_id, r.line):
                first.add(r.external_id)
            if r.phone_skipped:
                self.report.phones_skipped += 1
                self.first_skipped_phone = self.first_skipped_phone or r.line
            values = {column: getattr(r, column) for column in self.written}
            m = merged.get(r.external_id)
            if m is None:
                m = merged[r.external_id] = Merged(r.line, {}, set())
            m.apply(r.line, values, r.cleared & self.present)
            if r.tier_override is not None or "tier_override" in r.cleared:
                m.override_line = r.line
        if self.dry_run or not merged:
            return

        upserts: list[dict[str, Any]] = []
        clears: dict[str, set[str]] = {}
        released: list[tuple[str, dict[str, Any], Merged]] = []
        for key, m in merged.items():
            old = stored.get(key)
            if old is None:
                self.count(key, key in first, False, True)
                upserts.append(self._insert_values(key, m))
                continue
            after = m.after(old, self.written)
            changed = any(after[col] != old[col] for col in self.written)
            self.count(key, key in first, True, changed)
            if not changed:
                continue  # nothing to write: updated_at stays too
            values = dict(m.values)
            if "tier_override" in values and values["tier_override"] == old["tier_override"]:
                values["tier_override"] = None  # the same pin: keep who set it and why
            upserts.append(self._insert_values(key, Merged(m.line, values, set(), m.override_line)))
            for column in m.cleared:
                if old[column] is not None:
                    clears.setdefault(column, set()).add(key)
            if "tier_override" in m.cleared and old["tier_override"] is not None:
                released.append((key, old, m))

        if detach:
            # A guest who chatted before their record was imported: the record takes the id.
            await session.execute(
                update(CUSTOMERS)
                .where(self.among(c.telegram_id, detach), c.is_guest.is_(True))
                .values(telegram_id=None, updated_at=self.now)
            )
        if upserts:
            await session.execute(self._upsert(session), upserts)
        for column, keys in clears.items():
            extra: dict[str, Any] = {}
            if column == "tier_override":
                # As ``customers override --clear``: the next grading starts afresh.
                extra = {
                    "tier_override_by": None,
                    "tier_override_reason": None,
                    "tier_override_at": None,
                    "scored_at": None,
                    "below_count": 0,
                    "below_since": None,
                }
            await session.execute(
                update(CUSTOMERS)
                .where(self.among(c.external_id, keys))
                .values({column: None, "updated_at": self.now, **extra})
            )
        if released:
            await self._log_releases(session, released)

    def _insert_values(self, key: str, m: Merged) -> dict[str, Any]:
        v = m.values
        override = v.get("tier_override")
        return {
            "external_id": key,
            "name": v.get("name"),
            "phone": v.get("phone"),
            "email": v.get("email"),
            "telegram_id": v.get("telegram_id"),
            "language": v.get("language"),
            "account_manager": v.get("account_manager"),
            "tier_override": override,
            "tier_override_by": f"import {self.path.name}"[:100] if override else None,
            "tier_override_reason": (
                f"tier_override on line {m.override_line}" if override else None
            ),
            "tier_override_at": self.now if override else None,
            "timezone": v.get("timezone"),
            "tier": override or self.policy.lowest_tier,
            "spend_12m": 0.0,
            "is_guest": False,
            "created_at": self.now,
            "updated_at": self.now,
        }

    async def _log_releases(
        self, session: AsyncSession, released: list[tuple[str, dict[str, Any], Merged]]
    ) -> None:
        """Tier history: who released each pin and why; then regrade those customers now."""
        log = []
        for _key, old, m in released:
            pinned = ""
            if old["tier_override_by"]:
                pinned = f" (pinned by {old['tier_override_by']}"
                if old["tier_override_reason"]:
                    pinned += f": {old['tier_override_reason']}"
                pinned += ")"
            reason = (
                f"override {old['tier_override']} released by import {self.path.name}, "
                f"line {m.override_line}: tier_override {CLEAR}{pinned}"
            )
            log.append(
                {
                    "customer_id": old["id"],
                    "from_tier": old["tier"],
                    "to_tier": old["tier"],
                    "spend_12m": old["spend_12m"],
                    "reason": reason if len(reason) <= 200 else reason[:197] + "...",
                    "changed_at": self.now,
                    "kind": "override",
                    "score": old["score"],
                    "notice": "none",  # the regrade below tells the customer, if anyone
                }
            )
        await session.execute(insert(TierChange), log)
        self.report.overrides_released += len(released)
        await rescoring.rescore(
            session,
            self.policy,
            self.now,
            customer_ids=[old["id"] for _, old, _ in released],
            released=True,
        )

    def closing_warnings(self) -> list[str]:
        n = self.report.phones_skipped
        if not n:
            return []
        return [
            f"{n} phone number{'s' if n != 1 else ''} without a country code not loaded "
            f"(first on line {self.first_skipped_phone}; those customers loaded without "
            'it): set [identification] default_region in the policy file, e.g. "DE", '
            "and import again"
        ]
