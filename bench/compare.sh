#!/usr/bin/env bash
# Side-by-side end-to-end measurements, in one run on this machine:
#
#   reference   channels-load's plain net/http + WebSocket server (the ceiling)
#   runserver   examples/loadapp runserver: gateway + workers in one process,
#               in-memory layer
#   redis       examples/loadapp gateway + runworker as separate processes
#               over a private redis-server
#
# for echo, fanout (unpaced and paced), connects, http and idle memory,
# printing each result and the ratio to the reference, and for the Redis
# runs the CPU time of each process (gateway, workers, redis-server) per
# operation (message, delivery, request or connect). Usage:
#
#   bench/compare.sh [echo|fanout|paced|connect|http|idle|all|targets]
#
# "targets" runs the shapes the release targets name, in one run: echo at
# C=100 and C=1000, fanout with S=1000 and M=200 (a burst), paced fanout
# (S=1000, M=200 at 100 frames/s; its p99 delivery latency is the figure),
# connects/s (5000 WebSocket handshakes, 32 in flight, each closed once
# open), idle memory per connection at C=5000, and http over 64 keep-alive
# connections.
#
# The end is a summary of medians per shape: the headline metric's ratio to
# the reference (throughput; p99 latency for paced fanout; memory per
# connection for idle), the two values, and the server CPU per operation of
# each side (for the Redis side gateway + workers + redis-server summed).
#
# Environment: ECHO_ARGS, FANOUT_ARGS, PACED_ARGS, CONNECT_ARGS, HTTP_ARGS,
# IDLE_ARGS override the load shapes;
# WORKERS (default 2 runworker processes) and THREADS (default 16 each);
# WORKER_PROCS, GOMAXPROCS of each runworker process (default Go's: one per
# CPU; README, "Running over Redis", says when 1 is better);
# APP_ARGS, extra flags for loadapp's runserver and runworker (for example
# --enforce-ordering);
# RUNS (default 1) repeats every comparison and ends with the median ratios;
# SIDES (default "runserver redis") picks what is compared to the reference.
#
# Fanout over Redis with more than one worker process may report reordered
# frames: Channels orders one connection's messages only within one worker
# process (session.EnforceOrdering gives strict order: APP_ARGS=
# --enforce-ordering; docs/design.md, "Order across worker processes"). The
# header and every Redis result name the worker count.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
ECHO_ARGS=${ECHO_ARGS:-"-c 50 -n 2000"}
FANOUT_ARGS=${FANOUT_ARGS:-"-s 200 -m 500"}
PACED_ARGS=${PACED_ARGS:-"-s 1000 -m 200 -rate 100"}
CONNECT_ARGS=${CONNECT_ARGS:-"-n 5000 -c 32"}
HTTP_ARGS=${HTTP_ARGS:-"-c 50 -n 20000"}
IDLE_ARGS=${IDLE_ARGS:-"-c 5000"}
WORKERS=${WORKERS:-2}
THREADS=${THREADS:-16}
RUNS=${RUNS:-1}
SIDES=${SIDES:-"runserver redis"}
APP_ARGS=${APP_ARGS:-}

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
"$tmp/loadapp" runserver "127.0.0.1:$rs" --nodelay -v 0 $APP_ARGS >"$tmp/rs.log" 2>&1 & pids+=($!); rspid=$!
redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 & pids+=($!); redispid=$!
waitport "$rp"
layer="redis://127.0.0.1:$rp/0?prefix=bench"
"$tmp/loadapp" gateway --layer "$layer" -p "$gw" -v 0 >"$tmp/gw.log" 2>&1 & pids+=($!); gwpid=$!
wpids=()
for _ in $(seq "$WORKERS"); do
  GOMAXPROCS=${WORKER_PROCS:-${GOMAXPROCS:-}} "$tmp/loadapp" runworker --layer "$layer" --threads "$THREADS" -v 0 $APP_ARGS >>"$tmp/worker.log" 2>&1 & pids+=($!); wpids+=($!)
done
waitport "$ref"; waitport "$rs"; waitport "$gw"
redisname="redis-${WORKERS}w"
echo "== loadapp flags: ${APP_ARGS:-none}"
echo "== reference :$ref (pid $refpid), runserver :$rs (pid $rspid), redis gateway :$gw (pid $gwpid) + $WORKERS worker processes x $THREADS threads, GOMAXPROCS ${WORKER_PROCS:-default} (pids ${wpids[*]}), redis-server :$rp (pid $redispid); $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ratio_line FILE [METRIC]: "metric ratio A B" of METRIC in a comparison,
# of its first metric (throughput) when METRIC is empty.
ratio_line() { awk -v m="${2:-}" '/ ratio / && (m == "" || $1 == m) {print $1, $5, $2, $3; exit}' "$1"; }
# metric_ab FILE PREFIX: "A B" of the first metric named PREFIX… (the
# server's CPU per operation), "- -" when the report has none.
metric_ab() { awk -v p="$2" 'index($1, p) == 1 && / ratio / {print $2, $3; f = 1; exit} END {if (!f) print "- -"}' "$1"; }
# done_count FILE: operations completed in the first report (A's).
done_count() { awk '/^  (round trips|delivered|requests|connects) /{for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+\/[0-9]+$/) {split($i, a, "/"); print a[1]; exit}}' "$1"; }

