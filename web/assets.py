"""Static assets: our CSS and scripts from web/static, and plotly.js from the installed
`plotly` wheel (`plotly/package_data/plotly.min.js`), served by the app itself.

plotly.js is 4.6 MB; it is read once, gzipped once in memory, and served under a versioned
URL with a year-long immutable cache, so a browser fetches it once per plotly release.
"""

from __future__ import annotations

import gzip
import threading
from functools import cache
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
_lock = threading.Lock()


@cache
def plotly_version() -> str:
    import plotly

    return str(plotly.__version__)


def plotly_url() -> str:
    return f"/static/vendor/plotly-{plotly_version()}.min.js"


@cache
def _plotly_bytes() -> tuple[bytes, bytes]:
    with _lock:
        raw = resources.files("plotly").joinpath("package_data/plotly.min.js").read_bytes()
        return raw, gzip.compress(raw, compresslevel=6, mtime=0)


def mount(app: FastAPI) -> None:
    @app.get("/static/vendor/plotly-{version}.min.js", include_in_schema=False)
    async def plotly_js(version: str, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        raw, packed = await run_in_threadpool(_plotly_bytes)
        headers = {"Cache-Control": "public, max-age=31536000, immutable", "Vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(packed, media_type="text/javascript", headers=headers)
        return Response(raw, media_type="text/javascript", headers=headers)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
