"""Signing in to the web app: `GET /login` (the form), `POST /login`, `POST /logout`.

The session is a signed cookie (api/auth.py), so any replica can read it: no sticky
sessions, no session table."""

from __future__ import annotations

from urllib.parse import urlparse

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment
from starlette.concurrency import run_in_threadpool

from api.auth import SESSION_COOKIE, SESSION_SECONDS, sign_session
from api.meta.users import authenticate_user

router = APIRouter(tags=["session"], include_in_schema=False)

_PAGE = Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · inferwatch</title>
<style>
 :root { color-scheme: light dark; font-family: system-ui, sans-serif; }
 body { display: grid; place-items: center; min-height: 100vh; margin: 0; background: Canvas; }
 form { width: min(22rem, 90vw); display: grid; gap: .75rem; padding: 2rem; border-radius: 12px;
        border: 1px solid color-mix(in srgb, CanvasText 15%, transparent); }
 h1 { font-size: 1.25rem; margin: 0 0 .5rem; } label { display: grid; gap: .25rem; font-size: .9rem; }
 input { font: inherit; padding: .5rem .6rem; border-radius: 6px;
         border: 1px solid color-mix(in srgb, CanvasText 30%, transparent); }
 button { font: inherit; padding: .55rem; border-radius: 6px; border: 0; background: #2563eb;
          color: white; cursor: pointer; }
 .error { color: #b91c1c; margin: 0; } .hint { font-size: .8rem; opacity: .7; margin: 0; }
</style></head>
<body><form method="post" action="/login">
 <h1>inferwatch</h1>
 {% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
 <label>Username <input name="username" autocomplete="username" required value="{{ username }}"></label>
 <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
 <input type="hidden" name="next" value="{{ next }}">
 <button type="submit">Sign in</button>
 <p class="hint">Accounts are made with <code>inferwatch user create</code> or on the settings page.</p>
</form></body></html>"""
)


def _safe_next(target: str) -> str:
    """Only paths on this site: never redirect a login to someone else's page."""
    parsed = urlparse(target or "/")
    if parsed.scheme or parsed.netloc or not (parsed.path or "/").startswith("/") or target.startswith("//"):
        return "/"
    return target or "/"


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/") -> HTMLResponse:  # noqa: A002 — the query name
    return HTMLResponse(_PAGE.render(error="", username="", next=_safe_next(next)))


@router.post("/login")
async def login(
    request: Request,
    username: str = Form("", max_length=200),
    password: str = Form("", max_length=1024),
    next: str = Form("/", max_length=2000),  # noqa: A002
) -> Response:
    meta = request.app.state.meta

    def check() -> object:
        with meta.session() as s:
            return authenticate_user(s, username, password)

    user = await run_in_threadpool(check)
    if user is None:
        page = _PAGE.render(error="Wrong username or password.", username=username, next=_safe_next(next))
        return HTMLResponse(page, status_code=401)
    cookie = sign_session(request.app.state.session_key, user.id, user.username, user.role)  # type: ignore[attr-defined]
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.app.state.settings.base_url.startswith("https://"),
    )
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