# run_metric METRIC MODE PATH ARGS...: one comparison per side; METRIC
# names the figure the summary lists (empty: throughput).
run_metric() {
  local metric=$1 mode=$2 path=$3; shift 3
  local label; label="$mode[$(echo "$*" | tr -d ' ')]"
  local scheme=ws; [ "$mode" = http ] && scheme=http
  local unit=msg; [ "$mode" = connect ] && unit=connect
  echo
  echo "==================== $mode $* (run $i of $RUNS; Redis with $WORKERS worker processes) ===================="
  if [[ " $SIDES " = *" runserver "* ]]; then
  "$tmp/load" compare -a "$scheme://127.0.0.1:$rs$path" -a-name runserver -a-pid "$rspid" \
      -b "$scheme://127.0.0.1:$ref$path" -b-name reference -b-pid "$refpid" "$mode" -progress 0 "$@" | tee "$tmp/out"
  echo "$label runserver $(ratio_line "$tmp/out" "$metric") $(metric_ab "$tmp/out" server_cpu_us_per_)" >>"$tmp/ratios"
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
  awk -v g="$g" -v w="$w" -v r="$r" -v n="$n" -v hz="$hz" -v nw="$WORKERS" -v u="$unit" -v out="$tmp/total" 'BEGIN {
    if (n + 0 == 0) n = 1
    f = 1e6 / hz / n
    printf "  %s CPU over the run (both sides, mostly A): gateway %.2fs = %.1f us/%s, %d workers %.2fs = %.1f us/%s, redis-server %.2fs = %.1f us/%s; total %.1f us/%s (%d %ss)\n",
      ENVIRON["redisname"], g / hz, g * f, u, nw, w / hz, w * f, u, r / hz, r * f, u, (g + w + r) * f, u, n, u
    printf "%.3f\n", (g + w + r) * f > out
  }'
  echo "$label $redisname $(ratio_line "$tmp/out" "$metric") $(cat "$tmp/total") $(metric_ab "$tmp/out" server_cpu_us_per_ | cut -d' ' -f2)" >>"$tmp/ratios"
}
run() { run_metric "" "$@"; }
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
      "$tmp/loadapp" runserver "127.0.0.1:$port" --nodelay -v 0 $APP_ARGS >>"$tmp/rs.log" 2>&1 & pid=$!
      name=runserver
    else
      "$tmp/loadapp" gateway --layer "$layer" -p "$port" -v 0 >>"$tmp/gw.log" 2>&1 & pid=$!
      name=$redisname
    fi
    waitport "$rport"; waitport "$port"
    "$tmp/load" compare -a "ws://127.0.0.1:$port/echo/" -a-name "$name" -a-pid "$pid" \
        -b "ws://127.0.0.1:$rport/echo/" -b-name reference -b-pid "$rpid" idle -progress 0 "$@" | tee "$tmp/out"
    echo "idle[$(echo "$*" | tr -d ' ')] $name $(ratio_line "$tmp/out") - -" >>"$tmp/ratios"
    kill "$pid" "$rpid"; wait "$pid" "$rpid" 2>/dev/null || true
    echo
  done
}

for i in $(seq "$RUNS"); do
  case $what in
    echo|all) run echo /echo/ $ECHO_ARGS ;;&
    fanout|all) run fanout /fanout/ $FANOUT_ARGS ;;&
    paced|all) run_metric latency_p99_ms fanout /fanout/ $PACED_ARGS ;;&
    connect|all) run connect /echo/ $CONNECT_ARGS ;;&
    http|all) run http /http/ $HTTP_ARGS ;;&
    idle|all) run_idle $IDLE_ARGS ;;
    targets)
      run echo /echo/ -c 100 -n 1000
      run echo /echo/ -c 1000 -n 100
      run fanout /fanout/ -s 1000 -m 200
      run_metric latency_p99_ms fanout /fanout/ -s 1000 -m 200 -rate 100
      run connect /echo/ -n 5000 -c 32
      run_idle -c 5000
      run http /http/ -c 64 -n 20000 ;;
  esac
done

echo
echo "== medians of $RUNS runs (Redis with $WORKERS worker processes x $THREADS threads): each shape's headline metric against the reference (throughput; p99 latency for paced fanout; memory per connection for idle), and the server CPU per operation (Redis: gateway + workers + redis-server)"
python3 - "$tmp/ratios" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = (line.split() + ["-"] * 8)[:8]  # a failed comparison leaves gaps
    shape, side, metric = f[:3]
    r = runs.setdefault((shape, side, metric), {"ratio": [], "a": [], "b": [], "cpu_a": [], "cpu_b": []})
    for k, v in zip(("ratio", "a", "b", "cpu_a", "cpu_b"), f[3:]):
        try:
            r[k].append(float(v))
        except ValueError:  # "-" or "n/a": not measured
            pass
def med(v):
    return "%.3f" % statistics.median(v) if v else "-"
print("  %-34s %-12s %-22s %8s %12s %12s   %-18s %s" % ("shape", "side", "metric", "ratio", "value", "reference", "CPU us/op (ref)", "ratio per run"))
for (shape, side, metric), r in runs.items():
    cpu = "%s (%s)" % (med(r["cpu_a"]), med(r["cpu_b"])) if r["cpu_a"] else "-"
    print("  %-34s %-12s %-22s %8s %12s %12s   %-18s %s" % (shape, side, metric, med(r["ratio"]), med(r["a"]), med(r["b"]), cpu,
          " ".join("%.3f" % x for x in r["ratio"])))
PY
