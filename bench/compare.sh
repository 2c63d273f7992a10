#!/usr/bin/env bash
# Side-by-side end-to-end measurements, in one run on this machine:
#
#   reference   channels-load's plain net/http + WebSocket server (the ceiling)
#   runserver   examples/loadapp runserver: gateway + workers in one process,
#               in-memory layer
#   redis       examples/loadapp gateway + runworker as separate processes
#               over a private redis-server
#
# for echo, fanout and http, printing each result and the ratio to the
# reference. Usage:
#
#   bench/compare.sh [echo|fanout|http|all]
#
# Environment: ECHO_ARGS, FANOUT_ARGS, HTTP_ARGS override the load shapes;
# WORKERS (default 2 runworker processes) and THREADS (default 16 each).
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
ECHO_ARGS=${ECHO_ARGS:-"-c 50 -n 2000"}
FANOUT_ARGS=${FANOUT_ARGS:-"-s 200 -m 500"}
HTTP_ARGS=${HTTP_ARGS:-"-c 50 -n 20000"}
WORKERS=${WORKERS:-2}
THREADS=${THREADS:-16}

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
waitport() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; return 1; }

echo "== building"
go build -o "$tmp/load" ./cmd/channels-load
go build -o "$tmp/loadapp" ./examples/loadapp

ref=$(freeport); rs=$(freeport); gw=$(freeport); rp=$(freeport)
"$tmp/load" reference -addr "127.0.0.1:$ref" >"$tmp/ref.log" 2>&1 & pids+=($!); refpid=$!
"$tmp/loadapp" runserver "127.0.0.1:$rs" --nodelay -v 0 >"$tmp/rs.log" 2>&1 & pids+=($!); rspid=$!
redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 & pids+=($!)
waitport "$rp"
layer="redis://127.0.0.1:$rp/0?prefix=bench"
"$tmp/loadapp" gateway --layer "$layer" -p "$gw" -v 0 >"$tmp/gw.log" 2>&1 & pids+=($!); gwpid=$!
for _ in $(seq "$WORKERS"); do
  "$tmp/loadapp" runworker --layer "$layer" --threads "$THREADS" -v 0 >>"$tmp/worker.log" 2>&1 & pids+=($!)
done
waitport "$ref"; waitport "$rs"; waitport "$gw"
echo "== reference :$ref (pid $refpid), runserver :$rs (pid $rspid), redis gateway :$gw (pid $gwpid) + $WORKERS workers x $THREADS threads, redis :$rp"

run() { # mode path args...
  local mode=$1 path=$2; shift 2
  local scheme=ws; [ "$mode" = http ] && scheme=http
  echo
  echo "==================== $mode $* ===================="
  "$tmp/load" compare -a "$scheme://127.0.0.1:$rs$path" -a-name runserver -a-pid "$rspid" \
      -b "$scheme://127.0.0.1:$ref$path" -b-name reference -b-pid "$refpid" "$mode" -progress 0 "$@"
  echo
  "$tmp/load" compare -a "$scheme://127.0.0.1:$gw$path" -a-name redis -a-pid "$gwpid" \
      -b "$scheme://127.0.0.1:$ref$path" -b-name reference -b-pid "$refpid" "$mode" -progress 0 "$@"
}

case $what in
  echo|all) run echo /echo/ $ECHO_ARGS ;;&
  fanout|all) run fanout /fanout/ $FANOUT_ARGS ;;&
  http|all) run http /http/ $HTTP_ARGS ;;
esac
