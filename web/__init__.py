"""The web dashboards: server-rendered pages (Jinja2, autoescaped), each rendering a typed
context whose `.json` twin serves the same object, and the static assets they use (our CSS
and scripts, and plotly.js served from the installed `plotly` package — never a CDN).

`mount(app)` adds everything to an app built by `api.app.create_app`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    """Add the pages, the static assets and the web error pages to `app`."""
    from web import assets, csrf, render
    from web.pages import deployments, findings, fleet, overview, requests, settings

    app.state.web_renderer = render.Renderer()
    app.state.web_csrf = csrf.Csrf.from_settings(app.state.settings)
    assets.mount(app)
    for module in (overview, fleet, deployments, findings, requests, settings):
        app.include_router(module.router)
