// The reconnect storm on a mock clock: 1,000 ReconnectingWebSockets (the
// library's own scheduling code, on fake sockets) lose their server at
// once; it refuses every attempt for a while and then accepts them all.
// The times of the attempts made after it is back show how the clients
// return: in lockstep with a fixed delay, spread out with the library's
// full jitter. storm.mjs and TestReconnectStorm measure the same against a
// real server process.
import { test, mock } from "node:test";
import assert from "node:assert/strict";
import { ReconnectingWebSocket, defaults } from "../websocketbridge.mjs";
import { FakeWebSocket } from "./fakesocket.mjs";

const step = 10; // ms of mock time per tick

function storm({ clients, downMs, options }) {
  FakeWebSocket.reset();
  try {
    mock.timers.enable({ apis: ["setTimeout"] });
  } catch {
    mock.timers.enable(["setTimeout"]);
  }
  try {
    const sockets = [];
    for (let i = 0; i < clients; i++) sockets.push(new ReconnectingWebSocket("ws://h/", undefined, { WebSocket: FakeWebSocket, fetch: null, ...options }));
    for (const ws of FakeWebSocket.instances) ws.serverOpen();
    // The server goes away: every socket closes at t = 0.
    let seen = FakeWebSocket.instances.length;
    for (const ws of FakeWebSocket.instances) ws.serverClose(1006);
    const attemptsAfterUp = [];
    let t = 0;
    const limit = downMs + defaults.maxReconnectionDelay + 60000;
    while (sockets.some((s) => s.readyState !== ReconnectingWebSocket.OPEN) && t < limit) {
      mock.timers.tick(step);
      t += step;
      const fresh = FakeWebSocket.instances.slice(seen);
      seen = FakeWebSocket.instances.length;
      for (const ws of fresh) {
        if (t < downMs) ws.serverClose(1006); // refused while down
        else {
          attemptsAfterUp.push(t);
          ws.serverOpen();
        }
      }
    }
    const peak = (w) => {
      let best = 0;
      for (let i = 0, j = 0; i < attemptsAfterUp.length; i++) {
        while (attemptsAfterUp[i] - attemptsAfterUp[j] >= w) j++;
        best = Math.max(best, i - j + 1);
      }
      return (best * 1000) / w;
    };
    return {
      allBack: sockets.every((s) => s.readyState === ReconnectingWebSocket.OPEN),
      backMs: Math.max(...attemptsAfterUp) - downMs,
      peakPerSec100ms: peak(100),
      peakPerSec1s: peak(1000),
    };
  } finally {
    mock.timers.reset();
  }
}

const fixed = { jitter: false, minReconnectionDelay: 1500, maxReconnectionDelay: 1500, reconnectionDelayGrowFactor: 1 };

for (const downMs of [3000, 10000]) {
  test(`1,000 clients, server down ${downMs} ms: full jitter spreads the return, all back within the maximum delay + 2 s`, () => {
    const f = storm({ clients: 1000, downMs, options: fixed });
    const j = storm({ clients: 1000, downMs, options: {} });
    console.log(`# down ${downMs} ms: fixed 1.5 s ${JSON.stringify(f)}; library defaults ${JSON.stringify(j)}; ` +
      `peak ratio jitter/fixed: ${(j.peakPerSec100ms / f.peakPerSec100ms).toFixed(3)} (100 ms windows), ${(j.peakPerSec1s / f.peakPerSec1s).toFixed(2)} (1 s windows)`);
    assert.ok(f.allBack && j.allBack);
    // Lockstep: the fixed-delay clients all return within one tick.
    assert.equal(f.peakPerSec100ms, 10000);
    assert.ok(j.peakPerSec100ms <= 0.25 * f.peakPerSec100ms, `jitter peak ${j.peakPerSec100ms}/s vs fixed ${f.peakPerSec100ms}/s`);
    assert.ok(j.backMs <= defaults.maxReconnectionDelay + 2000, `last client back ${j.backMs} ms after the server`);
  });
}
