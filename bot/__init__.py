"""The Telegram edge: aiogram handlers, the desk, adapters for the domain's Protocols, the CLI."""
