// FakeWebSocket stands in for the browser's WebSocket in the unit tests of
// the library's own logic (timers, queue, backoff, dispatch); the browser
// tests in js/browser_test.go run the same code against a real gateway.
export class FakeWebSocket {
  static instances = [];
  static reset() { FakeWebSocket.instances = []; }
  static last() { return FakeWebSocket.instances.at(-1); }

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.argc = arguments.length;
    this.readyState = 0;
    this.protocol = "";
    this.bufferedAmount = 0;
    this.sent = [];
    this.closedWith = null;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeWebSocket.instances.push(this);
  }
  send(data) {
    if (this.readyState !== 1) throw new Error("InvalidStateError: send on a socket that is not open");
    this.sent.push(data);
  }
  close(code, reason) {
    this.closedWith = { code, reason };
    this.readyState = 2;
  }
  // The server's side.
  serverOpen() {
    this.readyState = 1;
    this.onopen && this.onopen({ type: "open" });
  }
  serverMessage(data) { this.onmessage && this.onmessage({ type: "message", data }); }
  serverClose(code = 1006, reason = "") {
    this.readyState = 3;
    this.onclose && this.onclose({ type: "close", code, reason, wasClean: code !== 1006 });
  }
}
