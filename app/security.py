"""Network safety beyond ComfyUI: auth token, Origin / Host checks (CSRF, DNS rebinding)."""
from __future__ import annotations

import hmac
import html
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from app.config import Config, is_loopback
from app.errors import Forbidden, Unauthorized

__all__ = ["make_security_middlewares", "TOKEN_COOKIE", "host_allowed", "split_host"]

TOKEN_COOKIE = "loom_token"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Loom: sign in</title>
<style>body{{font-family:sans-serif;max-width:28em;margin:4em auto}}input{{width:100%;padding:.4em}}</style>
</head><body><h1>Loom</h1><p>This server needs its access token. It was printed in the server's console
when it started (or given with <code>--auth-token</code>).</p>
<form method="get" action="{action}"><label>Token <input name="token" type="password" autofocus></label>
<p><button type="submit">Sign in</button></p></form>{error}</body></html>"""


def split_host(value: str) -> tuple[str, str | None]:
    """`host[:port]` (with IPv6 brackets) -> (lowercased host, port or None)."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, port
    return value, None


def host_allowed(host_header: str, config: Config) -> bool:
    """Host must name this server: localhost / a loopback IP / a bound address (DNS-rebinding guard)."""
    host, _ = split_host(host_header)
    if not host:
        return False
    if is_loopback(host) or host.endswith(".localhost"):
        return True
    return host in {h.lower().strip("[]") for h in config.listen}


def _origin_ok(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser cross-site request (curl, scripts, same-origin GET forms)
    if origin.strip().lower() == "null":
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    ohost = parts.hostname.lower()
    host, port = split_host(request.headers.get("Host", ""))
    if ohost != host and not (is_loopback(ohost) and is_loopback(host)):
        return False
    oport = str(parts.port) if parts.port else None
    return oport is None or port is None or oport == port


def _token_from(request: web.Request) -> tuple[str | None, bool]:
    """(token, came_from_query)."""
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip(), False
    q = request.query.get("token")
    if q:
        return q, True
    return request.cookies.get(TOKEN_COOKIE), False


def make_security_middlewares(config: Config) -> list[Callable[..., Awaitable[web.StreamResponse]]]:
    """Middlewares in order: Host/Origin guard, then (if a token is configured) authentication."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return web.Response(status=200)  # ComfyUI's answer; no CORS headers, so browsers stay same-origin
        # With a token, the token is the guard against rebinding (the attacker's origin has no cookie);
        # without one (loopback only), an unknown Host means a rebinding attack or a misconfigured proxy.
        if not config.auth_required and not host_allowed(request.headers.get("Host", ""), config):
            raise Forbidden(f"Host header {request.headers.get('Host')!r} does not name this server",
                            "open Loom as http://127.0.0.1:<port>/ or http://localhost:<port>/, or start it "
                            "with --listen <address> --auth-token <token> to serve other names",
                            type_="bad_host")
        is_ws = request.headers.get("Upgrade", "").lower() == "websocket"
        if (request.method in STATE_CHANGING or is_ws) and not _origin_ok(request):
            raise Forbidden(f"{request.method} {request.path}: cross-origin request refused "
                            f"(Origin {request.headers.get('Origin')!r}, Host {request.headers.get('Host')!r})",
                            "requests that change state must come from the page served by this server",
                            type_="bad_origin")
        return await handler(request)

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        expected = config.auth_token
        assert expected is not None
        token, from_query = _token_from(request)
        if token is not None and hmac.compare_digest(token.encode(), expected.encode()):
            wants_page = request.method == "GET" and "text/html" in request.headers.get("Accept", "")
            if from_query and wants_page:
                # Keep the token out of the address bar and history: cookie + redirect to the clean URL.
                clean = request.rel_url.with_query([(k, v) for k, v in request.query.items() if k != "token"])
                redirect = web.HTTPSeeOther(location=str(clean))
                redirect.set_cookie(TOKEN_COOKIE, expected, httponly=True, samesite="Strict", path="/")
                return redirect
            resp = await handler(request)
            if from_query and not resp.prepared:
                resp.set_cookie(TOKEN_COOKIE, expected, httponly=True, samesite="Strict", path="/")
            return resp
        wants_html = request.method == "GET" and "text/html" in request.headers.get("Accept", "")
        if wants_html:
            err = "<p style='color:#b00'>Wrong token.</p>" if token else ""
            page = _LOGIN_PAGE.format(action=html.escape(request.path), error=err)
            return web.Response(text=page, status=401, content_type="text/html")
        raise Unauthorized(f"{request.method} {request.path}: this server needs its access token",
                           "send 'Authorization: Bearer <token>', add ?token=<token> once in the browser, "
                           "or sign in on the start page", type_="unauthorized")

    return [guard, auth] if config.auth_required else [guard]
