"""HTTP views: `Request`, `Response` and `HTTPError`.

A view is `async def view(req, res, **params)`, in Bocadillo's style: it reads
the request and fills in the response it was handed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

from .datastructures import ScopeView

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class HTTPError(Exception):
    """Raise in a view to answer with `status` and a readable `detail`."""

    def __init__(self, status: int, detail: str = "") -> None:
        self.status = status
        self.detail = detail or HTTPStatus(status).phrase
        super().__init__(status, self.detail)

    def __str__(self) -> str:
        return f"{self.status}: {self.detail}"

    def response(self) -> Response:
        """The plain-text response this error answers with: `status`, and `detail` as its body."""
        return plain(self.status, self.detail)


class ClientDisconnected(Exception):
    """The client went away before its request body arrived."""


class Request(ScopeView):
    """An HTTP request, as a view sees it (`url`, `headers`, `query_params`,
    `path_params` and `client` come from `ScopeView`).

    Reading the body raises `HTTPError` for a body over the app's
    `max_body_size` (413) or one `text()` or `json()` cannot decode (400),
    which, left to escape the view, answers the request; and
    `ClientDisconnected` if the client leaves before its body has arrived,
    which, left to escape, ends the request without an answer.
    """

    def __init__(self, scope: Message, receive: Receive, *, max_body_size: int) -> None:
        self.scope = scope
        self._receive = receive
        self._max_body_size = max_body_size
        self._body: bytes | None = None

    @property
    def method(self) -> str:
        """The HTTP method, upper-case; `"HEAD"` for a HEAD request, though the GET view runs it."""
        method: str = self.scope["method"]
        return method

    async def body(self) -> bytes:
        """The whole body; a body over the app's `max_body_size` is a 413.

        It is read as it arrives and abandoned at the limit, so an oversized
        body never sits in memory; once read, it is kept for later calls.
        Raises `HTTPError` (413) for a body over the limit, and
        `ClientDisconnected` if the client leaves before all of it has arrived.
        """
        if self._body is None:
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnected
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self._max_body_size:
                    raise HTTPError(413, f"request body over {self._max_body_size} bytes")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            self._body = b"".join(chunks)
        return self._body

    async def text(self) -> str:
        """The body decoded as UTF-8.

        Raises `HTTPError` (400) if it is not UTF-8, and, as `body()` does,
        `HTTPError` (413) for a body over the limit and `ClientDisconnected` if
        the client leaves before it has arrived.
        """
        try:
            return (await self.body()).decode()
        except UnicodeDecodeError:
            raise HTTPError(400, "request body is not UTF-8 text") from None

    async def json(self) -> Any:
        """The body decoded as JSON.

        Raises `HTTPError` (400) if it is not valid JSON, and, as `body()`
        does, `HTTPError` (413) for a body over the limit and
        `ClientDisconnected` if the client leaves before it has arrived.
        """
        try:
            return json.loads(await self.body())
        except ValueError as exc:
            raise HTTPError(400, f"invalid JSON: {exc}") from None


class Response:
    """The response a view fills in: set one of `text`, `html`, `json` or `content`."""

    def __init__(self) -> None:
        self.status_code = 200
        #: Response headers; names are sent lower-cased.
        self.headers: dict[str, str] = {}
        self.content = b""

    def _set(self, content: bytes, media_type: str) -> None:
        self.content = content
        self.headers["content-type"] = media_type

    @property
    def text(self) -> str:
        """The content as text; setting it sets UTF-8 content, served as `text/plain`.

        Reading content that is not UTF-8 raises `UnicodeDecodeError`.
        """
        return self.content.decode()

    @text.setter
    def text(self, value: str) -> None:
        self._set(value.encode(), "text/plain; charset=utf-8")

    @property
    def html(self) -> str:
        """The content as text; setting it sets UTF-8 content, served as `text/html`.

        Reading content that is not UTF-8 raises `UnicodeDecodeError`.
        """
        return self.content.decode()

    @html.setter
    def html(self, value: str) -> None:
        self._set(value.encode(), "text/html; charset=utf-8")

    @property
    def json(self) -> Any:
        """The content decoded as JSON; setting it encodes a value, served as `application/json`.

        Reading content that is not JSON raises `ValueError`; setting a value
        JSON cannot encode raises `TypeError`.
        """
        return json.loads(self.content)

    @json.setter
    def json(self, value: Any) -> None:
        self._set(json.dumps(value).encode(), "application/json")

    async def send(self, send: Send, *, head: bool = False) -> None:
        """Send the response; for HEAD, the headers of the full one and no body."""
        headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()
        ]
        if not any(name == b"content-length" for name, _ in headers):
            headers.append((b"content-length", str(len(self.content)).encode()))
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else self.content})


def plain(status: int, text: str = "", headers: dict[str, str] | None = None) -> Response:
    """A text response, for the framework's own answers (404, 405, 413, 500)."""
    res = Response()
    res.status_code = status
    res.text = text or HTTPStatus(status).phrase
    res.headers.update(headers or {})
    return res
