"""The per-chat delivery queue: every message for the other side, in order, at least once."""
