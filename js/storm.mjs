// storm.mjs measures a reconnect storm: N clients, each a
// ReconnectingWebSocket of websocketbridge.mjs (the library's own backoff),
// connected to a server that is then killed and started again. It is
// driven through stdin and stdout by TestReconnectStorm (js/storm_test.go):
//
//   node js/storm.mjs -url ws://127.0.0.1:8000/echo/ -clients 1000 -mode jitter
//
// (TestReconnectStorm runs several such processes side by side, so that one
// event loop does not have to serve every client) prints
// {"event":"ready"} once every client is open, then expects a line
// "down" when the server has been killed and "up" when it answers again,
// and prints one JSON report when every client is open again (or after
// -timeout): peak handshake attempts and opens per second after the
// restart (over sliding 1 s and 100 ms windows), and the time until the
// last client was back.
//
// -mode jitter uses the library's defaults (full jitter); -mode fixed waits
// exactly -fixed ms before every retry, as clients without jitter do.
//
// The clients use NodeWebSocket, a minimal RFC 6455 client on node:http
// that sends an Origin header (the gateway refuses handshakes without one)
// and does what the library needs: open, close codes, text frames.
import http from "node:http";
import crypto from "node:crypto";
import readline from "node:readline";
import { ReconnectingWebSocket, defaults } from "./websocketbridge.mjs";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("-") ? [...acc, [a.replace(/^-+/, ""), all[i + 1]]] : acc), []),
);
const url = args.url || "ws://127.0.0.1:8000/echo/";
const clients = Number(args.clients || 1000);
const mode = args.mode || "jitter";
const fixed = Number(args.fixed || defaults.minReconnectionDelay);
const timeout = Number(args.timeout || 60000);
// Browsers ask the server over HTTP after a failed handshake (to tell a
// refusal from a server that is down); -probe true does that here too. It
// changes no delay, and 1,000 probes in this one process lag its event
// loop, which then fires overdue retries together, so it is off by default.
const probe = args.probe === "true";

const now = () => performance.now();
const attempts = []; // times of handshake attempts
const opens = []; // times of opens
const due = []; // times the library scheduled its retries for

class NodeWebSocket {
  constructor(wsURL) {
    attempts.push(now());
    this.url = wsURL;
    this.readyState = 0;
    this.protocol = "";
    this.bufferedAmount = 0;
    this.binaryType = "arraybuffer";
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    this._buf = Buffer.alloc(0);
    this._code = null;
    const u = new URL(wsURL.replace(/^ws/, "http"));
    this._req = http.request({
      host: u.hostname,
      port: u.port,
      path: u.pathname + u.search,
      agent: false,
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": crypto.randomBytes(16).toString("base64"),
        Origin: `http://${u.host}`,
      },
    });
    this._req.on("upgrade", (res, socket, head) => {
      this._sock = socket;
      socket.setNoDelay(true);
      socket.on("data", (d) => this._data(d));
      socket.on("close", () => this._closed(this._code ?? 1006));
      socket.on("error", () => {});
      this.readyState = 1;
      if (this.onopen) this.onopen({ type: "open" });
      if (head && head.length) this._data(head);
    });
    this._req.on("response", (res) => {
      res.resume();
      this._closed(1006); // a refused handshake looks like this in browsers too
    });
    this._req.on("error", () => {
      if (this.readyState === 3) return;
      if (this.onerror) this.onerror({ type: "error" });
      this._closed(1006);
    });
    this._req.end();
  }
  _closed(code) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    if (this.onclose) this.onclose({ type: "close", code, reason: "", wasClean: code !== 1006 });
  }
  _data(d) {
    this._buf = this._buf.length ? Buffer.concat([this._buf, d]) : d;
    for (;;) {
      const b = this._buf;
      if (b.length < 2) return;
      const op = b[0] & 0x0f;
      let len = b[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      if (b.length < off + len) return;
      const payload = b.subarray(off, off + len);
      this._buf = b.subarray(off + len);
      if (op === 1 && this.onmessage) this.onmessage({ type: "message", data: payload.toString("utf8") });
      else if (op === 2 && this.onmessage) this.onmessage({ type: "message", data: payload });
      else if (op === 9) this._write(10, payload);
      else if (op === 8) {
        this._code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        this._write(8, payload.subarray(0, 2));
        this._sock.end();
      }
    }
  }
  _write(op, payload) {
    if (!this._sock || this._sock.destroyed) return;
    const len = payload.length;
    const head = len < 126 ? Buffer.from([0x80 | op, 0x80 | len]) : Buffer.from([0x80 | op, 0x80 | 126, len >> 8, len & 255]);
    const mask = crypto.randomBytes(4);
    const body = Buffer.from(payload);
    for (let i = 0; i < body.length; i++) body[i] ^= mask[i & 3];
    this._sock.write(Buffer.concat([head, mask, body]));
  }
  send(data) {
    if (this.readyState !== 1) throw new Error("NodeWebSocket: not open");
    this._write(1, Buffer.from(String(data)));
  }
  close(code = 1000) {
    if (this.readyState >= 2) return;
    this.readyState = 2;
    if (this._sock) {
      this._write(8, Buffer.from([code >> 8, code & 255]));
      this._sock.end();
    } else {
      this._req.destroy();
    }
  }
}

