"""The findings of a page, kept per data version (`api.routes.results`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from typing import TypeVar

from fastapi import Request

from api.routes.results import kept
from api.settings import Settings
from api.store.sql.findings import READ_BY_FINDINGS

T = TypeVar("T")


def settings_digest(settings: Settings) -> str:
    """What of the settings a finding depends on (thresholds, prices, deployments)."""
    text = settings.findings.model_dump_json() + settings.cost.model_dump_json()
    return hashlib.sha256(text.encode()).hexdigest()


def cached(request: Request, key: tuple[Hashable, ...], compute: Callable[[], T]) -> T:
    """`compute()` for `key` over the current data the findings read, once per version."""
    state = request.app.state
    return kept(state.store, state.settings, key, READ_BY_FINDINGS, compute)
