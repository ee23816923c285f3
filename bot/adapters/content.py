"""What a Telegram message carries, in the terms the transcript stores."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from aiogram.types import Message


@dataclass(frozen=True)
class Content:
    content_type: str
    text: str | None
    file_id: str | None

    def preview(self) -> str:
        if self.text:
            return (
                self.text if self.content_type == "text" else f"[{self.content_type}] {self.text}"
            )
        return f"[{self.content_type}]"


def content_of(message: Message) -> Content:
    raw = message.content_type
    # aiogram types it as str but hands out its ContentType enum, whose str() is the member name.
    ctype = raw.value if isinstance(raw, Enum) else str(raw)
    text = message.text or message.caption
    file_id: str | None = None
    if message.photo:
        file_id = message.photo[-1].file_id  # the largest size
    else:
        for attr in ("document", "voice", "video", "audio", "animation", "sticker", "video_note"):
            media = getattr(message, attr, None)
            if media is not None:
                file_id = media.file_id
                break
    return Content(ctype, text, file_id)
