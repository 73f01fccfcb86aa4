"""Settings of the web dashboards (`INFERWATCH_WEB__*`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class WebSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_window: str = Field("7d", description="Time window a page shows when none is picked.")
