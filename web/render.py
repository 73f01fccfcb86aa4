"""Rendering: the Jinja2 environment (autoescape on), the number filters every page uses,
and the one function that answers a page request as HTML or as its `.json` twin.

A page is a function building a typed context (a dataclass); `respond` renders it into its
template, or serves the same object as JSON when the path ends in `.json`. The HTML embeds
the context too (the charts draw from it), and a contract test checks the two agree.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import TypeAdapter

from web import assets

_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def _adapter(kind: type) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS[kind] = TypeAdapter(kind)
    return adapter


def to_jsonable(context: Any) -> Any:
    """The context as plain JSON values (datetimes as ISO 8601, models and dataclasses as objects)."""
    return _adapter(type(context)).dump_python(context, mode="json")


def wants_json(request: Request) -> bool:
    return request.url.path.endswith(".json")


class Renderer:
    def __init__(self) -> None:
        self.env = Environment(
            loader=PackageLoader("web", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            usd=usd, pct=pct, share=share, seconds=seconds, num=num, bytes=gib, when=when, hours=hours
        )
        self.env.globals.update(plotly_url=assets.plotly_url, query=query)

    def html(
        self,
        request: Request,
        template: str,
        context: Any,
        *,
        status: int = 200,
        extra: dict[str, Any] | None = None,
    ) -> Response:
        csrf = request.app.state.web_csrf
        body = self.env.get_template(template).render(
            ctx=context,
            data=to_jsonable(context) if dataclasses.is_dataclass(context) else None,
            request=request,
            csrf_token=csrf.token_for(request),
            **(extra or {}),
        )
        response = HTMLResponse(body, status_code=status)
        csrf.set_cookie(request, response)
        return response


def respond(
    request: Request, template: str, context: Any, *, extra: dict[str, Any] | None = None
) -> Response:
    """The page as HTML, or its context as JSON for a `.json` path."""
    if wants_json(request):
        return JSONResponse(to_jsonable(context))
    renderer: Renderer = request.app.state.web_renderer
    return renderer.html(request, template, context, extra=extra)


def query(request: Request, **changes: Any) -> str:
    """The request's query string with `changes` applied (None removes a parameter)."""
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    return urlencode(params)


# --- filters: every number with its unit -----------------------------------------------------


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def usd(value: Any, digits: int | None = None) -> str:
    """`1340.2` → `$1,340`; under $10 with cents; `—` for none."""
    if _missing(value):
        return "—"
    v = float(value)
    if digits is None:
        digits = 2 if abs(v) < 10 else 0
    return f"-${abs(v):,.{digits}f}" if v < 0 else f"${v:,.{digits}f}"


def pct(value: Any, digits: int = 0) -> str:
    """A percentage given as 0–100."""
    return "—" if _missing(value) else f"{float(value):.{digits}f} %"


def share(value: Any, digits: int = 0) -> str:
    """A share given as 0–1, shown as a percentage."""
    return "—" if _missing(value) else f"{float(value) * 100:.{digits}f} %"


def seconds(value: Any) -> str:
    """Seconds shown in the unit a person reads best: `850 ms`, `2.4 s`, `3.1 min`."""
    if _missing(value):
        return "—"
    v = float(value)
    if v < 1:
        return f"{v * 1000:.0f} ms" if v >= 0.01 else f"{v * 1000:.1f} ms"
    if v < 120:
        return f"{v:.2f} s" if v < 10 else f"{v:.1f} s"
    return f"{v / 60:.1f} min"


def num(value: Any, digits: int = 0) -> str:
    if _missing(value):
        return "—"
    v = float(value)
    if abs(v) >= 1e9:
        return f"{v / 1e9:.{max(digits, 1)}f} G"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.{max(digits, 1)}f} M"
    return f"{v:,.{digits}f}"


def hours(value: Any) -> str:
    return "—" if _missing(value) else f"{float(value):,.1f} h"


def gib(value: Any) -> str:
    return "—" if _missing(value) else f"{float(value) / 2**30:,.1f} GiB"


def when(value: Any) -> str:
    if _missing(value):
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return f"{value:%Y-%m-%d %H:%M} UTC"
