"""Proxy headers, believed from trusted proxies only.

hypercorn's `ProxyFixMiddleware` does the parsing (hypercorn is a library
here, not the server); this module decides whom to believe, and makes what
it writes regular for a WebSocket scope.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, Literal

ProxyHeaders = Literal["x-forwarded", "forwarded"]


class TrustedProxies:
    """hypercorn's `ProxyFixMiddleware`, for trusted peers only.

    From a peer whose address is in `trusted` (addresses or networks, or
    "*" for any), the headers the proxy writes set the client address, the
    scheme and the host: `X-Forwarded-For`, `-Proto` and `-Host`, or with
    `headers="forwarded"` the `Forwarded` header. Only that family is read:
    a proxy passes the other through, and the client could have written it.
    Of several values the last, the one the nearest proxy added, is used.
    From any other peer the headers are ignored, so nobody can claim
    another address.
    """

    def __init__(self, app: Any, trusted: str, headers: ProxyHeaders = "x-forwarded") -> None:
        from hypercorn.middleware import ProxyFixMiddleware

        if headers not in ("x-forwarded", "forwarded"):
            raise ValueError(f"proxy headers are 'x-forwarded' or 'forwarded', not {headers!r}")
        self.app = app
        # hypercorn's "legacy" mode reads X-Forwarded-* only; "modern" reads
        # Forwarded (and X-Forwarded-* where no Forwarded is present).
        mode: Literal["legacy", "modern"] = "legacy" if headers == "x-forwarded" else "modern"
        self.fixed = ProxyFixMiddleware(_forwarded_scope(app), mode=mode, trusted_hops=1)
        self.anyone, self.networks = trusted_peers(trusted)

    def trusts(self, scope: Any) -> bool:
        client = scope.get("client")
        if self.anyone or not client:
            return self.anyone
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:  # not an IP address (a Unix socket, say)
            return False
        return any(address in network for network in self.networks)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and self.trusts(scope):
            await self.fixed(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def trusted_peers(
    text: str,
) -> tuple[bool, list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    """Parse "*" or comma-separated addresses and networks; ValueError if malformed."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    networks = []
    for name in names:
        if name != "*":
            try:
                networks.append(ipaddress.ip_network(name, strict=False))
            except ValueError:
                raise ValueError(f"{name!r} is not an IP address or network") from None
    return "*" in names, networks


def _forwarded_scope(app: Any) -> Callable[..., Any]:
    """`app`, seeing what hypercorn's middleware wrote, made regular: a
    lowercase scheme, `ws`/`wss` for a WebSocket, and the client's host
    without the quotes and port `Forwarded: for="198.51.100.7:4711"` carries."""

    async def regular(scope: Any, receive: Any, send: Any) -> None:
        scheme = str(scope.get("scheme", "")).lower()
        if scope["type"] == "websocket":
            scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
        client = scope.get("client")
        host = _client_host(str(client[0])) if client else None
        scope = {**scope, "scheme": scheme, "client": None if host is None else (host, 0)}
        await app(scope, receive, send)

    return regular


def _client_host(value: str) -> str:
    value = value.strip().strip('"')
    if value.startswith("["):  # [2001:db8::1]:4711
        return value[1:].partition("]")[0]
    if value.count(":") == 1:  # 198.51.100.7:4711
        return value.partition(":")[0]
    return value
