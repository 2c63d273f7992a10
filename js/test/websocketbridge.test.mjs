import { test, beforeEach, afterEach, mock } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

import {
  version, defaults, backoffDelay, isFinalCloseCode, resolveURL, isRejectedHandshake,
  ReconnectingWebSocket, WebSocketBridge, BindingCollection,
} from "../websocketbridge.mjs";
import { classic } from "../build.mjs";
import { FakeWebSocket } from "./fakesocket.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const flush = () => new Promise((resolve) => setImmediate(resolve));

beforeEach(() => {
  FakeWebSocket.reset();
  // Node 20.11+ takes an object, Node 18.19 (Debian 12) a list.
  try {
    mock.timers.enable({ apis: ["setTimeout"] });
  } catch {
    mock.timers.enable(["setTimeout"]);
  }
});
afterEach(() => mock.timers.reset());

// A socket on the fake class; fetch null: no handshake probe unless a test gives one.
function rws(options = {}) {
  return new ReconnectingWebSocket("ws://h/ws/", undefined, { WebSocket: FakeWebSocket, fetch: null, ...options });
}

function events(sock, ...types) {
  const got = [];
  for (const t of types) sock.addEventListener(t, (e) => got.push(e));
  return got;
}

test("backoffDelay: full jitter in [0, min(max, min*grow^n))", () => {
  assert.equal(backoffDelay(0, {}, () => 0), 0);
  assert.equal(backoffDelay(0, {}, () => 0.9999999), 1499);
  assert.equal(backoffDelay(1, {}, () => 0.9999999), 1949);
  assert.equal(backoffDelay(2, {}, () => 0.5), Math.floor(0.5 * 1500 * 1.3 * 1.3));
  assert.equal(backoffDelay(50, {}, () => 0.9999999), 9999); // capped
  assert.equal(backoffDelay(3, { minReconnectionDelay: 100, reconnectionDelayGrowFactor: 2, maxReconnectionDelay: 500 }, () => 0.9999999), 499);
  assert.equal(backoffDelay(1, { jitter: false }, () => 0), 1950, "without jitter: the ceiling");
  // Spread over the whole window, not bunched at one end.
  const n = 20000;
  let sum = 0, lo = Infinity, hi = 0;
  for (let i = 0; i < n; i++) {
    const d = backoffDelay(10, {});
    sum += d; lo = Math.min(lo, d); hi = Math.max(hi, d);
  }
  assert.ok(lo < 50 && hi > 9950, `range ${lo}..${hi}`);
  assert.ok(Math.abs(sum / n - 5000) < 150, `mean ${sum / n}`);
});

test("isFinalCloseCode: 1008 and 4000-4999 by default; numbers, lists, ranges and functions", () => {
  for (const c of [1008, 4000, 4001, 4999]) assert.equal(isFinalCloseCode(c), true, String(c));
  for (const c of [1000, 1001, 1006, 1011, 1012, 3999, 5000]) assert.equal(isFinalCloseCode(c), false, String(c));
  assert.equal(isFinalCloseCode(1000, 1000), true);
  assert.equal(isFinalCloseCode(4001, []), false);
  assert.equal(isFinalCloseCode(3001, [[3000, 3005]]), true);
  assert.equal(isFinalCloseCode(7, (c) => c === 7), true);
});

test("resolveURL: omitted, relative, https and absolute", () => {
  const page = { protocol: "http:", host: "example.com:8000" };
  assert.equal(resolveURL(undefined, page), "ws://example.com:8000");
  assert.equal(resolveURL("/chat/", page), "ws://example.com:8000/chat/");
  assert.equal(resolveURL("/chat/", { protocol: "https:", host: "example.com" }), "wss://example.com/chat/");
  assert.equal(resolveURL("ws://other:1/x", page), "ws://other:1/x");
  assert.throws(() => resolveURL("/x", null), /page location/);
});

test("protocols are passed through untouched (J1)", () => {
  rws();
  assert.equal(FakeWebSocket.last().argc, 1);
  new ReconnectingWebSocket("ws://h/", ["a", "b"], { WebSocket: FakeWebSocket, fetch: null });
  assert.deepEqual(FakeWebSocket.last().protocols, ["a", "b"]);
});

