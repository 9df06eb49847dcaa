from __future__ import annotations

import uuid

import pytest

from trio_boca.routing import Pattern, Router


@pytest.mark.parametrize(
    ("pattern", "path", "params"),
    [
        ("/", "/", {}),
        ("/chat/{room}", "/chat/lobby", {"room": "lobby"}),
        ("/items/{id:int}", "/items/42", {"id": 42}),
        ("/price/{p:float}", "/price/9.5", {"p": 9.5}),
        ("/files/{rest:path}", "/files/a/b/c.txt", {"rest": "a/b/c.txt"}),
        (
            "/u/{id:uuid}",
            "/u/12345678-1234-5678-1234-567812345678",
            {"id": uuid.UUID("12345678-1234-5678-1234-567812345678")},
        ),
    ],
)
def test_patterns_match_and_convert(pattern: str, path: str, params: dict[str, object]) -> None:
    assert Pattern(pattern).match(path) == params


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("/chat/{room}", "/chat/lobby/extra"),
        ("/chat/{room}", "/chat/"),
        ("/items/{id:int}", "/items/abc"),
        ("/u/{id:uuid}", "/u/not-a-uuid"),
        ("/a.b", "/axb"),  # literal parts are not regular expressions
    ],
)
def test_patterns_do_not_match(pattern: str, path: str) -> None:
    assert Pattern(pattern).match(path) is None


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("chat", "must start with '/'"),
        ("/x/{id:decimal}", "unknown converter 'decimal'"),
        ("/x/{1id}", "'1id' is not a parameter name"),
        ("/x/{a}/{a}", "parameter 'a' appears twice"),
        ("/x/{a", "unbalanced brace"),
    ],
)
def test_bad_patterns_are_refused_at_declaration(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Pattern(pattern)


def test_duplicate_routes_are_refused_even_with_other_parameter_names() -> None:
    router: Router[str] = Router("WebSocket")
    router.add("/chat/{room}", "first")
    with pytest.raises(ValueError, match=r"duplicates route '/chat/\{room\}'"):
        router.add("/chat/{name}", "second")
    router.add("/chat/{id:int}", "a different shape is fine")


def test_first_declared_route_wins() -> None:
    router: Router[str] = Router("HTTP")
    router.add("/items/{id:int}", "by id")
    router.add("/items/{name}", "by name")
    assert router.match("/items/7") == ("by id", {"id": 7})
    assert router.match("/items/seven") == ("by name", {"name": "seven"})
    assert router.match("/elsewhere") is None
