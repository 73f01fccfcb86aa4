"""Error pages for web paths. The app's one error handler (`api.app`) asks `is_web_path`
and, for a page, renders `html_error` instead of the JSON error body."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

_NOT_WEB = ("/api/", "/v1/", "/static/", "/openapi.json", "/docs", "/redoc", "/healthz", "/metrics")
TITLES = {
    400: "That request doesn't work",
    401: "Please sign in",
    403: "Not allowed",
    404: "Nothing here",
    413: "Too large",
    422: "Check the form",
    429: "Slow down",
    500: "Something broke on our side",
    503: "The store is not answering",
}


def is_web_path(path: str) -> bool:
    """A dashboard page (HTML), not the JSON API, OTLP, a `.json` twin or an asset."""
    return (
        not path.startswith(_NOT_WEB) and not path.endswith(".json") and path not in ("/healthz", "/metrics")
    )


def html_error(request: Request, status: int, code: str, message: str) -> HTMLResponse:
    renderer = getattr(request.app.state, "web_renderer", None)
    title = TITLES.get(status, "Something went wrong")
    if renderer is None:  # web not mounted: a bare page
        from html import escape

        return HTMLResponse(f"<h1>{escape(title)}</h1><p>{escape(message)}</p>", status_code=status)
    body = renderer.env.get_template("error.html").render(
        status=status, code=code, title=title, message=message
    )
    return HTMLResponse(body, status_code=status)
