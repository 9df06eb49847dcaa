"use strict";
const $ = (id) => document.getElementById(id);
const MAX_LINES = 500;  // the log keeps this many lines, dropping the oldest

let me = null;            // { name, room } once joined
let ws = null;            // the socket in use, open or opening
let retry = 0;            // failed attempts since the last successful connection
let timer = null, ticker = null;
let everConnected = false;
let lost = null;          // { at: Date, why } while the page is offline
let ownJoinPending = false, unread = 0;

// -- words for close codes ------------------------------------------------

// Why the connection ended, in words; `code` is set for the unusual ones,
// which are shown with their number in small print.
function describe(event, opened) {
  const reason = (event.reason || "").trim();
  switch (event.code) {
    case 1000: return { words: "the server ended the connection" };
    case 1001: return { words: "the server is restarting" };
    case 1006: return { words: opened ? "the connection was lost" : "the server can't be reached" };
    case 1008: return { words: reason ? `the server closed the connection: ${reason}`
                                      : "the server closed the connection" };
    case 1011: return { words: reason === "keepalive ping timeout" ? "the connection went quiet"
                                                                   : "the server had a problem" };
    case 1013: return { words: "the chat is unavailable, trying again" };
    default: return { words: reason || "the connection closed", code: event.code };
  }
}

// -- small helpers --------------------------------------------------------

const pad = (n) => String(n).padStart(2, "0");
const clock = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
const shortClock = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}`;

function duration(ms) {
  const s = Math.max(1, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor(s / 60) % 60} min`;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;  // never innerHTML: names and texts are users'
  return node;
}

// A readable colour per name, the same on every page.
function colourOf(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360} 55% 42%)`;
}

// -- the log --------------------------------------------------------------

function append(line, mine) {
  const log = $("log");
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 48;
  log.appendChild(line);
  while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
  if (atBottom || mine) log.scrollTop = log.scrollHeight;
}

// A system line: joins, leaves, outages. kind: "", "good" or "bad".
function system(text, kind = "", when = new Date(), small = "") {
  const line = element("p", `system ${kind}`.trim());
  line.append(element("span", "", text));
  if (small) line.append(" ", element("small", "", small));
  const time = element("time", "", clock(when));
  time.dateTime = when.toISOString();
  line.append(" ", time);
  append(line, false);
}

function message(m) {
  const mine = m.name === me.name;
  const now = new Date();
  const previous = $("log").lastElementChild;
  const follows = previous && previous.classList.contains("message") &&
                  previous.dataset.from === m.name && now - previous.sent < 120000;
  const line = element("div", "message" + (mine ? " mine" : "") + (follows ? " follows" : ""));
  line.dataset.from = m.name;
  line.sent = now;
  if (!mine && !follows) {
    const who = element("span", "who", m.name);
    who.style.color = colourOf(m.name);
    line.append(who);
  }
  const time = element("time", "", shortClock(now));
  time.dateTime = now.toISOString();
  line.append(element("span", "body", m.text), " ", time);  // the time floats after the last line
  append(line, mine);
  if (document.hidden) { unread += 1; title(); }
}

function received(m) {
  if (m.type === "message") return message(m);
  const own = m.name === me.name;
  if (m.type === "join" && own && ownJoinPending) {
    // Our own arrival: said once, on the first connection; a reconnection
    // has its own line already.
    ownJoinPending = false;
    if (!everConnected) system(`you joined #${me.room}`);
    everConnected = true;
    return;
  }
  if (m.type === "leave" && own) return;  // an earlier connection of ours, timed out
  system(`${m.name} ${m.type === "join" ? "joined" : "left"}`);
}

// -- the connection -------------------------------------------------------

function status(kind, text, small = "") {
  $("status").dataset.kind = kind;
  $("state").textContent = text;
  if (small) $("state").append(" ", element("small", "", small));
  $("retry").hidden = kind !== "waiting";
  $("send").disabled = kind !== "online";
}

function stopTimers() {
  clearTimeout(timer);
  clearInterval(ticker);
  timer = ticker = null;
}

