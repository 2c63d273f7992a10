// Channels for Go: WebSocketBridge, a reconnecting, multiplexing WebSocket
// client for browsers (and Node 22+, or Node 20 with --experimental-websocket).
//
// The public API keeps the names of Django Channels' WebSocketBridge
// (connect, listen, demultiplex, send, stream, socket), so front-end code
// written for it ports by changing one import. On top of it: reconnection
// with exponential backoff and full jitter, a connection timeout, an
// optional retry limit, final close codes that end reconnection, a bounded
// queue for frames sent while the socket is down, a raw-frame callback for
// frames that are not JSON, and BindingCollection, which keeps a keyed list
// up to date from a binding stream.
//
// This file is the ES module. websocketbridge.js is the same code as a
// classic script defining the global `channels`; build.mjs writes it from
// this file.

/** The library's version; the Go package and package.json carry the same. */
export const version = "0.1.0";

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/**
 * The reconnection defaults. Delays are in milliseconds.
 */
export const defaults = Object.freeze({
  // Retry n (0 for the first) waits a random time in
  // [0, min(maxReconnectionDelay, minReconnectionDelay * reconnectionDelayGrowFactor^n)):
  // exponential backoff with full jitter.
  minReconnectionDelay: 1500,
  reconnectionDelayGrowFactor: 1.3,
  maxReconnectionDelay: 10000,
  // An attempt not open by then is closed and retried (error code ETIMEDOUT).
  connectionTimeout: 4000,
  // Consecutive failed attempts allowed before giving up (error code
  // EHOSTDOWN); Infinity retries forever. A successful open resets the count.
  maxRetries: Infinity,
  // Frames sent while the socket is down wait here, flushed in order on
  // open; past the bound a frame is dropped with an error event (EQUEUEFULL).
  maxQueuedMessages: 100,
  // Close codes after which the socket does not reconnect: a number, an
  // array of numbers and [low, high] ranges, or a function of the code.
  finalCloseCodes: [1008, [4000, 4999]],
  // Two handshakes in a row refused by a server that answers HTTP (403,
  // say) end reconnection unless this is true. See isRejectedHandshake.
  reconnectOnRejectedHandshake: false,
  // false waits the whole ceiling instead of a random part of it: every
  // client of a restarted server then returns at the same moment. Kept for
  // comparisons; leave it on.
  jitter: true,
  debug: false,
});

/**
 * backoffDelay returns the wait before retry number attempt (0 for the
 * first retry): a random time in [0, ceiling) where ceiling is
 * min(max, min * grow^attempt), or the ceiling itself with jitter: false.
 * random defaults to Math.random.
 */
export function backoffDelay(attempt, options = defaults, random = Math.random) {
  const o = { ...defaults, ...options };
  const ceiling = Math.min(o.maxReconnectionDelay, o.minReconnectionDelay * Math.pow(o.reconnectionDelayGrowFactor, attempt));
  return Math.floor(o.jitter === false ? ceiling : random() * ceiling);
}

/**
 * isFinalCloseCode reports whether a close with code ends reconnection under
 * the finalCloseCodes option (see defaults).
 */
export function isFinalCloseCode(code, finalCloseCodes = defaults.finalCloseCodes) {
  if (typeof finalCloseCodes === "function") return !!finalCloseCodes(code);
  if (typeof finalCloseCodes === "number") return code === finalCloseCodes;
  if (!Array.isArray(finalCloseCodes)) return false;
  for (const c of finalCloseCodes) {
    if (Array.isArray(c) ? code >= c[0] && code <= c[1] : code === c) return true;
  }
  return false;
}

/**
 * resolveURL applies WebSocketBridge's URL rules: no url means the page's
 * host (ws, or wss under https); a url starting with "/" is that path on the
 * page's host; anything else is used as given.
 */
