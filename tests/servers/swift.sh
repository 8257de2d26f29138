#!/usr/bin/env bash
# OpenStack Swift all-in-one with the s3api middleware on 127.0.0.1, for the S3 and Swift storage tests.
#
#   tests/servers/swift.sh start    install the Debian packages if missing, start memcached and Swift, wait
#                                   until healthy, write swift.env and swift.pids (already running: no-op)
#   tests/servers/swift.sh stop     kill the processes of swift.pids, wait for them, remove the data
#   tests/servers/swift.sh status   exit 0 when running and healthy
#
# Files go to ${FROST_SERVERS_DIR:-/tmp/frost-servers}: swift.env (KEY=VALUE lines read by the tests:
# FROST_TEST_SWIFT_AUTH/_USER/_KEY, FROST_TEST_S3_ENDPOINT/_KEY/_SECRET, FROST_TEST_SWIFT_MEMCACHED),
# swift.pids (one PID a line), swift/ (rings, configs, logs, the device folder).
# Ports: proxy (Swift + S3) 18080, object/container/account 16200-16202, memcached 21211.
# Needs root on a fresh Debian 12 for the install.
set -euo pipefail

DIR=${FROST_SERVERS_DIR:-/tmp/frost-servers}
WORK=$DIR/swift
ENV_FILE=$DIR/swift.env
PID_FILE=$DIR/swift.pids
PROXY_PORT=18080
BACKEND_PORTS=(16200 16201 16202)
MEMCACHED_PORT=21211
PACKAGES=(swift swift-proxy swift-object swift-container swift-account memcached curl)

log() { echo "swift.sh: $*" >&2; }

# A live (not zombie) process of ours: memcached or a swift server, so a stale PID is never someone else's.
alive() {
  [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ] &&
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qE 'memcached|swift'
}

healthy() {
  local p
  for p in "${BACKEND_PORTS[@]}" "$PROXY_PORT"; do
    curl -fs -m 2 -o /dev/null "http://127.0.0.1:$p/healthcheck" || return 1
  done
  # tempauth keeps tokens in memcached: a token proves the whole auth path works.
  curl -fs -m 5 -o /dev/null -H "X-Auth-User: test:tester" -H "X-Auth-Key: testing" \
    "http://127.0.0.1:$PROXY_PORT/auth/v1.0"
}

running() {
  [ -s "$PID_FILE" ] || return 1
  local pid
  while read -r pid; do alive "$pid" || return 1; done <"$PID_FILE"
  healthy
}

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || { log "missing packages ${missing[*]}: run as root to install them"; exit 1; }
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Waits for another apt run (DPkg::Lock::Timeout). Keep apt from starting the packaged daemons on their default ports (this script runs its own).
  local policy=/usr/sbin/policy-rc.d added_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added_policy=1
  fi
  local rc=0
  { apt-get update -qq -o DPkg::Lock::Timeout=600 &&
    apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}"; } >/dev/null || rc=$?
  [ -n "$added_policy" ] && rm -f "$policy"
  [ "$rc" = 0 ] || { log "apt-get failed (exit $rc)"; exit 1; }
}

write_configs() {
  local user n p t
  user=$(id -un)
  rm -rf "$WORK"
  mkdir -p "$WORK/srv/d1"
  # Swift reads its hash settings from this fixed path; the package ships one, write one if it is missing.
  if [ ! -e /etc/swift/swift.conf ]; then
    mkdir -p /etc/swift
    printf '[swift-hash]\nswift_hash_path_suffix = frost-tests\nswift_hash_path_prefix = frost-tests\n' \
      >/etc/swift/swift.conf
  fi
  (
    cd "$WORK"
    for t in object:16200 container:16201 account:16202; do
      n=${t%:*} p=${t#*:}
      swift-ring-builder "$n.builder" create 8 1 1
      swift-ring-builder "$n.builder" add "r1z1-127.0.0.1:$p/d1" 1
      swift-ring-builder "$n.builder" rebalance
      cat >"$n-server.conf" <<EOF
[DEFAULT]
devices = $WORK/srv
mount_check = false
bind_ip = 127.0.0.1
bind_port = $p
workers = 0
user = $user
swift_dir = $WORK
[pipeline:main]
pipeline = healthcheck $n-server
[app:$n-server]
use = egg:swift#$n
[filter:healthcheck]
use = egg:swift#healthcheck
EOF
    done
  ) >/dev/null
  cat >"$WORK/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $PROXY_PORT
workers = 1
user = $user
swift_dir = $WORK
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk s3api tempauth copy slo dlo proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$MEMCACHED_PORT
[filter:proxy-logging]
use = egg:swift#proxy_logging
EOF
  for f in catch_errors gatekeeper healthcheck listing_formats bulk s3api copy slo dlo; do
    printf '[filter:%s]\nuse = egg:swift#%s\n' "$f" "$f" >>"$WORK/proxy-server.conf"
  done
}

# Starts a daemon in its own session (so a Ctrl-C in the calling terminal does not reach it) and records its PID.
launch() {
  local name=$1
  shift
  setsid "$@" </dev/null >"$WORK/$name.log" 2>&1 &
  echo $! >>"$PID_FILE"
}

stop() {
  [ -f "$PID_FILE" ] || { rm -rf "$WORK" "$ENV_FILE"; return 0; }
  local pids=() pid i
  while read -r pid; do [ -n "$pid" ] && pids+=("$pid"); done <"$PID_FILE"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for i in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      log "PID $pid did not stop in 10 s: killing it"
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  rm -f "$PID_FILE" "$ENV_FILE"
  rm -rf "$WORK"
}

start() {
  mkdir -p "$DIR"
  if running; then
    log "already running and healthy"
    write_env
    return 0
  fi
  stop # leftovers of an earlier run that died
  local p
  for p in "${BACKEND_PORTS[@]}" "$PROXY_PORT" "$MEMCACHED_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      log "port $p on 127.0.0.1 is already in use by a process this script did not start"
      exit 1
    fi
  done
  install_packages
  write_configs
  : >"$PID_FILE"
  launch memcached memcached -u "$(id -un)" -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 64
  for n in object container account proxy; do launch "$n" "swift-$n-server" "$WORK/$n-server.conf"; done
  local i
  for i in $(seq 300); do
    healthy && break
    sleep 0.2
  done
  if ! healthy; then
    log "Swift did not become healthy in 60 s; last log lines:"
    for n in memcached object container account proxy; do tail -n 5 "$WORK/$n.log" >&2 2>/dev/null || true; done
    stop
    exit 1
  fi
  write_env
  log "running: Swift and S3 on http://127.0.0.1:$PROXY_PORT, settings in $ENV_FILE"
}

write_env() {
  cat >"$ENV_FILE" <<EOF
FROST_TEST_SWIFT_AUTH=http://127.0.0.1:$PROXY_PORT/auth/v1.0
FROST_TEST_SWIFT_USER=test:tester
FROST_TEST_SWIFT_KEY=testing
FROST_TEST_S3_ENDPOINT=http://127.0.0.1:$PROXY_PORT
FROST_TEST_S3_KEY=test:tester
FROST_TEST_S3_SECRET=testing
FROST_TEST_SWIFT_MEMCACHED=127.0.0.1:$MEMCACHED_PORT
EOF
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) running ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
