"""Settings of access control (`INFERWATCH_SECURITY__*`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class SecuritySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secret_key: SecretStr = Field(
        SecretStr(""),
        description="Key that signs web session cookies. Empty: one is made and kept in DATA_DIR/secret_key. "
        "Set the same value on every replica.",
    )
    bootstrap_tokens: SecretStr = Field(
        SecretStr(""),
        description="Tokens to create at start, `scope:secret` pairs separated by commas "
        "(e.g. `ingest:iwt_…,admin:iwt_…`); existing or revoked ones are left alone. For deployments "
        "that provision secrets up front.",
    )
    ingest_rate_per_s: float = Field(200.0, gt=0, description="OTLP requests a second allowed per token.")
    ingest_burst: int = Field(400, ge=1, description="OTLP requests allowed in a burst per token.")
    api_rate_per_s: float = Field(50.0, gt=0, description="API and page requests a second per token or user.")
    api_burst: int = Field(
        200, ge=1, description="API and page requests allowed in a burst per token or user."
    )