export function resolveURL(url, loc = globalThis.location) {
  if (url !== undefined && url !== null && !String(url).startsWith("/")) return String(url);
  if (!loc) throw new Error("channels: a relative or omitted URL needs a page location");
  const scheme = loc.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${loc.host}${url === undefined || url === null ? "" : url}`;
}

// probeURL turns a WebSocket URL into the HTTP URL that isRejectedHandshake
// asks.
function probeURL(wsURL) {
  return String(wsURL).replace(/^ws(s?):/i, "http$1:");
}

/**
 * isRejectedHandshake tells a refused handshake from an unreachable server
 * after an attempt that closed before it opened: browsers report both as
 * close code 1006. It asks the same URL over HTTP (HEAD): an HTTP answer
 * below 500 means the server is up and refused the WebSocket; a network
 * error or a 5xx answer (a proxy whose backend is down) means retry. A
 * cross-origin server that does not allow the request by CORS looks like a
 * network error, so the socket retries as Channels' WebSocketBridge did.
 * Without fetch it answers false (retry).
 */
export async function isRejectedHandshake(wsURL, fetchFn = globalThis.fetch) {
  if (typeof fetchFn !== "function") return false;
  try {
    const res = await fetchFn(probeURL(wsURL), { method: "HEAD", mode: "cors", cache: "no-store", credentials: "same-origin", redirect: "manual" });
    return res.type === "opaqueredirect" || (res.status > 0 && res.status < 500);
  } catch {
    return false;
  }
}

// Listeners is a small event registry: listeners by type, plus on<type>
// properties, called in that order. A listener that throws does not stop
// the others (the error is reported with reportError or console.error).
class Listeners {
  constructor(owner) {
    this.owner = owner;
    this.byType = new Map();
  }
  add(type, fn) {
    if (typeof fn !== "function") return;
    if (!this.byType.has(type)) this.byType.set(type, []);
    const list = this.byType.get(type);
    if (!list.includes(fn)) list.push(fn);
  }
  remove(type, fn) {
    const list = this.byType.get(type);
    if (!list) return;
    const i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
  }
  dispatch(type, event) {
    const fns = [...(this.byType.get(type) || [])];
    const prop = this.owner["on" + type];
    if (typeof prop === "function") fns.push(prop);
    for (const fn of fns) {
      try {
        fn.call(this.owner, event);
      } catch (err) {
        report(err);
      }
    }
  }
}

function report(err) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(err);
  else if (typeof console !== "undefined") console.error(err);
}

function errorEvent(code, message, extra) {
  return { type: "error", code, message, ...extra };
}

/**
 * ReconnectingWebSocket is a WebSocket that comes back. It has the
 * WebSocket's surface (send, close, readyState, url, protocol,
 * addEventListener, onopen/onmessage/onclose/onerror) and keeps its
 * listeners across reconnects. Events: "open", "message", "close" and
 * "error" are the underlying socket's events (error events of the library
 * itself carry a code: ETIMEDOUT, EHOSTDOWN, EQUEUEFULL, ECLOSED,
 * EREJECTED); "reconnecting" ({attempt, delay, code}) announces a retry.
 */
export class ReconnectingWebSocket {
  constructor(url, protocols, options = {}) {
    this.url = url;
    this.protocols = protocols;
    this.options = { ...defaults, ...options };
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
    this.onreconnecting = null;
    this._listeners = new Listeners(this);
    this._ws = null;
    this._queue = [];
    this._retries = 0; // consecutive failed attempts
    this._stopped = false; // true after close() or a final close
    this._timer = null; // pending reconnect
    this._connectTimer = null;
    this._opened = false; // the current attempt opened
    this._refused = 0; // consecutive attempts refused by a server that answers HTTP
    this._WebSocket = this.options.WebSocket || globalThis.WebSocket;
    this._fetch = "fetch" in this.options ? this.options.fetch : globalThis.fetch;
    if (typeof this._WebSocket !== "function") throw new Error("channels: no WebSocket class here (pass options.WebSocket)");
    this._connect();
  }

  static get CONNECTING() { return CONNECTING; }
  static get OPEN() { return OPEN; }
  static get CLOSING() { return CLOSING; }
  static get CLOSED() { return CLOSED; }

  /** readyState is OPEN while connected, CLOSED once stopped for good, and CONNECTING in between (including while waiting to retry). */
  get readyState() {
    if (this._ws && this._ws.readyState === OPEN && this._opened) return OPEN;
    if (this._stopped) return this._ws && this._ws.readyState === CLOSING ? CLOSING : CLOSED;
    return CONNECTING;
  }
  /** protocol is the subprotocol the server chose on the current socket. */
  get protocol() { return this._ws ? this._ws.protocol : ""; }
  /** bufferedAmount is the current socket's, plus nothing for the queue. */
  get bufferedAmount() { return this._ws ? this._ws.bufferedAmount : 0; }
  /** queued is the number of frames waiting for the socket to open. */
  get queued() { return this._queue.length; }
  /** retries is the number of consecutive failed attempts so far. */
  get retries() { return this._retries; }
  /** stopped reports whether the socket has stopped reconnecting for good. */
  get stopped() { return this._stopped; }

  addEventListener(type, fn) { this._listeners.add(type, fn); }
  removeEventListener(type, fn) { this._listeners.remove(type, fn); }

  /**
   * send sends data at once while open; otherwise it queues it (up to
   * maxQueuedMessages) for the next open. It returns false, after an error
   * event, when the frame is dropped: the queue is full or the socket was
   * closed for good.
   */
  send(data) {
    if (this._stopped) {
      this._dispatch("error", errorEvent("ECLOSED", "channels: send on a closed socket; the frame is dropped", { data }));
      return false;
    }
    if (this.readyState === OPEN) {
      this._ws.send(data);
      return true;
    }
    if (this._queue.length >= this.options.maxQueuedMessages) {
      this._dispatch("error", errorEvent("EQUEUEFULL", `channels: ${this._queue.length} frames already wait for the socket; the frame is dropped`, { data }));
      return false;
    }
    this._queue.push(data);
    return true;
  }

  /**
   * close closes the socket with code (default 1000) and reason, and stops
   * reconnecting for good. Frames still queued are dropped with an error
   * event. reconnect() starts again.
   */
  close(code = 1000, reason = "") {
    const wasStopped = this._stopped;
    this._stopped = true;
    this._clearTimers();
    if (this._ws && this._ws.readyState < CLOSING) {
      try {
        this._ws.close(code, reason);
      } catch (err) {
        report(err);
      }
    } else if (!wasStopped) {
      // Nothing open to close (waiting to retry): say it closed now.
      this._detach();
      this._dispatch("close", { type: "close", code, reason, wasClean: true });
    }
    this._dropQueue();
  }

  /**
   * reconnect closes the current socket if any and connects again at once,
   * with the retry count reset; it also revives a socket that stopped.
   */
  reconnect() {
    this._stopped = false;
    this._retries = 0;
    this._refused = 0;
    this._clearTimers();
    if (this._ws) {
      const old = this._detach();
      try {
        if (old.readyState < CLOSING) old.close(1000, "reconnect");
      } catch (err) {
        report(err);
      }
    }
    this._connect();
  }

  _log(...args) {
    if (this.options.debug && typeof console !== "undefined") console.debug("channels:", ...args);
  }

  _dispatch(type, event) { this._listeners.dispatch(type, event); }

  _clearTimers() {
    clearTimeout(this._timer);
    clearTimeout(this._connectTimer);
    this._timer = this._connectTimer = null;
  }

  _dropQueue() {
    if (this._queue.length === 0) return;
    const dropped = this._queue;
    this._queue = [];
    this._dispatch("error", errorEvent("ECLOSED", `channels: the socket closed for good; ${dropped.length} queued frames are dropped`, { dropped }));
  }

  _detach() {
    const ws = this._ws;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    this._ws = null;
    return ws;
  }

  _connect() {
    if (this._stopped) return;
    this._opened = false;
    this._log("connecting to", this.url, "attempt", this._retries);
    let ws;
    try {
      ws = this.protocols === undefined ? new this._WebSocket(this.url) : new this._WebSocket(this.url, this.protocols);
    } catch (err) {
      // A malformed URL or a blocked port: retrying cannot help.
      this._stopped = true;
      this._dispatch("error", errorEvent("EINVAL", "channels: " + (err && err.message ? err.message : err), { error: err }));
      this._dropQueue();
      return;
    }
    this._ws = ws;
    ws.binaryType = this.options.binaryType || "arraybuffer";
    this._connectTimer = setTimeout(() => {
      if (this._ws !== ws || this._opened) return;
      this._log("connection timeout");
      this._dispatch("error", errorEvent("ETIMEDOUT", `channels: not open after ${this.options.connectionTimeout} ms`));
      this._refused = 0;
      this._detach();
      try {
        ws.close();
      } catch (err) {
        report(err);
      }
      this._failed(1006);
    }, this.options.connectionTimeout);
    ws.onopen = (event) => {
      clearTimeout(this._connectTimer);
      this._opened = true;
      this._retries = 0;
      this._refused = 0;
      this._log("open");
      // Queued frames go first, so that frames sent from open listeners
      // follow them.
      const queue = this._queue;
      this._queue = [];
      for (const data of queue) ws.send(data);
      this._dispatch("open", event);
    };
    ws.onmessage = (event) => this._dispatch("message", event);
    ws.onerror = (event) => this._dispatch("error", event);
    ws.onclose = (event) => {
      clearTimeout(this._connectTimer);
      const opened = this._opened;
      this._detach();
      this._log("closed", event.code, event.reason);
      // A final close code stops the socket before the close listeners
      // run, so that they see stopped (and readyState CLOSED).
      const final = !this._stopped && isFinalCloseCode(event.code, this.options.finalCloseCodes);
      if (final) {
        this._log("final close code", event.code);
        this._stopped = true;
      }
      this._dispatch("close", event);
      if (this._stopped) {
        this._dropQueue();
        return;
      }
      if (opened) {
        this._retries = 0;
        this._schedule(event.code);
        return;
      }
      if (this.options.reconnectOnRejectedHandshake || typeof this._fetch !== "function") {
        this._failed(event.code);
        return;
      }
      isRejectedHandshake(this.url, this._fetch).then((rejected) => {
        if (this._stopped || this._ws) return;
        // Two refusals in a row: one alone may be a server that came up
        // between the failed attempt and the question.
        this._refused = rejected ? this._refused + 1 : 0;
        if (this._refused >= 2) {
          this._stopped = true;
          this._dispatch("error", errorEvent("EREJECTED", "channels: the server refused the WebSocket handshake; not reconnecting"));
          this._dropQueue();
          return;
        }
        this._failed(event.code);
      });
    };
  }

  // _failed counts a failed attempt and retries, unless that was the last.
  _failed(code) {
    if (this._stopped) return;
    this._retries++;
    if (this._retries > this.options.maxRetries) {
      this._stopped = true;
      this._dispatch("error", errorEvent("EHOSTDOWN", `channels: gave up after ${this.options.maxRetries} retries`));
      this._dropQueue();
      return;
    }
    this._schedule(code);
  }

  _schedule(code) {
    // After a close of an open socket _retries is 0; after n failed
    // attempts it is n. Either way the next wait is backoffDelay(_retries).
    const attempt = this._retries;
    const delay = backoffDelay(attempt, this.options);
    this._log("reconnecting in", delay, "ms");
    this._dispatch("reconnecting", { type: "reconnecting", attempt: attempt + 1, delay, code });
    clearTimeout(this._timer);
    this._timer = setTimeout(() => {
      this._timer = null;
      this._connect();
    }, delay);
  }
}

/**
 * WebSocketBridge wraps a ReconnectingWebSocket and understands the
 * multiplexing envelope {"stream": name, "payload": ...}.
 */
export class WebSocketBridge {
  constructor(options = {}) {
    this.options = { ...options };
    this.socket = null;
    this.default_cb = null;
    this.streams = Object.create(null);
    /** onRawFrame(data, event) receives frames that are not JSON text: binary frames and text that does not parse. */
    this.onRawFrame = options.onRawFrame || null;
    this._listening = false;
  }

  /**
   * connect resolves url (see resolveURL) and opens the reconnecting
   * socket with protocols (passed through untouched) and options (see
   * defaults). It returns the bridge.
   */
  connect(url, protocols, options) {
    const resolved = resolveURL(url, this.options.location || globalThis.location);
    this.socket = new ReconnectingWebSocket(resolved, protocols, { ...this.options, ...options });
    if (this._listening) this._install();
    return this;
  }

  /**
   * listen sets the default callback, called as callback(object, null) for
   * every JSON frame without a stream property, and starts delivery to it
   * and to the stream handlers. Frames of a stream without a handler are
   * ignored.
   */
  listen(callback) {
    this.default_cb = typeof callback === "function" ? callback : null;
    if (!this._listening) {
      this._listening = true;
      if (this.socket) this._install();
    }
    return this;
  }

  _install() {
    this.socket.addEventListener("message", (event) => this._deliver(event));
  }

  _deliver(event) {
    const data = event.data;
    let msg;
    if (typeof data === "string") {
      try {
        msg = JSON.parse(data);
      } catch {
        msg = undefined;
      }
    }
    if (msg === undefined || msg === null || typeof msg !== "object") {
      if (typeof data === "string" && msg !== undefined && this.default_cb) {
        // JSON, but not an object (a number, a string): the default callback.
        this.default_cb(msg, null);
        return;
      }
      if (typeof this.onRawFrame === "function") this.onRawFrame(data, event);
      return;
    }
    if (Object.prototype.hasOwnProperty.call(msg, "stream")) {
      const handler = this.streams[msg.stream];
      if (typeof handler === "function") handler(msg.payload, msg.stream);
      return;
    }
    if (this.default_cb) this.default_cb(msg, null);
  }

  /** demultiplex registers (or replaces) the handler of one stream, called as handler(payload, stream). */
  demultiplex(stream, handler) {
    this.streams[stream] = handler;
    return this;
  }

  /** send sends JSON.stringify(obj); see ReconnectingWebSocket.send for frames sent while down. */
  send(obj) {
    if (!this.socket) throw new Error("channels: send before connect");
    return this.socket.send(JSON.stringify(obj));
  }

  /** stream returns an object whose send(payload) sends {"stream": name, "payload": payload}. */
  stream(name) {
    return { send: (payload) => this.send({ stream: name, payload }) };
  }

  /** close closes the socket for good (see ReconnectingWebSocket.close). */
  close(code, reason) {
    if (this.socket) this.socket.close(code, reason);
  }
}

/**
 * BindingCollection keeps a keyed list from the payloads of a binding
 * stream ({"action": "create"|"update"|"delete", "pk", "data", "model"})
 * and calls render after each change. A payload whose change id
 * (options.changeIdField, default "change_id") came before with the same
 * action is a repeat and is skipped: one change can bring one socket two
 * messages with one id but different actions (a delete and an update when
 * the socket is in a group that lost the row and in one that kept it, a
 * delete and a create when the primary key changed).
 *
 *   const todos = new BindingCollection({render: (items) => draw(items)});
 *   bridge.demultiplex("todos", todos.handler);
 */
export class BindingCollection {
  constructor(options = {}) {
    this.render = options.render || null;
    this.model = options.model || null; // when set, payloads of other models are ignored
    this.compare = options.compare || null;
    this.changeIdField = options.changeIdField || "change_id";
    this.maxChangeIds = options.maxChangeIds || 10000;
    this._items = new Map(); // String(pk) -> item
    this._seen = new Set();
    /** handler is apply bound to the collection, for bridge.demultiplex. */
    this.handler = (payload) => this.apply(payload);
  }

  /** size is the number of items. */
  get size() { return this._items.size; }

  /** get returns the item with primary key pk, or undefined. */
  get(pk) { return this._items.get(String(pk)); }

  /**
   * items returns the items (each the payload's data with its pk), in
   * arrival order or sorted by options.compare.
   */
  items() {
    const list = [...this._items.values()];
    if (this.compare) list.sort(this.compare);
    return list;
  }

  /**
   * apply applies one payload and calls render(items, change) when it
   * changed the list. It returns false for a payload it skipped: a
   * duplicate change id, another model, an unknown action, no pk, or the
   * delete of an unknown item.
   */
  apply(payload) {
    if (!payload || typeof payload !== "object") return false;
    if (this.model && payload.model && payload.model !== this.model) return false;
    const changeId = payload[this.changeIdField];
    if (changeId !== undefined && changeId !== null) {
      const key = String(changeId) + " " + String(payload.action);
      if (this._seen.has(key)) return false;
      this._seen.add(key);
      if (this._seen.size > this.maxChangeIds) this._seen.delete(this._seen.values().next().value);
    }
    const { action, pk } = payload;
    if (pk === undefined || pk === null) return false;
    const key = String(pk);
    const data = payload.data && typeof payload.data === "object" ? payload.data : {};
    let item;
    switch (action) {
      case "create":
        item = { ...data, pk };
        this._items.set(key, item);
        break;
      case "update": {
        // An update of an item not seen yet (it became visible) adds it.
        item = { ...(this._items.get(key) || {}), ...data, pk };
        this._items.set(key, item);
        break;
      }
      case "delete":
        item = this._items.get(key);
        if (!item) return false;
        this._items.delete(key);
        break;
      default:
        return false;
    }
    this._render({ action, pk, item, payload });
    return true;
  }

  /**
   * reset replaces the items with list (objects with a pk field, as a page
   * loads them after a reconnect) and calls render.
   */
  reset(list = []) {
    this._items.clear();
    for (const item of list) {
      if (item && item.pk !== undefined && item.pk !== null) this._items.set(String(item.pk), { ...item });
    }
    this._render({ action: "reset", pk: null, item: null, payload: null });
  }

  /** bind registers the collection as bridge's handler for stream, and returns it. */
  bind(bridge, stream) {
    bridge.demultiplex(stream, this.handler);
    return this;
  }

  _render(change) {
    if (typeof this.render === "function") this.render(this.items(), change);
  }
}

export default { version, defaults, backoffDelay, isFinalCloseCode, resolveURL, isRejectedHandshake, ReconnectingWebSocket, WebSocketBridge, BindingCollection };
