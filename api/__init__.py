"""inferwatch server: OTLP ingest, the ClickHouse store, findings, alerts, reports and the CLI."""

__version__ = "0.1.0"
