"""Persistence: models, engine and sessions, the SQLite driver, cluster coordination, the inbox."""