function connect() {
  stopTimers();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/ws/${encodeURIComponent(me.room)}` +
              `?name=${encodeURIComponent(me.name)}`;
  status("connecting", lost ? "reconnecting…" : `connecting to ${me.room}…`);
  const socket = new WebSocket(url);
  let opened = false;
  ws = socket;

  socket.onopen = () => {
    opened = true;
    retry = 0;
    ownJoinPending = true;
    if (lost) {
      const now = new Date();
      const word = everConnected ? "reconnected" : "connected";
      system(`${word} after ${duration(now - lost.at)} offline`, "good", now);
      lost = null;
    }
    status("online", `connected to ${me.room}`);
  };
  socket.onmessage = (event) => {
    let m;
    try { m = JSON.parse(event.data); } catch { return; }
    if (m && typeof m.name === "string") received(m);
  };
  socket.onclose = (event) => {
    if (ws !== socket) return;  // a socket we left on purpose
    ws = null;
    const why = describe(event, opened);
    const small = why.code ? `(code ${why.code})` : "";
    if (opened || !lost) {
      lost = { at: new Date(), why };
      const what = opened ? "connection lost" : "could not connect";
      system(`${what}: ${why.words}`, "bad", lost.at, small);
    } else if (event.code !== 1006) {
      lost.why = why;  // a new, better reason than "can't be reached"
    }
    wait(lost.why);
  };
}

// Back off (0.5 s doubling to 10 s, with some jitter, so that a room
// does not all come back at the same instant), counting down meanwhile.
function wait(why) {
  const delay = Math.min(10, 0.5 * 2 ** retry++) * (0.85 + Math.random() * 0.3);
  const due = Date.now() + delay * 1000;
  const small = why.code ? `(code ${why.code})` : "";
  const tick = () => {
    const left = Math.max(1, Math.ceil((due - Date.now()) / 1000));
    status("waiting", `${why.words}; reconnecting in ${left}\u00a0s…`, small);
  };
  tick();
  ticker = setInterval(tick, 250);
  timer = setTimeout(connect, delay * 1000);
}

function retryNow() {
  if (me && !ws) connect();
}

// -- joining, leaving, talking -------------------------------------------

function title() {
  const room = me ? `#${me.room} · ` : "";
  document.title = `${unread ? `(${unread}) ` : ""}${room}Chat`;
}

function join(name, room) {
  me = { name: name.trim().slice(0, 32), room: room.trim() || "lobby" };
  try { localStorage.setItem("chat-name", me.name); } catch { /* private mode */ }
  history.replaceState(null, "", `?room=${encodeURIComponent(me.room)}&name=${encodeURIComponent(me.name)}`);
  $("log").replaceChildren();
  everConnected = false;
  lost = null;
  retry = 0;
  $("room-name").textContent = `#${me.room}`;
  $("welcome").hidden = true;
  $("log").hidden = $("say").hidden = $("leave").hidden = false;
  title();
  connect();
}

function leave() {
  stopTimers();
  const socket = ws;
  ws = null;
  if (socket) socket.close(1000);
  me = null;
  history.replaceState(null, "", location.pathname);
  $("room-name").textContent = "Chat";
  status("idle", "not connected");
  $("welcome").hidden = false;
  $("log").hidden = $("say").hidden = $("leave").hidden = true;
  title();
}

$("join").onsubmit = (event) => {
  event.preventDefault();
  if (!$("name").value.trim()) return $("name").focus();
  join($("name").value, $("room").value);
  $("text").focus();
};
$("say").onsubmit = (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (text && ws && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify({ text }));
    $("text").value = "";
  }
};
$("leave").onclick = leave;
$("retry").onclick = retryNow;
window.addEventListener("online", retryNow);
document.addEventListener("visibilitychange", () => {
  if (document.hidden) return;
  unread = 0;
  title();
  retryNow();
});

const params = new URLSearchParams(location.search);
try { $("name").value = localStorage.getItem("chat-name") || ""; } catch { /* private mode */ }
if (params.get("room")) $("room").value = params.get("room");
if ((params.get("name") || "").trim()) {
  $("name").value = params.get("name");
  join($("name").value, $("room").value);
} else {
  $("name").focus();
}
