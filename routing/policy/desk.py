"""The ``[desk]`` section: where agents work.

``mode = "private"`` (the default): each agent talks to the bot in a private chat.
``mode = "topics"``: a staff forum supergroup (``group_id``) where every customer has one
topic; the bot must be an admin there allowed to manage topics (checked at start-up).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from routing.policy.base import Strict


class DeskPolicy(Strict):
    mode: Literal["private", "topics"] = "private"
    # The staff supergroup's id (a negative number, -100...), required in topics mode.
    group_id: int | None = Field(default=None, lt=0)
    # Topics mode: the topic holding the queue view (its message_thread_id); None: General.
    queue_topic_id: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _group_for_topics(self) -> DeskPolicy:
        if self.mode == "topics" and self.group_id is None:
            raise ValueError(
                'mode = "topics" needs group_id: the staff forum supergroup\'s id (-100...)'
            )
        return self

    @property
    def topics(self) -> bool:
        return self.mode == "topics"
