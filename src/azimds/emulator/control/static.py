"""The dashboard's files (plain HTML, CSS and JavaScript shipped in the package), served by the control plane.

They hold no data, so they are served without the token; the page reads the token from its link's fragment
(never sent to a server) and every figure it shows comes from the JSON API with ``Authorization: Bearer``.
Each answer forbids what would let another site use the page: no script but the page's own, no framing, no
sniffing, no referrer. The API itself sends no CORS header, so another site's script cannot read it.
"""

from __future__ import annotations

from importlib import resources
from urllib.parse import quote

from ..service.http import Request, Response

__all__ = ["API_HEADERS", "PAGE_HEADERS", "PATH", "asset", "link"]

PATH = "/dashboard"
_FILES = {PATH: ("index.html", "text/html; charset=utf-8"),
          f"{PATH}/app.js": ("app.js", "text/javascript; charset=utf-8"),
          f"{PATH}/style.css": ("style.css", "text/css; charset=utf-8")}
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_COMMON = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"), ("X-Frame-Options", "DENY"),
           ("Cross-Origin-Resource-Policy", "same-origin"))
#: Every file of the page: only its own script and style, never framed, not read by other origins.
PAGE_HEADERS = (("Content-Security-Policy", _CSP), *_COMMON, ("Cross-Origin-Opener-Policy", "same-origin"),
                ("Cache-Control", "no-cache"))
#: Every API answer: a document that runs nothing if opened, is never cached or framed.
API_HEADERS = (("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"), *_COMMON,
               ("Cache-Control", "no-store"))

_cache: dict[str, Response] = {}


def asset(request: Request) -> Response | None:
    """The dashboard file a GET (or HEAD) asks for; None for any other request."""
    if request.method not in ("GET", "HEAD"):
        return None
    path = request.url.decode("latin-1").partition("?")[0].rstrip("/")
    found = _cache.get(path)
    if found is None and path in _FILES:
        name, content_type = _FILES[path]
        body = resources.files(__package__).joinpath("dashboard", name).read_bytes()
        found = _cache[path] = Response(200, body, content_type, headers=PAGE_HEADERS)
    return found


def link(control_url: str, token: str) -> str:
    """The dashboard's address with the token in its fragment, which browsers never send to the server."""
    return f"{control_url}{PATH}#token={quote(token, safe='')}"
