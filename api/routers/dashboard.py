"""The web dashboard: a static page (HTML, JS, CSS shipped in `api/dashboard/`) that calls the
public API with the key the user types in. Serving it needs no key; its responses carry a strict
Content-Security-Policy. Left out of the OpenAPI schema: it is not part of the API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response

from core.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parent.parent / "dashboard"
# the only files served: a fixed map, so no request path ever reaches the file system
FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "scatter.js": "text/javascript; charset=utf-8",
    "views.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/dashboard")
async def dashboard_page() -> Response:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/dashboard/")
async def dashboard_slash() -> Response:
    return RedirectResponse("/dashboard", headers=HEADERS)


@router.get("/dashboard/static/{name}")
async def dashboard_file(name: str) -> Response:
    media_type = FILES.get(name)
    if media_type is None:
        raise NotFound(f"dashboard file '{name}' does not exist")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=HEADERS)
