#!/usr/bin/env bash
# OpenSSH sshd on 127.0.0.1 for the SFTP storage tests: a key-only user "sftpuser", throwaway host and
# client keys. Debian 12, run as root.
#
#   tests/servers/sshd.sh start   # installs openssh-server if missing, starts, waits for the banner,
#                                 # writes $FROST_SERVERS_DIR/sshd.env and sshd.pids (idempotent)
#   tests/servers/sshd.sh stop    # kills the PIDs of sshd.pids, waits, removes the state
#
# sshd.env: FROST_TEST_SFTP_URL, FROST_TEST_SFTP_KEY, FROST_TEST_SFTP_KNOWN_HOSTS, FROST_TEST_SFTP_HOST_KEY
# (the server's public key line). Port: $FROST_SFTP_PORT, default 12222.
set -euo pipefail

NAME=sshd
DIR=${FROST_SERVERS_DIR:-/tmp/frost-servers}
PORT=${FROST_SFTP_PORT:-12222}
STATE=$DIR/$NAME
ENV_FILE=$DIR/$NAME.env
PIDS=$DIR/$NAME.pids
USER_NAME=sftpuser

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

healthy() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT" && head -c 7 <&3 | grep -q SSH-2.0) 2>/dev/null; }

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
  install_packages openssh-server openssh-client
  local sshd
  sshd=$(command -v sshd || echo /usr/sbin/sshd)
  # sshd reads AuthorizedKeysFile as the user: every folder above it must be traversable.
  mkdir -p "$DIR" "$STATE/home" /run/sshd
  chmod 755 "$DIR" "$STATE"
  id "$USER_NAME" >/dev/null 2>&1 || useradd -M -s /bin/sh "$USER_NAME"
  usermod -p '*' -d "$STATE/home" "$USER_NAME" # '*': no password, but not locked (UsePAM no refuses '!')
  chown "$USER_NAME" "$STATE/home"
  chmod 700 "$STATE/home"
  ssh-keygen -q -t ed25519 -N '' -C frost-test-host -f "$STATE/host_key"
  ssh-keygen -q -t ed25519 -N '' -C frost-test-client -f "$STATE/client_key"
  cp "$STATE/client_key.pub" "$STATE/authorized_keys"
  chmod 644 "$STATE/authorized_keys"
  echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$STATE/host_key.pub")" >"$STATE/known_hosts"
  cat >"$STATE/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $PORT
HostKey $STATE/host_key
PidFile $STATE/sshd.pid
AuthorizedKeysFile $STATE/authorized_keys
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers $USER_NAME
UsePAM no
StrictModes no
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp internal-sftp
CONF
  setsid "$sshd" -D -e -f "$STATE/sshd_config" >"$STATE/log" 2>&1 </dev/null &
  echo $! >"$PIDS"
  for _ in $(seq 100); do healthy && break; sleep 0.1; done
  if ! healthy; then
    echo "$NAME: did not start; log:" >&2
    cat "$STATE/log" >&2
    stop
    exit 1
  fi
  mkdir -p "$STATE/home/frost"
  chown "$USER_NAME" "$STATE/home/frost"
  cat >"$ENV_FILE" <<VARS
FROST_TEST_SFTP_URL=sftp://$USER_NAME@127.0.0.1:$PORT$STATE/home/frost
FROST_TEST_SFTP_KEY=$STATE/client_key
FROST_TEST_SFTP_KNOWN_HOSTS=$STATE/known_hosts
FROST_TEST_SFTP_HOST_KEY=$(cut -d' ' -f1,2 "$STATE/host_key.pub")
VARS
  echo "$NAME: running on 127.0.0.1:$PORT (pid $(cat "$PIDS")); settings in $ENV_FILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop; echo "$NAME: stopped" ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
