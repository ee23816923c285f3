"""Process settings from the environment (and a ``.env`` file), prefix ``CONTACTBOT_``."""

from __future__ import annotations

from pathlib import Path

from aiogram.utils.token import TokenValidationError, validate_token
from pydantic_settings import BaseSettings, SettingsConfigDict

from routing.policy.root import Policy, load_policy
from routing.store.db import DEFAULT_DATABASE_URL

DEFAULT_POLICY_FILE = "contactbot.toml"


class ConfigError(Exception):
    """A setting that makes the bot unable to start; the message is one line for the user."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CONTACTBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    token: str | None = None
    database_url: str = DEFAULT_DATABASE_URL
    telegram_api_url: str = "https://api.telegram.org"
    redis_url: str | None = None
    config: str | None = None
    # Webhook mode (``contactbot run --webhook``).
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 8080
    # setWebhook / getWebhookInfo attempts at start (429 and 5xx are retried); after the last
    # one the instance logs an error and serves on (bot/webhook_setup.py).
    webhook_register_attempts: int = 6
    # `contactbot run` checks the database, Redis and the Bot API before starting; each has
    # this many seconds to answer (bot/preflight.py).
    preflight_timeout: float = 5.0
    # Testing hook: read "now" from this file (see bot/clock.py). Unset in production.
    clock_file: str | None = None

    def require_token(self) -> str:
        if not self.token:
            raise ConfigError(
                "CONTACTBOT_TOKEN is not set: get a token from @BotFather and export "
                "CONTACTBOT_TOKEN=123456:ABC..."
            )
        try:
            validate_token(self.token)
        except TokenValidationError:
            raise ConfigError(
                "CONTACTBOT_TOKEN is malformed: expected '<digits>:<secret>' as @BotFather "
                "gives it, with no spaces"
            ) from None
        return self.token

    def policy_path(self) -> Path | None:
        """The policy file in force: CONTACTBOT_CONFIG, else ./contactbot.toml if present."""
        if self.config:
            return Path(self.config)
        default = Path(DEFAULT_POLICY_FILE)
        return default if default.is_file() else None

    def load_policy(self) -> Policy:
        return load_policy(self.policy_path())
