"""The single gateway to ClickHouse (embedded chDB or a server) and the SQL that runs through it."""

from api.store.gateway import Query, Store, open_store

__all__ = ["Query", "Store", "open_store"]
