"""GET /console: the web console (README, "Web console").

Plain static files shipped in the package (``static/``: one page, ES modules, one style
sheet), served with a content security policy that allows nothing but this origin. The
console holds no logic of the server's: it calls the same public API as any client, with
the key the user signs in with.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter, Response

from lorag.core.errors import NotFound

router = APIRouter(include_in_schema=False)

MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
# Only this origin: no inline script or style attribute, no other site, never in a frame.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; "
                           "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                           "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-cache",
}


@router.get("/console")
@router.get("/console/")
def console_page() -> Response:
    return asset_response("index.html")


@router.get("/console/{path:path}")
def console_asset(path: str) -> Response:
    return asset_response(path)


def asset_response(path: str) -> Response:
    """One shipped file with the console's headers; NotFound (param ``path``) for any
    name that is not one of them (no path outside ``static/`` can be named)."""
    found = assets().get(path)
    if found is None:
        raise NotFound(f"no console file {path!r}", param="path")
    media_type = MEDIA_TYPES[path[path.rfind("."):]]
    return Response(found.read_bytes(), media_type=media_type, headers=SECURITY_HEADERS)


@cache
def assets() -> dict[str, Traversable]:
    """The shipped files by their path under ``static/`` (read once, on first use)."""
    found: dict[str, Traversable] = {}
    _walk(resources.files("server.console") / "static", "", found)
    return found


def _walk(folder: Traversable, prefix: str, found: dict[str, Traversable]) -> None:
    for entry in folder.iterdir():
        if entry.is_dir():
            _walk(entry, f"{prefix}{entry.name}/", found)
        elif any(entry.name.endswith(suffix) for suffix in MEDIA_TYPES):
            found[prefix + entry.name] = entry
