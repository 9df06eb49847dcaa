"""Cookie-based sign-in as an app-wide check: no WebSocket without a session.

    trio-boca run examples.cookie_auth:app

Open http://127.0.0.1:8000/login?name=ada in a browser to sign in (a session
cookie is set), then http://127.0.0.1:8000/ to talk over /ws. A handshake
without a valid session is refused with 401 before any view runs; one from
a page of another site is refused with 403 by the origin check, which is on
by default; and no address may hold more than 20 sockets.
"""

from __future__ import annotations

import secrets

from trio_boca import App, HTTPError, Request, Response, WebSocket

app = App(max_connections_per_client=20)

#: Session id -> user name. In production: a store shared by the workers.
sessions: dict[str, str] = {}

PAGE = """<!doctype html>
<title>signed in</title>
<pre id="log"></pre>
<script>
  const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
  const ws = new WebSocket(`ws://${location.host}/ws`);
  ws.onopen = () => ws.send("hello");
  ws.onmessage = (event) => log(event.data);
  ws.onclose = (event) => log(`closed (${event.code})`);
</script>
"""


@app.route("/")
async def page(req: Request, res: Response) -> None:
    res.html = PAGE


# --8<-- [start:auth]
@app.route("/login")
async def login(req: Request, res: Response) -> None:
    name = req.query_params.get("name", "").strip()[:32]
    if not name:
        raise HTTPError(400, "a name is required: /login?name=...")
    session = secrets.token_urlsafe(16)
    sessions[session] = name
    res.headers["set-cookie"] = f"session={session}; HttpOnly; SameSite=Lax; Path=/"
    res.text = f"signed in as {name}"


@app.websocket_check
async def signed_in(ws: WebSocket) -> None:
    """Every WebSocket route, before accept: no session, no socket."""
    if ws.cookies.get("session") not in sessions:
        await ws.reject(401, body="sign in first: /login?name=...")


@app.websocket_route("/ws")
async def talk(ws: WebSocket) -> None:
    name = sessions[ws.cookies["session"]]
    async for message in ws:
        await ws.send(f"{name}: {message}")


# --8<-- [end:auth]
