"""Process settings from the environment (and a ``.env`` file), prefix ``CONTACTBOT_``."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.logs import FORMATS, LEVELS
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
    # Polling mode: serve /healthz, /readyz, /metrics and /dashboard on this port (unset: no
    # HTTP server). Webhook mode serves them on the webhook server (bot/http/).
    http_port: int | None = None
    http_host: str = "0.0.0.0"
    # /dashboard's token (Bearer, ?token= or basic-auth password); unset: no dashboard (404).
    dashboard_token: str | None = None
    # `contactbot run` checks the database, Redis and the Bot API before starting; each has
    # this many seconds to answer (bot/preflight.py).
    preflight_timeout: float = 5.0
    # Logging (bot/logs.py). Level unset: contactbot's own INFO lines, other libraries'
    # WARNING and up; set: that level for every logger. Format: text or json.
    log_level: str | None = None
    log_format: str = "text"
    # Testing hook: read "now" from this file (see bot/clock.py). Unset in production.
    clock_file: str | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None  # unset or empty (an env file's `CONTACTBOT_LOG_LEVEL=`): the default
        name = str(value).strip().upper()
        if name not in LEVELS:
            raise ValueError(f"{value!r} is not a log level: use one of {', '.join(LEVELS)}")
        return name

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return "text"
        name = str(value).strip().lower()
        if name not in FORMATS:
            raise ValueError(f"{value!r} is not a log format: use {' or '.join(FORMATS)}")
        return name

    def require_token(self) -> str:
        if not self.token:
            raise ConfigError(
                "CONTACTBOT_TOKEN is not set: get a token from @BotFather and export "
                "CONTACTBOT_TOKEN=123456:ABC..."
            )
        # Here, not at the top: importing aiogram takes seconds, and every command of the
        # command line loads the settings; only `run` needs the token.
        from aiogram.utils.token import TokenValidationError, validate_token

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


def load_settings() -> Settings:
    """The settings from the environment; a value that does not validate is a ConfigError
    naming the variable, one line (the command line prints it and exits 2)."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            name = "CONTACTBOT_" + "_".join(str(p) for p in e["loc"]).upper()
            message = str(e["msg"]).removeprefix("Value error, ")
            problems.append(f"{name}: {message}")
        raise ConfigError("; ".join(problems)) from None
