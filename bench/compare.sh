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
# reference, and for the Redis runs the CPU time of each process (gateway,
# workers, redis-server) per message. Usage:
#
#   bench/compare.sh [echo|fanout|http|idle|all|targets]
#
# "targets" runs the shapes the release targets name, in one run: echo at
# C=100 and C=1000, fanout with S=1000 and M=200, idle memory per connection
# at C=5000, and http.
#
# Environment: ECHO_ARGS, FANOUT_ARGS, HTTP_ARGS, IDLE_ARGS override the load shapes;
# WORKERS (default 2 runworker processes) and THREADS (default 16 each);
# RUNS (default 1) repeats every comparison and ends with the median ratios;
# SIDES (default "runserver redis") picks what is compared to the reference.
#
# Fanout over Redis with more than one worker process may report reordered
# frames: Channels orders one connection's messages only within one worker
# process (session.EnforceOrdering gives strict order). The header and every
# Redis result name the worker count.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
ECHO_ARGS=${ECHO_ARGS:-"-c 50 -n 2000"}
FANOUT_ARGS=${FANOUT_ARGS:-"-s 200 -m 500"}
HTTP_ARGS=${HTTP_ARGS:-"-c 50 -n 20000"}
IDLE_ARGS=${IDLE_ARGS:-"-c 5000"}
WORKERS=${WORKERS:-2}
THREADS=${THREADS:-16}
RUNS=${RUNS:-1}
SIDES=${SIDES:-"runserver redis"}

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
# ticks PID...: CPU time (user + system) of the processes, in clock ticks.
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
hz=$(getconf CLK_TCK)

echo "== building"
go build -o "$tmp/load" ./cmd/channels-load
go build -o "$tmp/loadapp" ./examples/loadapp

ref=$(freeport); rs=$(freeport); gw=$(freeport); rp=$(freeport)
"$tmp/load" reference -addr "127.0.0.1:$ref" >"$tmp/ref.log" 2>&1 & pids+=($!); refpid=$!
"$tmp/loadapp" runserver "127.0.0.1:$rs" --nodelay -v 0 >"$tmp/rs.log" 2>&1 & pids+=($!); rspid=$!
redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 & pids+=($!); redispid=$!
waitport "$rp"
layer="redis://127.0.0.1:$rp/0?prefix=bench"
"$tmp/loadapp" gateway --layer "$layer" -p "$gw" -v 0 >"$tmp/gw.log" 2>&1 & pids+=($!); gwpid=$!
wpids=()
for _ in $(seq "$WORKERS"); do
  "$tmp/loadapp" runworker --layer "$layer" --threads "$THREADS" -v 0 >>"$tmp/worker.log" 2>&1 & pids+=($!); wpids+=($!)
done
waitport "$ref"; waitport "$rs"; waitport "$gw"
redisname="redis-${WORKERS}w"
echo "== reference :$ref (pid $refpid), runserver :$rs (pid $rspid), redis gateway :$gw (pid $gwpid) + $WORKERS worker processes x $THREADS threads (pids ${wpids[*]}), redis-server :$rp (pid $redispid); $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# first_ratio FILE: the ratio of the first metric (throughput) of a comparison.
first_ratio() { awk '/ ratio /{print $5; exit}' "$1"; }
# done_count FILE: messages completed in the first report (A's).
done_count() { awk '/^  (round trips|delivered|requests) /{for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+\/[0-9]+$/) {split($i, a, "/"); print a[1]; exit}}' "$1"; }

