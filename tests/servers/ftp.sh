#!/usr/bin/env bash
# pure-ftpd on 127.0.0.1 for the FTP/FTPS storage tests: one virtual user "ftpuser" (puredb, no system
# account, no PAM) chrooted to a fresh folder, with a random password and a self-signed certificate for
# explicit TLS (optional per session, so ftp:// and ftps:// both work). Debian 12, run as root.
#
#   tests/servers/ftp.sh start   # installs pure-ftpd and openssl if missing, starts, waits for the banner,
#                                # writes $FROST_SERVERS_DIR/ftp.env and ftp.pids (idempotent)
#   tests/servers/ftp.sh stop    # kills the PIDs of ftp.pids, waits, removes the state
#
# ftp.env: FROST_TEST_FTP_URL, FROST_TEST_FTPS_URL, FROST_TEST_FTP_PASSWORD, FROST_TEST_FTPS_CA.
# Ports: $FROST_FTP_PORT (default 12121), passive 30000-30099.
set -euo pipefail

NAME=ftp
DIR=${FROST_SERVERS_DIR:-/tmp/frost-servers}
PORT=${FROST_FTP_PORT:-12121}
STATE=$DIR/$NAME
ENV_FILE=$DIR/$NAME.env
PIDS=$DIR/$NAME.pids
USER_NAME=ftpuser

# Installs Debian packages that are missing, without letting apt start their daemons.
install_packages() {
  local missing=()
  for pkg in "$@"; do dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "$NAME: installing ${missing[*]}" >&2
  local policy=/usr/sbin/policy-rc.d added=""
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; added=1; fi
  export DEBIAN_FRONTEND=noninteractive
  local rc=0
  { apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null &&
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || rc=$?
  [ -n "$added" ] && rm -f "$policy"
  [ $rc -eq 0 ] || { echo "$NAME: apt-get install ${missing[*]} failed" >&2; exit 1; }
}

# True when PID runs (a zombie, left when PID 1 does not reap, counts as gone).
alive() { [ -r "/proc/$1/stat" ] && ! awk '{ exit $3 == "Z" ? 0 : 1 }' "/proc/$1/stat" 2>/dev/null; }

healthy() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT" && head -c 3 <&3 | grep -q 220) 2>/dev/null; }

stop() {
  if [ -f "$PIDS" ]; then
    local pid
    for pid in $(cat "$PIDS"); do
      alive "$pid" || continue
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
      if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
      wait "$pid" 2>/dev/null || true
    done
  fi
  rm -rf "$STATE" "$ENV_FILE" "$PIDS"
}

start() {
  if [ -f "$PIDS" ] && [ -f "$ENV_FILE" ] && alive "$(head -1 "$PIDS")" && healthy; then
    echo "$NAME: already running on 127.0.0.1:$PORT ($ENV_FILE)"
    return 0
  fi
  stop
  install_packages pure-ftpd openssl
  mkdir -p "$DIR" "$STATE/home"
  chmod 755 "$DIR"
  chmod 700 "$STATE"
  chown nobody:nogroup "$STATE/home"
  local password
  password=$(openssl rand -hex 16)
  # Not `pure-pw useradd`: its argon2 hash costs ~3.5 s per login on 2 cores; SHA-512 crypt is instant.
  echo "$USER_NAME:$(openssl passwd -6 "$password"):$(id -u nobody):$(id -g nobody)::$STATE/home/./::::::::::::" \
    >"$STATE/passwd"
  pure-pw mkdb "$STATE/pdb" -f "$STATE/passwd" >/dev/null
  # A self-signed certificate for 127.0.0.1 that the tests trust as their CA.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$STATE/tls.key" -out "$STATE/tls.crt" 2>/dev/null
  cat "$STATE/tls.key" "$STATE/tls.crt" >"$STATE/tls.pem"
  chmod 600 "$STATE/tls.key" "$STATE/tls.pem"
  # -E no anonymous, -H no DNS, -A chroot, -Y 1 TLS optional, -2 certificate, -p/-P passive ports on loopback.
  setsid pure-ftpd -S "127.0.0.1,$PORT" -l "puredb:$STATE/pdb" -E -H -A -c 50 -C 50 \
    -p 30000:30099 -P 127.0.0.1 -Y 1 -2 "$STATE/tls.pem" >"$STATE/log" 2>&1 </dev/null &
  echo $! >"$PIDS"
  for _ in $(seq 100); do healthy && break; sleep 0.1; done
  if ! healthy; then
    echo "$NAME: did not start; log:" >&2
    cat "$STATE/log" >&2
    stop
    exit 1
  fi
  cat >"$ENV_FILE" <<VARS
FROST_TEST_FTP_URL=ftp://$USER_NAME@127.0.0.1:$PORT/frost
FROST_TEST_FTPS_URL=ftps://$USER_NAME@127.0.0.1:$PORT/frost-tls
FROST_TEST_FTP_PASSWORD=$password
FROST_TEST_FTPS_CA=$STATE/tls.crt
VARS
  chmod 600 "$ENV_FILE"
  echo "$NAME: running on 127.0.0.1:$PORT (pid $(cat "$PIDS")); settings in $ENV_FILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop; echo "$NAME: stopped" ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
