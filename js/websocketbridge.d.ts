// Type declarations for Channels for Go's WebSocketBridge
// (websocketbridge.mjs; websocketbridge.js defines the same names on the
// global `channels`).

/** The library's version. */
export declare const version: string;

/** Reconnection and queueing options; every field has a default (see defaults). */
export interface ReconnectOptions {
  /** Ceiling of the first retry's random wait, in ms (default 1500). */
  minReconnectionDelay?: number;
  /** Each further consecutive retry multiplies the ceiling by this (default 1.3). */
  reconnectionDelayGrowFactor?: number;
  /** The ceiling's cap, in ms (default 10000). */
  maxReconnectionDelay?: number;
  /** An attempt not open by then is closed and retried, in ms (default 4000). */
  connectionTimeout?: number;
  /** Consecutive failed attempts allowed before giving up (default Infinity). */
  maxRetries?: number;
  /** Frames kept while the socket is down (default 100). */
  maxQueuedMessages?: number;
  /** Close codes that end reconnection (default [1008, [4000, 4999]]). */
  finalCloseCodes?: number | Array<number | [number, number]> | ((code: number) => boolean);
  /** Keep reconnecting after two handshakes in a row were refused by a server that answers HTTP (default false). */
  reconnectOnRejectedHandshake?: boolean;
  /** Wait a random part of each backoff ceiling (default true); false waits the whole ceiling, so that clients return in lockstep. */
  jitter?: boolean;
  /** Log to the console (default false). */
  debug?: boolean;
  /** binaryType of each socket (default "arraybuffer"). */
  binaryType?: BinaryType;
  /** The WebSocket class to use (default globalThis.WebSocket). */
  WebSocket?: { new (url: string, protocols?: string | string[]): WebSocket };
  /** The fetch used to tell a refused handshake from a server that is down (default globalThis.fetch; null: never ask). */
  fetch?: typeof fetch | null;
}

/** The defaults of ReconnectOptions. */
export declare const defaults: Readonly<Required<Pick<ReconnectOptions,
  "minReconnectionDelay" | "reconnectionDelayGrowFactor" | "maxReconnectionDelay" | "connectionTimeout" |
  "maxRetries" | "maxQueuedMessages" | "finalCloseCodes" | "reconnectOnRejectedHandshake" | "jitter" | "debug">>>;

/** The wait before retry number attempt (0 first): random in [0, min(max, min * grow^attempt)). */
export declare function backoffDelay(attempt: number, options?: ReconnectOptions, random?: () => number): number;

/** Whether a close with code ends reconnection under finalCloseCodes. */
export declare function isFinalCloseCode(code: number, finalCloseCodes?: ReconnectOptions["finalCloseCodes"]): boolean;

/** Applies the bridge's URL rules: omitted ⇒ the page's host; "/path" ⇒ that path on the page's host; else verbatim. */
export declare function resolveURL(url?: string | null, location?: { protocol: string; host: string }): string;

/** Whether a server that failed a handshake answers HTTP (it refused the handshake) rather than being down. */
export declare function isRejectedHandshake(wsURL: string, fetchFn?: typeof fetch | null): Promise<boolean>;

/** An error raised by the library itself, given to "error" listeners. */
export interface ChannelsErrorEvent {
  type: "error";
  /** ETIMEDOUT, EHOSTDOWN, EQUEUEFULL, ECLOSED, EREJECTED or EINVAL. */
  code: "ETIMEDOUT" | "EHOSTDOWN" | "EQUEUEFULL" | "ECLOSED" | "EREJECTED" | "EINVAL";
  message: string;
  /** The dropped frame (EQUEUEFULL, ECLOSED from send). */
  data?: unknown;
  /** The dropped queued frames (ECLOSED when the socket stops). */
  dropped?: unknown[];
  error?: unknown;
}

/** Announces a retry. */
export interface ReconnectingEvent {
  type: "reconnecting";
  /** 1 for the first retry after an open, counting up while attempts fail. */
  attempt: number;
  /** The wait before it, in ms. */
  delay: number;
  /** The close code that led to it. */
  code: number;
}

export interface ReconnectingWebSocketEventMap {
  open: Event;
  message: MessageEvent;
  close: CloseEvent;
  error: Event | ChannelsErrorEvent;
  reconnecting: ReconnectingEvent;
}

