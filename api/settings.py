"""Server settings: one validated object per process, built at start and passed down.

Every field maps to an environment variable `INFERWATCH_<FIELD>` (nested models use
`__`, e.g. `INFERWATCH_FINDINGS__IDLE_THRESHOLD_PCT`). docs/configuration.md documents
each one; `tests/test_settings.py` fails when a field is missing there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.alerts.settings import NotifySettings
from api.findings.settings import CostSettings, FindingsSettings
from api.security_settings import SecuritySettings
from web.settings import WebSettings

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "inferwatch"


class Settings(BaseSettings):
    """All server settings. Build with `Settings()` (reads the environment) or pass values."""

    model_config = SettingsConfigDict(
        env_prefix="INFERWATCH_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    # --- process -------------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Directory for the embedded ClickHouse store (chDB) and the SQLite metadata database.",
    )
    host: str = Field("127.0.0.1", description="Address `inferwatch serve` binds to.")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(8000, description="Port `inferwatch serve` binds to.")
    log_level: str = Field("INFO", description="Python logging level name.")
    public_url: str = Field(
        "",
        description="URL where people reach the web app, used in email and webhook links. "
        "Empty means http://HOST:PORT.",
    )

    # --- ClickHouse store ------------------------------------------------------------
    clickhouse_url: str = Field(
        "",
        description="ClickHouse server URL (http[s]://user:password@host:8123). Empty: the embedded "
        "chDB store under DATA_DIR/clickhouse.",
    )
    clickhouse_database: str = Field("inferwatch", description="ClickHouse database holding every table.")
    clickhouse_cluster: str = Field(
        "",
        description="ClickHouse cluster name. When set, migrations create Replicated tables and "
        "Distributed tables ON CLUSTER.",
    )
    query_timeout_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        30.0, description="max_execution_time for every query, in seconds."
    )
    raw_ttl_days: Annotated[int, Field(ge=1, le=36500)] = Field(
        30, description="Days raw rows (GPU samples, requests, engine metrics) are kept."
    )
    rollup_ttl_days: Annotated[int, Field(ge=1, le=36500)] = Field(
        400, description="Days minute rollups are kept."
    )

    # --- metadata database -------------------------------------------------------------
    database_url: str = Field(
        "",
        description="SQLAlchemy URL of the metadata database (postgresql+psycopg://…). Empty: SQLite "
        "at DATA_DIR/inferwatch.db.",
    )

    notify: NotifySettings = Field(
        default_factory=NotifySettings,
        description="Scheduled jobs, alerts, webhooks, SMTP and the weekly report (INFERWATCH_NOTIFY__*).",
    )

    # --- ingest limits -----------------------------------------------------------------
    max_body_bytes: Annotated[int, Field(ge=1024)] = Field(
        16 * 1024 * 1024, description="Largest OTLP request body accepted as sent (compressed), in bytes."
    )
    max_decompressed_bytes: Annotated[int, Field(ge=1024)] = Field(
        64 * 1024 * 1024, description="Largest OTLP request body accepted after decompression, in bytes."
    )
    max_items_per_request: Annotated[int, Field(ge=1)] = Field(
        200_000, description="Most spans or metric data points in one OTLP request."
    )
    max_attribute_bytes: Annotated[int, Field(ge=16)] = Field(
        8192, description="Longest string attribute value kept; longer values are truncated and counted."
    )

    # --- ingest write-ahead log ----------------------------------------------------------
    ingest_flush_s: Annotated[float, Field(ge=0, le=300)] = Field(
        1.0,
        description="Longest time accepted rows wait in the write-ahead log (DATA_DIR/wal) before one insert "
        "per table takes them to the store. 0: no log, each OTLP request is inserted while it waits.",
    )
    ingest_flush_rows: Annotated[int, Field(ge=1)] = Field(
        200_000,
        description="Rows of one table in the write-ahead log that trigger an insert before INGEST_FLUSH_S.",
    )
    ingest_wal_max_bytes: Annotated[int, Field(ge=64 * 1024)] = Field(
        1024**3,
        description="Bytes the write-ahead log may hold while the store is down or behind; past it, OTLP "
        "requests get 503 with Retry-After.",
    )
    ingest_dedup_window_s: Annotated[int, Field(ge=0)] = Field(
        900,
        description="Seconds a retried OTLP request is recognised and not stored again, when the write-ahead "
        "log is on (at most 500,000 requests).",
    )
    findings: FindingsSettings = Field(
        default_factory=FindingsSettings, description="Thresholds of the findings."
    )
    cost: CostSettings = Field(default_factory=CostSettings, description="GPU prices for the cost model.")
    web: WebSettings = Field(default_factory=WebSettings, description="The web dashboards.")
    security: SecuritySettings = Field(
        default_factory=SecuritySettings, description="Sessions, bootstrap tokens and rate limits."
    )

    @field_validator("clickhouse_database")
    @classmethod
    def _database_is_identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError("must be a plain identifier: letters, digits and underscores")
        return value

    @field_validator("clickhouse_cluster")
    @classmethod
    def _cluster_is_identifier(cls, value: str) -> str:
        if value and not _IDENTIFIER.match(value):
            raise ValueError("must be a plain identifier: letters, digits and underscores")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return upper

    @property
    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"

    @property
    def chdb_path(self) -> Path:
        return self.data_dir / "clickhouse"

    @property
    def wal_path(self) -> Path:
        return self.data_dir / "wal"

    @property
    def metadata_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'inferwatch.db'}"


def env_names(model: type[BaseModel] = Settings, prefix: str = "INFERWATCH_") -> list[str]:
    """Every environment variable the model reads, nested groups included."""
    names = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += env_names(annotation, f"{prefix}{name.upper()}__")
        else:
            names.append(f"{prefix}{name.upper()}")
    return names


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """`INFERWATCH_*` variables no setting reads — usually a typo worth refusing at start.
    The collector's own `INFERWATCH_COLLECTOR_*` variables are not the server's concern."""
    known = set(env_names())
    return sorted(
        key
        for key in environ
        if key.startswith("INFERWATCH_") and not key.startswith("INFERWATCH_COLLECTOR_") and key not in known
    )
