"""Which web pages may open the server's WebSockets: the ``Origin`` check (``--allowed-origins``).

Browsers let any page open a WebSocket to any address and send its ``Origin``; without a check, a page the
user visits could drive a local server that has no key. By default only the server's own pages (same
origin: the ``Origin``'s host and port are the ``Host`` the socket was opened to) are let in; clients that are
not browsers send no ``Origin`` and are not concerned.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

ANY_ORIGIN = "*"


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, without a default port or a trailing slash."""
    parts = urlsplit(origin.strip().rstrip("/").lower())
    if not parts.scheme or not parts.hostname:
        return origin.strip().lower()
    port = parts.port
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(parts.scheme)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + ("" if port in (None, default) else f":{port}")


def origin_problem(headers: Iterable[tuple[bytes, bytes]], allowed: Iterable[str]) -> str | None:
    """None when a WebSocket handshake with these ASGI ``headers`` may go on, else why not (one sentence).

    ``allowed``: origins let in besides the same origin (``*`` lets every origin in).
    """
    found = {name.lower(): value.decode("latin-1") for name, value in headers}
    origin = found.get(b"origin")
    if origin is None:
        return None  # not a browser: the check guards against web pages only
    allowed = {normalize_origin(o) if o != ANY_ORIGIN else o for o in allowed}
    if ANY_ORIGIN in allowed or normalize_origin(origin) in allowed:
        return None
    host = found.get(b"host", "").strip().lower()
    origin_parts = urlsplit(origin.strip().lower())
    if host and origin_parts.scheme in ("http", "https") and origin_parts.netloc:
        default = ":443" if origin_parts.scheme == "https" else ":80"
        netloc = origin_parts.netloc.removesuffix(default)
        if netloc == host.removesuffix(default):
            return None
    return f"the origin {origin!r} may not open this server's WebSockets (allowed: the same origin{_listed(allowed)}; see --allowed-origins)"


def _listed(allowed: set[str]) -> str:
    return "".join(f", {o}" for o in sorted(allowed))


def websocket_origin_problem(websocket: object) -> str | None:
    """:func:`origin_problem` for a Starlette WebSocket, with the app's ``--allowed-origins``."""
    scope = websocket.scope  # type: ignore[attr-defined]
    settings = scope["app"].state.settings
    return origin_problem(scope.get("headers", ()), settings.allowed_origins)
