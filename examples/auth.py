"""Refusing a handshake: the API-key decorator from Bocadillo's guide, unchanged but the import.

It is untyped, as in the guide; mypy is told so in pyproject.toml.

`ws://…/secret?api_key=SECRET` is accepted; anything else gets HTTP 403.
"""

from trio_boca import App, WebSocket

app = App()


def has_valid_api_key(view):
    async def with_permission_check(ws, **kwargs):
        if ws.query_params.get("api_key") != "SECRET":
            await ws.reject()
        else:
            await view(ws, **kwargs)

    return with_permission_check


@app.websocket_route("/secret", auto_accept=False)
@has_valid_api_key
async def secret(ws):
    async with ws:
        # Proceed with an authorized client…
        pass


@app.websocket_route("/login", auto_accept=False)
async def login(ws: WebSocket) -> None:
    """The same check with a real HTTP answer: 401, a reason, and a challenge."""
    if ws.headers.get("authorization") != "Bearer SECRET":
        await ws.reject(
            401, body="a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
        return
    async with ws:
        await ws.send("welcome")
