"""Drives channels_redis (Python) for the Go interop test.

Usage: interop.py REDIS_URL[,REDIS_URL...] PREFIX EXPIRY [CAPACITY]

Reads one command per line on stdin and answers one line on stdout:

    send CHANNEL          send the reference message to CHANNEL
    try_send CHANNEL      send the reference message: "ok sent" or "ok full"
    send_big CHANNEL      send {"big": 2**64-1, "edge": 2**63, "low": -(2**63)}
    group_send GROUP      send the reference message to GROUP
    group_add GROUP CH    add CH to GROUP
    new_channel PREFIX    answer "ok NAME" with a new process-specific channel
    receive_none CHANNEL SECONDS
                          wait SECONDS for a message: "ok none" or "ok got"
    receive CHANNEL       receive one message and compare it with the
                          reference, types included: "ok" or "mismatch ..."
    receive_fresh CHANNEL SECONDS
                          the same with a new layer, as a new process
                          receives (its turn starts at the first host),
                          waiting at most SECONDS: "ok", "ok none" or
                          "mismatch ..."
    quit

Answers start with "ok" or "error".
"""

import asyncio
import sys

from channels.exceptions import ChannelFull
from channels_redis.core import RedisChannelLayer

# The reference message. The Go test holds the same value.
REFERENCE = {
    "bytes": b"\x00\xff\xc2\xa3",
    "text": "£ ✓ 漢字 🙂",
    "int": 42,
    "neg": -7,
    "big": 2**63 - 1,
    "min": -(2**63),
    "float": 3.25,
    "nil": None,
    "true": True,
    "false": False,
    "empty": "",
    "emptyb": b"",
    "list": [1, "two", b"three", [], {}],
    "nested": {"a": {"b": [b"\xc2\xa3", "£", None]}, "h": [[b"host", b"example.com"]]},
}


def same(a, b, path="message"):
    """Compares two values, types included (1 and 1.0, b"x" and "x" differ)."""
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} {a!r} != {type(b).__name__} {b!r}"
    if isinstance(a, dict):
        if set(a) != set(b):
            return f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            d = same(a[k], b[k], f"{path}[{k!r}]")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = same(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    if a != b:
        return f"{path}: {a!r} != {b!r}"
    return None


async def main():
    url, prefix, expiry = sys.argv[1], sys.argv[2], int(sys.argv[3])
    capacity = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    layer = RedisChannelLayer(hosts=url.split(","), prefix=prefix, expiry=expiry, capacity=capacity)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        parts = line.split()
        if not parts:
            continue
        cmd, args = parts[0], parts[1:]
        try:
            if cmd == "quit":
                print("ok", flush=True)
                break
            elif cmd == "send":
                await layer.send(args[0], dict(REFERENCE))
                print("ok", flush=True)
            elif cmd == "try_send":
                try:
                    await layer.send(args[0], dict(REFERENCE))
                    print("ok sent", flush=True)
                except ChannelFull:
                    print("ok full", flush=True)
            elif cmd == "send_big":
                await layer.send(args[0], {"big": 2**64 - 1, "edge": 2**63, "low": -(2**63)})
                print("ok", flush=True)
            elif cmd == "group_send":
                await layer.group_send(args[0], dict(REFERENCE))
                print("ok", flush=True)
            elif cmd == "group_add":
                await layer.group_add(args[0], args[1])
                print("ok", flush=True)
            elif cmd == "new_channel":
                name = await layer.new_channel(args[0])
                print("ok", name, flush=True)
            elif cmd == "receive_none":
                try:
                    await asyncio.wait_for(layer.receive(args[0]), float(args[1]))
                    print("ok got", flush=True)
                except asyncio.TimeoutError:
                    print("ok none", flush=True)
            elif cmd == "receive_fresh":
                fresh = RedisChannelLayer(hosts=url.split(","), prefix=prefix, expiry=expiry, capacity=capacity)
                try:
                    msg = await asyncio.wait_for(fresh.receive(args[0]), float(args[1]))
                except asyncio.TimeoutError:
                    print("ok none", flush=True)
                else:
                    diff = same(msg, REFERENCE)
                    if diff:
                        print("mismatch", diff, flush=True)
                    else:
                        print("ok", flush=True)
                finally:
                    await fresh.close_pools()
            elif cmd == "receive":
                msg = await asyncio.wait_for(layer.receive(args[0]), 10)
                diff = same(msg, REFERENCE)
                if diff:
                    print("mismatch", diff, flush=True)
                else:
                    print("ok", flush=True)
            else:
                print("error unknown command", cmd, flush=True)
        except Exception as e:  # report, keep serving
            print("error", type(e).__name__, str(e).replace("\n", " "), flush=True)
    await layer.close_pools()


asyncio.run(main())
