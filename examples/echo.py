"""Echo server: every message comes back; the connection is accepted and closed for you.

Run it (see README.md):  trio-boca run examples.echo:app
Then open http://127.0.0.1:8000/ in a browser, or talk to it from a terminal:
                         python examples/client.py ws://127.0.0.1:8000/echo
"""

from trio_boca import App, Request, Response, WebSocket

app = App()


@app.websocket_route("/echo")
async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


@app.route("/")
async def page(req: Request, res: Response) -> None:
    res.html = PAGE


PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>trio_boca echo</title>
  <style>
    body { font: 16px/1.4 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; }
    #log { border: 1px solid #ccc; min-height: 10rem; padding: .5rem; white-space: pre-wrap; }
    #state { font-weight: bold; }
  </style>
</head>
<body>
  <h1>Echo</h1>
  <p>Connection: <span id="state">connecting…</span></p>
  <form id="form"><input id="text" autocomplete="off" autofocus> <button>Send</button></form>
  <div id="log"></div>
  <script>
    const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
    const state = document.getElementById("state");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/echo`);
    ws.onopen = () => { state.textContent = "open"; };
    ws.onmessage = (event) => log("< " + event.data);
    ws.onclose = (event) => { state.textContent = `closed (${event.code})`; };
    document.getElementById("form").onsubmit = (event) => {
      event.preventDefault();
      const input = document.getElementById("text");
      ws.send(input.value);
      log("> " + input.value);
      input.value = "";
    };
  </script>
</body>
</html>
"""