run() { # mode path args...
  local mode=$1 path=$2; shift 2
  local label; label="$mode[$(echo "$*" | tr -d ' ')]"
  local scheme=ws; [ "$mode" = http ] && scheme=http
  echo
  echo "==================== $mode $* (run $i of $RUNS; Redis with $WORKERS worker processes) ===================="
  if [[ " $SIDES " = *" runserver "* ]]; then
  "$tmp/load" compare -a "$scheme://127.0.0.1:$rs$path" -a-name runserver -a-pid "$rspid" \
      -b "$scheme://127.0.0.1:$ref$path" -b-name reference -b-pid "$refpid" "$mode" -progress 0 "$@" | tee "$tmp/out"
  echo "$label runserver $(first_ratio "$tmp/out")" >>"$tmp/ratios"
  echo
  fi
  [[ " $SIDES " = *" redis "* ]] || return 0
  local g0 w0 r0
  g0=$(ticks "$gwpid"); w0=$(ticks "${wpids[@]}"); r0=$(ticks "$redispid")
  "$tmp/load" compare -a "$scheme://127.0.0.1:$gw$path" -a-name "$redisname" -a-pid "$gwpid" \
      -b "$scheme://127.0.0.1:$ref$path" -b-name reference -b-pid "$refpid" "$mode" -progress 0 "$@" | tee "$tmp/out"
  local g w r n
  g=$(( $(ticks "$gwpid") - g0 )); w=$(( $(ticks "${wpids[@]}") - w0 )); r=$(( $(ticks "$redispid") - r0 ))
  n=$(done_count "$tmp/out")
  echo "$label $redisname $(first_ratio "$tmp/out")" >>"$tmp/ratios"
  awk -v g="$g" -v w="$w" -v r="$r" -v n="$n" -v hz="$hz" -v nw="$WORKERS" 'BEGIN {
    if (n + 0 == 0) n = 1
    f = 1e6 / hz / n
    printf "  %s CPU over the run (both sides, mostly A): gateway %.2fs = %.1f us/msg, %d workers %.2fs = %.1f us/msg, redis-server %.2fs = %.1f us/msg; total %.1f us/msg (%d msgs)\n",
      ENVIRON["redisname"], g / hz, g * f, nw, w / hz, w * f, r / hz, r * f, (g + w + r) * f, n
  }'
}
export redisname

# run_idle ARGS...: idle memory per connection. Every side runs on fresh
# server processes (a fresh reference for each comparison too), so that
# memory left over from earlier runs, or given back meanwhile, does not
# count.
run_idle() {
  echo
  echo "==================== idle $* (run $i of $RUNS; fresh server processes) ===================="
  local side port pid rport rpid
  for side in $SIDES; do
    rport=$(freeport); port=$(freeport)
    "$tmp/load" reference -addr "127.0.0.1:$rport" >>"$tmp/ref.log" 2>&1 & rpid=$!
    if [ "$side" = runserver ]; then
      "$tmp/loadapp" runserver "127.0.0.1:$port" --nodelay -v 0 >>"$tmp/rs.log" 2>&1 & pid=$!
      name=runserver
    else
      "$tmp/loadapp" gateway --layer "$layer" -p "$port" -v 0 >>"$tmp/gw.log" 2>&1 & pid=$!
      name=$redisname
    fi
    waitport "$rport"; waitport "$port"
    "$tmp/load" compare -a "ws://127.0.0.1:$port/echo/" -a-name "$name" -a-pid "$pid" \
        -b "ws://127.0.0.1:$rport/echo/" -b-name reference -b-pid "$rpid" idle -progress 0 "$@" | tee "$tmp/out"
    echo "idle[$(echo "$*" | tr -d ' ')] $name $(first_ratio "$tmp/out")" >>"$tmp/ratios"
    kill "$pid" "$rpid"; wait "$pid" "$rpid" 2>/dev/null || true
    echo
  done
}

for i in $(seq "$RUNS"); do
  case $what in
    echo|all) run echo /echo/ $ECHO_ARGS ;;&
    fanout|all) run fanout /fanout/ $FANOUT_ARGS ;;&
    http|all) run http /http/ $HTTP_ARGS ;;&
    idle|all) run_idle $IDLE_ARGS ;;
    targets)
      run echo /echo/ -c 100 -n 1000
      run echo /echo/ -c 1000 -n 100
      run fanout /fanout/ -s 1000 -m 200
      run_idle -c 5000
      run http /http/ $HTTP_ARGS ;;
  esac
done

echo
echo "== ratio to the reference: throughput, or for idle memory per connection (lower is better) (medians of $RUNS runs; Redis with $WORKERS worker processes x $THREADS threads)"
python3 - "$tmp/ratios" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    mode, side, ratio = line.split()
    runs.setdefault((mode, side), []).append(float(ratio))
for (mode, side), v in runs.items():
    print("  %-22s %-12s median %.3f   runs %s" % (mode, side, statistics.median(v), " ".join("%.3f" % x for x in v)))
PY
