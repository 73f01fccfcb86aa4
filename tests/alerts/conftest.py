"""The metadata-database fixtures of tests/meta, for the alert tests."""

from tests.meta.conftest import meta, postgres, postgres_meta_url, sqlite_meta  # noqa: F401
