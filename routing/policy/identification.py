"""The ``[identification]`` section: how a Telegram user proves who they are."""

from __future__ import annotations

from pydantic import (
    Field,
)

from routing.policy.base import Strict


class IdentificationPolicy(Strict):
    # ISO 3166 region for CRM phone numbers written without a country code (e.g. "GB", "CN").
    # None: such numbers are rejected at import as ambiguous.
    default_region: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    # Linking by a typed customer code (the CRM's external id). Codes are guessable, so this
    # is an opt-in; identity otherwise rests on the customer's own shared contact or a
    # one-time invitation (`contactbot customers invite`). A code never takes over an
    # account already linked to another Telegram user.
    allow_code: bool = False
    # Code lookups allowed per Telegram user in a sliding window, and overall (all users).
    # Every failure (unknown, already linked, over a limit) gets the same reply.
    code_attempts_per_user: int = Field(default=5, ge=1, le=1000)
    code_user_window_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    code_attempts_overall: int = Field(default=60, ge=1, le=100_000)
    code_overall_window_seconds: int = Field(default=60, ge=1, le=24 * 3600)
    # How long an invitation link stays valid when `customers invite` gets no --expires.
    invite_expires_days: int = Field(default=7, ge=1, le=365)