test("reconnects after a close of an open socket, and listeners survive", () => {
  const s = rws();
  const got = events(s, "open", "message", "close", "reconnecting");
  let onmessage = 0;
  s.onmessage = () => onmessage++;
  const first = FakeWebSocket.last();
  first.serverOpen();
  first.serverMessage("1");
  first.serverClose(1001);
  assert.equal(FakeWebSocket.instances.length, 1);
  const rec = got.find((e) => e.type === "reconnecting");
  assert.equal(rec.attempt, 1);
  assert.equal(rec.code, 1001);
  assert.ok(rec.delay >= 0 && rec.delay < defaults.minReconnectionDelay);
  assert.equal(s.readyState, ReconnectingWebSocket.CONNECTING);
  mock.timers.tick(defaults.minReconnectionDelay);
  assert.equal(FakeWebSocket.instances.length, 2);
  const second = FakeWebSocket.last();
  second.serverOpen();
  second.serverMessage("2");
  assert.deepEqual(got.filter((e) => e.type === "message").map((e) => e.data), ["1", "2"]);
  assert.equal(got.filter((e) => e.type === "open").length, 2);
  assert.equal(onmessage, 2);
  // Events of the old socket, if any came late, no longer reach the listeners.
  first.serverMessage("stale");
  assert.equal(onmessage, 2);
});

test("a final close code (4001, 1008) stops reconnecting", () => {
  for (const code of [4001, 1008]) {
    FakeWebSocket.reset();
    const s = rws();
    FakeWebSocket.last().serverOpen();
    const got = events(s, "reconnecting", "close");
    let stoppedInListener = null;
    s.addEventListener("close", () => { stoppedInListener = s.stopped && s.readyState === ReconnectingWebSocket.CLOSED; });
    FakeWebSocket.last().serverClose(code);
    assert.equal(stoppedInListener, true, "close listeners see the socket stopped");
    mock.timers.tick(60000);
    assert.equal(FakeWebSocket.instances.length, 1, `code ${code}`);
    assert.equal(got.length, 1);
    assert.equal(got[0].code, code);
    assert.equal(s.stopped, true);
    assert.equal(s.readyState, ReconnectingWebSocket.CLOSED);
  }
});

test("close() stays closed, and later sends are dropped with an error", () => {
  const s = rws();
  const errors = events(s, "error");
  FakeWebSocket.last().serverOpen();
  s.close(1000, "bye");
  assert.deepEqual(FakeWebSocket.last().closedWith, { code: 1000, reason: "bye" });
  FakeWebSocket.last().serverClose(1000);
  mock.timers.tick(60000);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(s.send("late"), false);
  assert.equal(errors.at(-1).code, "ECLOSED");
  assert.equal(errors.at(-1).data, "late");
  // close() while waiting for a retry cancels the retry.
  FakeWebSocket.reset();
  const t = rws();
  FakeWebSocket.last().serverOpen();
  FakeWebSocket.last().serverClose(1001);
  const closes = events(t, "close");
  t.close();
  mock.timers.tick(60000);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(closes.length, 1);
  // reconnect() revives it.
  t.reconnect();
  assert.equal(FakeWebSocket.instances.length, 2);
});

test("frames sent while down are queued up to the bound and flushed in order on open, before open listeners send", () => {
  const s = rws({ maxQueuedMessages: 3 });
  const errors = events(s, "error");
  s.addEventListener("open", () => s.send("from open"));
  assert.equal(s.send("a"), true);
  assert.equal(s.send("b"), true);
  assert.equal(s.send("c"), true);
  assert.equal(s.queued, 3);
  assert.equal(s.send("d"), false);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, "EQUEUEFULL");
  assert.equal(errors[0].data, "d");
  FakeWebSocket.last().serverOpen();
  assert.deepEqual(FakeWebSocket.last().sent, ["a", "b", "c", "from open"]);
  assert.equal(s.queued, 0);
  // Down again: queued across the retry, flushed on the next socket.
  FakeWebSocket.last().serverClose(1006);
  s.send("e");
  mock.timers.tick(defaults.minReconnectionDelay);
  FakeWebSocket.last().serverOpen();
  assert.deepEqual(FakeWebSocket.last().sent, ["e", "from open"]);
});

test("connection timeout closes the attempt and retries with a growing window", () => {
  const s = rws({ connectionTimeout: 1000, minReconnectionDelay: 100, reconnectionDelayGrowFactor: 2, maxReconnectionDelay: 10000 });
  const got = events(s, "error", "reconnecting");
  mock.timers.tick(999);
  assert.equal(got.length, 0);
  mock.timers.tick(1);
  assert.equal(got[0].code, "ETIMEDOUT");
  assert.ok(FakeWebSocket.instances[0].closedWith, "the timed-out attempt is closed");
  assert.equal(got[1].type, "reconnecting");
  assert.ok(got[1].delay < 200, `first retry after a failure waits < min*grow: ${got[1].delay}`);
  assert.equal(s.retries, 1);
  // A late open of the abandoned socket changes nothing.
  FakeWebSocket.instances[0].serverOpen();
  assert.equal(s.readyState, ReconnectingWebSocket.CONNECTING);
  mock.timers.tick(200);
  assert.equal(FakeWebSocket.instances.length, 2);
});

