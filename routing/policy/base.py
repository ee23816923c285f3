"""The one strict base every policy section (and the simulator's scenario) is built on."""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
)


class Strict(BaseModel):
    # Unknown keys are almost always typos; silently ignoring them hides a misconfiguration.
    model_config = ConfigDict(extra="forbid", frozen=True)
