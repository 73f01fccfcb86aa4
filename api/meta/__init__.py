"""The metadata database: what people configure (prices, deployments and SLOs, alert rules,
webhooks, report recipients, tokens, users, acknowledgements) and the state the scheduled
jobs keep (alert state, job leases). SQLAlchemy 2 models, Alembic migrations under
`migrations/alembic`, and one small service module per table group that validates its
inputs and raises `api.errors` — the settings forms and the JSON API both call those."""

from api.meta.db import Meta, open_meta
from api.meta.migrate import downgrade_metadata, upgrade_metadata

__all__ = ["Meta", "downgrade_metadata", "open_meta", "upgrade_metadata"]