test("maxRetries: giving up with EHOSTDOWN; an open resets the count", () => {
  const s = rws({ maxRetries: 2, minReconnectionDelay: 10, reconnectionDelayGrowFactor: 1 });
  const errors = events(s, "error");
  FakeWebSocket.last().serverClose(1006); // failure 1
  mock.timers.tick(10);
  FakeWebSocket.last().serverClose(1006); // failure 2
  mock.timers.tick(10);
  assert.equal(s.retries, 2);
  FakeWebSocket.last().serverOpen(); // resets
  assert.equal(s.retries, 0);
  FakeWebSocket.last().serverClose(1001);
  mock.timers.tick(10);
  for (let i = 0; i < 3; i++) {
    FakeWebSocket.last().serverClose(1006);
    mock.timers.tick(10);
  }
  assert.equal(errors.at(-1).code, "EHOSTDOWN");
  assert.equal(s.stopped, true);
  const n = FakeWebSocket.instances.length;
  mock.timers.tick(60000);
  assert.equal(FakeWebSocket.instances.length, n);
});

test("a refused handshake stops reconnecting unless asked; a server that is down is retried", async () => {
  // The server answers HTTP: it refused the WebSocket.
  let probes = [];
  const up = async (url, init) => { probes.push([url, init.method]); return { type: "basic", status: 404 }; };
  let s = rws({ fetch: up });
  const errors = events(s, "error");
  FakeWebSocket.last().serverClose(1006);
  await flush();
  assert.deepEqual(probes, [["http://h/ws/", "HEAD"]]);
  // One refusal may be a server that came up just after the attempt
  // failed: it retries once.
  assert.equal(s.stopped, false);
  mock.timers.tick(defaults.minReconnectionDelay * defaults.reconnectionDelayGrowFactor); // after one failure
  assert.equal(FakeWebSocket.instances.length, 2);
  FakeWebSocket.last().serverClose(1006);
  await flush();
  assert.equal(probes.length, 2);
  assert.equal(errors.at(-1).code, "EREJECTED");
  assert.equal(s.stopped, true);
  mock.timers.tick(60000);
  assert.equal(FakeWebSocket.instances.length, 2);

  // Refused, then an open: the count starts again.
  FakeWebSocket.reset();
  s = rws({ fetch: up });
  FakeWebSocket.last().serverClose(1006);
  await flush();
  mock.timers.tick(defaults.maxReconnectionDelay);
  FakeWebSocket.last().serverOpen();
  FakeWebSocket.last().serverClose(1001);
  mock.timers.tick(defaults.maxReconnectionDelay);
  FakeWebSocket.last().serverClose(1006);
  await flush();
  assert.equal(s.stopped, false, "one refusal after an open");
  s.close();

  // Down: the probe fails too, so it retries.
  FakeWebSocket.reset();
  s = rws({ fetch: async () => { throw new TypeError("fetch failed"); } });
  FakeWebSocket.last().serverClose(1006);
  await flush();
  mock.timers.tick(defaults.minReconnectionDelay * defaults.reconnectionDelayGrowFactor); // after one failure
  assert.equal(FakeWebSocket.instances.length, 2);

  // A proxy's 502 while the backend is down is not a refusal.
  assert.equal(await isRejectedHandshake("wss://h/x", async () => ({ type: "basic", status: 502 })), false);
  assert.equal(await isRejectedHandshake("wss://h/x", async () => ({ type: "basic", status: 403 })), true);
  assert.equal(await isRejectedHandshake("wss://h/x", null), false);

  // Asked to: retries without probing.
  s.close();
  FakeWebSocket.reset();
  probes = [];
  s = rws({ fetch: up, reconnectOnRejectedHandshake: true });
  FakeWebSocket.last().serverClose(1006);
  await flush();
  mock.timers.tick(defaults.minReconnectionDelay * defaults.reconnectionDelayGrowFactor); // after one failure
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.equal(probes.length, 0);
});

function bridge(options) {
  const b = new WebSocketBridge({ WebSocket: FakeWebSocket, fetch: null, location: { protocol: "http:", host: "h:1" }, ...options });
  return b;
}

