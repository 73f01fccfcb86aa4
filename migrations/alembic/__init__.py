"""Alembic migrations of the metadata database (see api/meta/migrate.py)."""
