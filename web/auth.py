"""Who is looking at a page: the one place the web layer asks.

`api.auth.AuthMiddleware` (when the app installs it) puts a `Principal` on
`request.state.principal`: a signed-in user, a token, or the loopback caller in local
mode. Without it every request is the local operator. CSRF tokens are bound to the
principal's key for signed-in users (`session_id`), so a token minted for one session does
not verify in another.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

LOCAL_USER = "local"


def _principal(request: Request) -> Any:
    return getattr(request.state, "principal", None)


def current_user(request: Request) -> str:
    """The name of the user or token behind `request`; `"local"` in local mode."""
    principal = _principal(request)
    return str(getattr(principal, "name", "") or LOCAL_USER)


def session_id(request: Request) -> str:
    """What CSRF tokens are bound to: the signed-in user's session key, else ''."""
    principal = _principal(request)
    if principal is not None and getattr(principal, "kind", "") == "user":
        return str(principal.key)
    return ""
