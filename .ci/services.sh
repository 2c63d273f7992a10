#!/usr/bin/env bash
# Starts the services the tests use when they are not running, and installs
# the Debian packages the tests need. Safe to run more than once.
set -euo pipefail

log() { printf '== %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Python's channels_redis, for the Redis interoperability test; Chromium, for
# the browser tests of the example pages; Node, for the JavaScript client's
# unit tests.
apt_install python3-channels-redis chromium nodejs

# Redis on 127.0.0.1:6379, nothing kept on disk.
if ! have redis-server; then apt_install redis-server; fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting redis-server"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
log "redis: $(redis-cli -h 127.0.0.1 ping)"

# PostgreSQL on 127.0.0.1:5432, trust auth, database test.
if ! have pg_ctlcluster; then apt_install postgresql; fi
if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
  log "starting postgresql"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  for _ in $(seq 100); do pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1 && break; sleep 0.1; done
fi
log "postgres: $(pg_isready -h 127.0.0.1 -p 5432)"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
