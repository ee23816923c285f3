"""Every table in one metadata: the models live in several modules (models, care_models,
cluster), and a table only joins ``Base.metadata`` once its module is imported. Alembic's
env and the schema test compare against this, so none can be forgotten."""

from __future__ import annotations

from sqlalchemy import MetaData

from routing.store import broadcast_models, care_models, cluster, desk_models, models
from routing.store.base import Base

MODEL_MODULES = (models, care_models, cluster, desk_models, broadcast_models)
metadata: MetaData = Base.metadata
