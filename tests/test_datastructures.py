from __future__ import annotations

from trio_boca.datastructures import URL, Headers, QueryParams


def test_headers_are_case_insensitive_and_keep_repeats() -> None:
    headers = Headers.from_raw([(b"X-Tag", b"a"), (b"x-tag", b"b"), (b"Host", b"example.org")])
    assert headers["x-TAG"] == "b"
    assert headers.getlist("X-Tag") == ["a", "b"]
    assert "HOST" in headers and "missing" not in headers
    assert sorted(headers) == ["host", "x-tag"]


def test_query_params_decode_and_keep_blanks() -> None:
    params = QueryParams.from_query_string(b"q=a%20b&tag=1&tag=2&empty=")
    assert params["q"] == "a b"
    assert params.getlist("tag") == ["1", "2"]
    assert params["empty"] == ""
    assert params.get("nothing") is None


def test_url_from_scope_prefers_the_host_header() -> None:
    scope = {
        "type": "websocket",
        "scheme": "wss",
        "path": "/chat",
        "root_path": "/app",
        "query_string": b"x=1",
        "headers": [(b"host", b"example.org")],
        "server": ("10.0.0.1", 8000),
    }
    url = URL.from_scope(scope)
    assert str(url) == "wss://example.org/app/chat?x=1"
    del scope["headers"]
    assert URL.from_scope(scope).netloc == "10.0.0.1:8000"