test("WebSocketBridge: default callback vs stream handlers (the spec's tested behaviours)", () => {
  const b = bridge();
  b.connect("/ws/");
  assert.equal(FakeWebSocket.last().url, "ws://h:1/ws/");
  const calls = [];
  b.listen((obj, stream) => calls.push(["default", obj, stream]));
  FakeWebSocket.last().serverOpen();
  const raw = [];
  b.socket.addEventListener("message", (e) => raw.push(e.data));
  FakeWebSocket.last().serverMessage('{"a":1}');
  FakeWebSocket.last().serverMessage('{"b":2}');
  assert.deepEqual(calls, [["default", { a: 1 }, null], ["default", { b: 2 }, null]]);
  assert.deepEqual(raw, ['{"a":1}', '{"b":2}']);
  calls.length = 0;
  FakeWebSocket.last().serverMessage('{"stream":"nobody","payload":{}}');
  assert.deepEqual(calls, []);
  b.demultiplex("stream1", (p, s) => calls.push(["stream1", p, s]));
  b.demultiplex("stream2", (p, s) => calls.push(["stream2", p, s]));
  FakeWebSocket.last().serverMessage('{"x":1}');
  FakeWebSocket.last().serverMessage('{"stream":"stream1","payload":{"id":1}}');
  FakeWebSocket.last().serverMessage('{"stream":"stream2","payload":[2]}');
  assert.deepEqual(calls, [["default", { x: 1 }, null], ["stream1", { id: 1 }, "stream1"], ["stream2", [2], "stream2"]]);
});

test("WebSocketBridge: send and stream().send transmit exactly the spec's JSON", () => {
  const b = bridge();
  b.connect("ws://abs/");
  FakeWebSocket.last().serverOpen();
  b.send({ x: [1, "two"], y: null });
  b.stream("stream1").send({ id: 1, text: "é" });
  assert.deepEqual(FakeWebSocket.last().sent, ['{"x":[1,"two"],"y":null}', '{"stream":"stream1","payload":{"id":1,"text":"é"}}']);
});

test("WebSocketBridge: non-JSON and binary frames reach onRawFrame and never throw (J2)", () => {
  const raw = [];
  const b = bridge({ onRawFrame: (data) => raw.push(data) });
  b.connect("/");
  const calls = [];
  b.listen((o) => calls.push(o));
  FakeWebSocket.last().serverOpen();
  const bin = new Uint8Array([1, 2]).buffer;
  FakeWebSocket.last().serverMessage("not json");
  FakeWebSocket.last().serverMessage(bin);
  FakeWebSocket.last().serverMessage("42");
  FakeWebSocket.last().serverMessage("null");
  assert.deepEqual(raw, ["not json", bin]);
  assert.deepEqual(calls, [42, null]);
  // Without a raw-frame callback they are ignored.
  b.onRawFrame = null;
  assert.doesNotThrow(() => FakeWebSocket.last().serverMessage("{broken"));
});

test("WebSocketBridge: listen before connect, and delivery survives a reconnect", () => {
  const b = bridge();
  const calls = [];
  b.listen((o) => calls.push(o));
  b.connect();
  assert.equal(FakeWebSocket.last().url, "ws://h:1");
  FakeWebSocket.last().serverOpen();
  FakeWebSocket.last().serverClose(1001);
  mock.timers.tick(defaults.minReconnectionDelay);
  FakeWebSocket.last().serverOpen();
  FakeWebSocket.last().serverMessage('{"n":1}');
  assert.deepEqual(calls, [{ n: 1 }]);
});