const options = { WebSocket: NodeWebSocket, fetch: probe ? globalThis.fetch : null };
if (mode === "fixed") Object.assign(options, { jitter: false, minReconnectionDelay: fixed, maxReconnectionDelay: fixed, reconnectionDelayGrowFactor: 1 });
else if (mode !== "jitter") throw new Error("storm: -mode is jitter or fixed");

const sockets = [];
for (let i = 0; i < clients; i++) {
  const s = new ReconnectingWebSocket(url, undefined, options);
  s.addEventListener("open", () => opens.push(now()));
  s.addEventListener("reconnecting", (e) => due.push(now() + e.delay));
  sockets.push(s);
  // At most 100 handshakes at once while the clients first connect.
  if (i % 100 === 99) await new Promise((r) => setTimeout(r, 100));
}
const openCount = () => sockets.reduce((n, s) => n + (s.readyState === ReconnectingWebSocket.OPEN ? 1 : 0), 0);
const wait = async (cond, ms) => {
  const end = now() + ms;
  while (!cond() && now() < end) await new Promise((r) => setTimeout(r, 20));
  return cond();
};
if (!(await wait(() => openCount() === clients, timeout))) {
  console.log(JSON.stringify({ event: "error", error: `only ${openCount()} of ${clients} clients opened` }));
  process.exit(1);
}
console.log(JSON.stringify({ event: "ready" }));

let tDown = null, tUp = null;
const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (l) => {
  if (l.trim() === "down") tDown = now();
  if (l.trim() === "up") tUp = now();
});
await wait(() => tDown !== null, timeout);
const fromAttempt = attempts.length;
const fromOpen = opens.length;
const fromDue = due.length;
await wait(() => tUp !== null, timeout);
const back = await wait(() => openCount() === clients, timeout);

// peak returns the largest number of times in any window of w ms, per second.
function peak(times, w) {
  times = [...times].sort((a, b) => a - b);
  let best = 0;
  for (let i = 0, j = 0; i < times.length; i++) {
    while (times[i] - times[j] >= w) j++;
    best = Math.max(best, i - j + 1);
  }
  return Math.round((best * 1000) / w);
}
const after = attempts.slice(fromAttempt);
const reopened = opens.slice(fromOpen);
const scheduled = due.slice(fromDue).filter((t) => t >= tUp);
const report = {
  event: "report",
  mode,
  clients,
  options: mode === "fixed" ? { fixedDelay: fixed } : { minReconnectionDelay: defaults.minReconnectionDelay, reconnectionDelayGrowFactor: defaults.reconnectionDelayGrowFactor, maxReconnectionDelay: defaults.maxReconnectionDelay },
  allBack: back,
  reopened: reopened.length,
  stopped: sockets.filter((s) => s.stopped).length,
  downMs: Math.round(tUp - tDown),
  attemptsWhileDown: after.filter((t) => t < tUp).length,
  attemptsAfterUp: after.filter((t) => t >= tUp).length,
  peakOpensPerSec1s: peak(reopened, 1000),
  peakOpensPerSec100ms: peak(reopened, 100),
  peakAttemptsPerSec1s: peak(after, 1000),
  peakAttemptsPerSec100ms: peak(after, 100),
  // The library's own schedule: retries due once the server was up, at
  // the times the backoff chose (what the server would see from clients
  // on many machines, without this one process's event loop in between).
  scheduledAfterUp: scheduled.length,
  peakScheduledPerSec1s: peak(scheduled, 1000),
  peakScheduledPerSec100ms: peak(scheduled, 100),
  backAfterUpMs: reopened.length ? Math.round(Math.max(...reopened) - tUp) : null,
  // The raw times since "up" (negative: before it), for merging the
  // reports of several processes.
  attemptsMs: after.map((t) => Math.round(t - tUp)),
  opensMs: reopened.map((t) => Math.round(t - tUp)),
  scheduledMs: scheduled.map((t) => Math.round(t - tUp)),
  firstBackAfterUpMs: reopened.length ? Math.round(Math.min(...reopened) - tUp) : null,
};
console.log(JSON.stringify(report));
for (const s of sockets) s.close();
setTimeout(() => process.exit(0), 200);