/** A WebSocket that reconnects, keeping its listeners. */
export declare class ReconnectingWebSocket {
  constructor(url: string, protocols?: string | string[], options?: ReconnectOptions);
  static readonly CONNECTING: 0;
  static readonly OPEN: 1;
  static readonly CLOSING: 2;
  static readonly CLOSED: 3;
  readonly url: string;
  readonly protocols: string | string[] | undefined;
  readonly options: Required<ReconnectOptions>;
  /** OPEN while connected, CLOSED once stopped for good, CONNECTING in between. */
  readonly readyState: number;
  readonly protocol: string;
  readonly bufferedAmount: number;
  /** Frames waiting for the socket to open. */
  readonly queued: number;
  /** Consecutive failed attempts so far. */
  readonly retries: number;
  /** Whether the socket stopped reconnecting for good. */
  readonly stopped: boolean;
  onopen: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  onerror: ((event: Event | ChannelsErrorEvent) => void) | null;
  onreconnecting: ((event: ReconnectingEvent) => void) | null;
  addEventListener<K extends keyof ReconnectingWebSocketEventMap>(type: K, listener: (event: ReconnectingWebSocketEventMap[K]) => void): void;
  removeEventListener<K extends keyof ReconnectingWebSocketEventMap>(type: K, listener: (event: ReconnectingWebSocketEventMap[K]) => void): void;
  /** Sends now, or queues while down; false (after an error event) when the frame is dropped. */
  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): boolean;
  /** Closes and stops reconnecting for good; queued frames are dropped with an error event. */
  close(code?: number, reason?: string): void;
  /** Connects again at once with the retry count reset, also after close(). */
  reconnect(): void;
}

/** A multiplexed envelope's handler: the payload and the stream's name. */
export type StreamHandler<P = any> = (payload: P, stream: string) => void;

export interface WebSocketBridgeOptions extends ReconnectOptions {
  /** Receives binary frames and text frames that are not JSON. */
  onRawFrame?: (data: string | ArrayBuffer | Blob, event: MessageEvent) => void;
  /** The page location relative URLs resolve against (default globalThis.location). */
  location?: { protocol: string; host: string };
}

/** Channels' WebSocketBridge: a reconnecting socket that speaks {"stream", "payload"}. */
export declare class WebSocketBridge {
  constructor(options?: WebSocketBridgeOptions);
  /** The reconnecting socket; null before connect. */
  socket: ReconnectingWebSocket | null;
  /** Receives binary frames and text frames that are not JSON. */
  onRawFrame: ((data: string | ArrayBuffer | Blob, event: MessageEvent) => void) | null;
  /** Resolves url and opens the reconnecting socket. */
  connect(url?: string, protocols?: string | string[], options?: ReconnectOptions): this;
  /** Sets the default callback (frames without a stream) and starts delivery. */
  listen(callback?: (data: any, stream: null) => void): this;
  /** Registers or replaces the handler of one stream. */
  demultiplex<P = any>(stream: string, handler: StreamHandler<P>): this;
  /** Sends JSON.stringify(obj). */
  send(obj: unknown): boolean;
  /** A sender of {"stream": name, "payload": payload} frames. */
  stream<P = any>(name: string): { send(payload: P): boolean };
  /** Closes the socket for good. */
  close(code?: number, reason?: string): void;
}

/** A binding stream's payload. */
export interface BindingPayload<D = Record<string, unknown>> {
  action: "create" | "update" | "delete";
  pk: string | number;
  data?: D | null;
  model?: string;
  [extra: string]: unknown;
}

/** What changed, given to render. */
export interface BindingChange<T> {
  action: "create" | "update" | "delete" | "reset";
  pk: string | number | null;
  item: T | null;
  payload: BindingPayload | null;
}

export interface BindingCollectionOptions<T> {
  /** Called with the items after every change. */
  render?: (items: T[], change: BindingChange<T>) => void;
  /** Only payloads of this model (when they name one). */
  model?: string;
  /** Sort order of items(); arrival order without it. */
  compare?: (a: T, b: T) => number;
  /** The payload field holding a change id; a payload repeating an id with the same action is skipped (default "change_id"). */
  changeIdField?: string;
  /** How many change ids are remembered (default 10000). */
  maxChangeIds?: number;
}

/** A keyed list kept up to date by a binding stream. */
export declare class BindingCollection<T extends { pk: string | number } = { pk: string | number; [field: string]: any }> {
  constructor(options?: BindingCollectionOptions<T>);
  /** apply bound to the collection, for bridge.demultiplex. */
  readonly handler: (payload: BindingPayload) => boolean;
  readonly size: number;
  get(pk: string | number): T | undefined;
  items(): T[];
  /** Applies a payload; false when skipped (duplicate, other model, bad action, no pk, unknown delete). */
  apply(payload: BindingPayload): boolean;
  /** Replaces every item (e.g. with a list loaded after a reconnect). */
  reset(list?: T[]): void;
  /** Registers the collection as bridge's handler for stream. */
  bind(bridge: WebSocketBridge, stream: string): this;
}

declare const _default: {
  version: typeof version;
  defaults: typeof defaults;
  backoffDelay: typeof backoffDelay;
  isFinalCloseCode: typeof isFinalCloseCode;
  resolveURL: typeof resolveURL;
  isRejectedHandshake: typeof isRejectedHandshake;
  ReconnectingWebSocket: typeof ReconnectingWebSocket;
  WebSocketBridge: typeof WebSocketBridge;
  BindingCollection: typeof BindingCollection;
};
export default _default;
