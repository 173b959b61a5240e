"""The kiosk and admin pages: static files, no key in them (the operator types it)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

PAGES = Path(__file__).resolve().parents[1] / "pages"
FILES = {"/kiosk": ("kiosk.html", "text/html"), "/admin": ("admin.html", "text/html"),
         "/static/kiosk.js": ("kiosk.js", "text/javascript"),
         "/static/admin.js": ("admin.js", "text/javascript"),
         "/static/style.css": ("style.css", "text/css"),
         "/static/kiosk.css": ("kiosk.css", "text/css")}
POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
          "media-src 'self' blob: mediastream:; connect-src 'self'; frame-ancestors 'none'")

router = APIRouter(include_in_schema=False)


def _page(route: str, name: str, media: str) -> None:
    async def serve() -> Response:
        return Response((PAGES / name).read_bytes(), media_type=f"{media}; charset=utf-8",
                        headers={"Content-Security-Policy": POLICY,
                                 "X-Content-Type-Options": "nosniff",
                                 "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})
    router.add_api_route(route, serve, methods=["GET"])


for _route, (_name, _media) in FILES.items():
    _page(_route, _name, _media)