test("BindingCollection applies create, update and delete, skips duplicates and renders", () => {
  const renders = [];
  const c = new BindingCollection({ render: (items, change) => renders.push([items.map((i) => ({ ...i })), change.action]) });
  assert.equal(c.apply({ action: "create", pk: 1, data: { title: "a", done: false }, model: "app.item", change_id: 10 }), true);
  assert.equal(c.apply({ action: "create", pk: 2, data: { title: "b" }, model: "app.item", change_id: 11, extra: "ignored" }), true);
  assert.equal(c.apply({ action: "update", pk: 1, data: { done: true }, model: "app.item", change_id: 12 }), true);
  assert.equal(c.apply({ action: "update", pk: 1, data: { done: false }, model: "app.item", change_id: 12 }), false, "duplicate change id");
  assert.deepEqual(c.get(1), { title: "a", done: true, pk: 1 });
  assert.equal(c.apply({ action: "delete", pk: 2, model: "app.item", change_id: 13 }), true);
  // One change, two actions for one socket (a pk change: delete then create).
  assert.equal(c.apply({ action: "create", pk: 5, data: { title: "e" }, model: "app.item", change_id: 13 }), true, "same change id, other action");
  assert.equal(c.apply({ action: "create", pk: 5, data: { title: "e" }, model: "app.item", change_id: 13 }), false, "repeat of change 13's create");
  assert.equal(c.get(5).title, "e");
  assert.equal(c.apply({ action: "delete", pk: 5, model: "app.item", change_id: 14 }), true);
  assert.equal(c.apply({ action: "delete", pk: 99 }), false, "unknown item");
  assert.equal(c.apply({ action: "rename", pk: 1 }), false);
  assert.equal(c.apply({ action: "update", data: {} }), false, "no pk");
  assert.equal(c.apply(null), false);
  assert.deepEqual(c.items(), [{ title: "a", done: true, pk: 1 }]);
  assert.equal(c.size, 1);
  assert.deepEqual(renders.map((r) => r[1]), ["create", "create", "update", "delete", "create", "delete"]);
  assert.deepEqual(renders[1][0], [{ title: "a", done: false, pk: 1 }, { title: "b", pk: 2 }]);
  // An update of an unseen item adds it (it became visible to this group).
  c.apply({ action: "update", pk: "7", data: { title: "seen late" } });
  assert.equal(c.get(7).title, "seen late");
  c.reset([{ pk: 3, title: "c" }, { pk: 4, title: "d" }]);
  assert.deepEqual(c.items().map((i) => i.pk), [3, 4]);
  assert.equal(renders.at(-1)[1], "reset");
});

test("BindingCollection: model filter, sort order, bounded change-id memory, and use through a bridge", () => {
  const c = new BindingCollection({ model: "app.item", compare: (a, b) => a.title.localeCompare(b.title), maxChangeIds: 2 });
  assert.equal(c.apply({ action: "create", pk: 1, data: { title: "z" }, model: "other.thing" }), false);
  c.apply({ action: "create", pk: 1, data: { title: "z" }, model: "app.item", change_id: 1 });
  c.apply({ action: "create", pk: 2, data: { title: "a" }, model: "app.item", change_id: 2 });
  c.apply({ action: "create", pk: 3, data: { title: "m" }, model: "app.item", change_id: 3 });
  assert.deepEqual(c.items().map((i) => i.title), ["a", "m", "z"]);
  // Only the last two ids are remembered: id 1 is forgotten, id 3 is not.
  assert.equal(c.apply({ action: "create", pk: 3, data: { title: "m" }, change_id: 3 }), false);
  assert.equal(c.apply({ action: "create", pk: 1, data: { title: "y" }, change_id: 1 }), true);

  const b = bridge();
  const list = new BindingCollection();
  list.bind(b, "items");
  b.connect("/");
  b.listen();
  FakeWebSocket.last().serverOpen();
  FakeWebSocket.last().serverMessage(JSON.stringify({ stream: "items", payload: { action: "create", pk: 5, data: { t: 1 } } }));
  assert.deepEqual(list.items(), [{ t: 1, pk: 5 }]);
});

test("the classic build is websocketbridge.mjs and defines the global channels", () => {
  const src = readFileSync(join(here, "..", "websocketbridge.mjs"), "utf8");
  const built = readFileSync(join(here, "..", "websocketbridge.js"), "utf8");
  assert.equal(built, classic(src), "websocketbridge.js is out of date: run node js/build.mjs");
  const ctx = vm.createContext({});
  vm.runInContext(built, ctx);
  assert.equal(typeof ctx.channels.WebSocketBridge, "function");
  assert.equal(typeof ctx.channels.BindingCollection, "function");
  assert.equal(ctx.channels.version, version);
  const pkg = JSON.parse(readFileSync(join(here, "..", "package.json"), "utf8"));
  assert.equal(pkg.version, version);
});

test("the declarations name every export of the module", async () => {
  const dts = readFileSync(join(here, "..", "websocketbridge.d.ts"), "utf8");
  const declared = new Set([...dts.matchAll(/^export declare (?:const|function|class) (\w+)/gm)].map((m) => m[1]));
  const mod = await import("../websocketbridge.mjs");
  const exported = Object.keys(mod).filter((k) => k !== "default");
  assert.deepEqual([...declared].sort(), exported.sort());
  assert.match(dts, /^export default _default;$/m);
});
