"""What every page has: its header (title, time window, whether the data is simulated) and
the parsing of the window picker's query parameters."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request

from api.errors import BadRequest
from api.routes.gpus import configured_settings, parse_window, series_step_s
from api.settings import Settings
from api.store import Store
from api.timewindow import Window

WINDOW_CHOICES = ("1h", "6h", "24h", "7d", "30d")


@dataclass(frozen=True, slots=True)
class PageInfo:
    title: str
    path: str = ""
    window: str = "7d"
    start: datetime | None = None
    end: datetime | None = None
    step_s: int = 0
    pinned_end: bool = False
    simulated: bool = False
    loading: str = ""
    """While `inferwatch demo` still feeds older days: how many are in (see `api.demo`)."""
    window_choices: tuple[str, ...] = WINDOW_CHOICES


@dataclass(frozen=True, slots=True)
class PageRequest:
    """A page request's window and the objects pages read from."""

    request: Request
    window_text: str
    window: Window
    pinned_end: bool
    settings: Settings
    store: Store

    def info(self, title: str, *, step_s: int | None = None, clusters: Iterable[str] = ()) -> PageInfo:
        """The page header; `clusters` are those the page shows (a simulated one turns the
        "simulated data" banner on, as does a server started by `inferwatch demo`)."""
        path = self.request.url.path.removesuffix(".json")
        path = "/" if path in ("", "/index") else path
        return PageInfo(
            title=title,
            path=path,
            window=self.window_text,
            start=self.window.start,
            end=self.window.end,
            step_s=series_step_s(self.window) if step_s is None else step_s,
            pinned_end=self.pinned_end,
            simulated=is_simulated(self.request, clusters),
            loading=_loading_note(self.request),
        )


def is_simulated(request: Request, clusters: Iterable[str] = ()) -> bool:
    """Whether the page shows the demo's simulated data (the contract of `api.demo`)."""
    from api.demo import is_simulated_cluster

    if getattr(request.app.state, "demo", None):
        return True
    return any(is_simulated_cluster(c) for c in clusters)


def _loading_note(request: Request) -> str:
    from api.demo import loading_note

    return loading_note(request.app.state)


def page_request(request: Request, *, default_window: str = "") -> PageRequest:
    """Read `window` (a length like 7d; default the page's, else the setting) and `end`
    (ISO 8601, default now) from the query."""
    base: Settings = request.app.state.settings
    text = request.query_params.get("window") or default_window or base.web.default_window
    if len(text) > 16:
        raise BadRequest("window is too long; use a length such as 24h or 7d")
    end_text = request.query_params.get("end") or ""
    end = None
    if end_text:
        try:
            end = datetime.fromisoformat(end_text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise BadRequest(f"end is not an ISO 8601 time: {end_text[:40]!r}") from exc
    window = parse_window(text, end)
    return PageRequest(
        request, text, window, bool(end), configured_settings(request), request.app.state.store
    )
