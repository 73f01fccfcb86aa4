"""CSRF protection for the web forms: a signed double-submit token.

The browser gets a random token in the `iw_csrf` cookie (SameSite=Strict, HttpOnly); every
form carries the same token in a hidden field together with an HMAC of (token, session
id). A POST is accepted only when the field's token equals the cookie's and the HMAC
verifies with the server's key: another site can neither read the cookie nor forge the
signature, and a planted cookie fails the signature. When sessions arrive
(`web.auth.session_id`), the signature binds the token to the session too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request, Response

from api.errors import Forbidden
from api.settings import Settings
from web.auth import session_id

COOKIE = "iw_csrf"
FIELD = "csrf_token"


@dataclass(frozen=True, slots=True)
class Csrf:
    key: bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> Csrf:
        """A key derived from the server's secret (`INFERWATCH_SECURITY__SECRET_KEY`, else the
        one kept in DATA_DIR/secret_key), so every replica with that secret agrees."""
        from api.auth import load_secret_key

        secret = load_secret_key(
            settings.data_dir / "secret_key", settings.security.secret_key.get_secret_value()
        )
        return cls(hmac.new(secret, b"inferwatch web csrf", hashlib.sha256).digest())

    def _sign(self, token: str, session: str) -> str:
        return hmac.new(self.key, f"{token}|{session}".encode(), hashlib.sha256).hexdigest()

    def token_for(self, request: Request) -> str:
        """The form-field value for this request (reusing the browser's cookie token)."""
        token = request.cookies.get(COOKIE) or getattr(request.state, "csrf_new", None)
        if not token or len(token) != 43:
            token = secrets.token_urlsafe(32)
            request.state.csrf_new = token
        return f"{token}.{self._sign(token, session_id(request))}"

    def set_cookie(self, request: Request, response: Response) -> None:
        """Send the cookie when `token_for` made a new token for this request."""
        token = getattr(request.state, "csrf_new", None)
        if token:
            response.set_cookie(
                COOKIE,
                token,
                httponly=True,
                samesite="strict",
                path="/",
                secure=request.url.scheme == "https",
            )

    def check(self, request: Request, submitted: str | None) -> None:
        """Raise Forbidden unless `submitted` is this browser's signed token.

        A request that carries a bearer token is not a browser riding on a cookie, so
        cross-site request forgery does not apply to it."""
        principal = getattr(request.state, "principal", None)
        if principal is not None and principal.kind == "token":
            return
        cookie = request.cookies.get(COOKIE, "")
        token, _, signature = (submitted or "").partition(".")
        if not cookie or not token or not hmac.compare_digest(token, cookie):
            raise Forbidden("the form's security token is missing or stale; reload the page and try again")
        if not hmac.compare_digest(signature, self._sign(token, session_id(request))):
            raise Forbidden("the form's security token does not verify; reload the page and try again")
