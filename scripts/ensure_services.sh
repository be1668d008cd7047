#!/usr/bin/env bash
# Install Debian's PostgreSQL and Redis for `make faults-celery` when they are missing (root, apt-get).
# Only the binaries are used: the fault run starts its own servers in a temporary directory, on free
# loopback ports, and stops them; Debian's own clusters and services are never started here.
set -eu
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
missing=()
[ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/initdb" ] || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ERROR: ${missing[*]} missing; install with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "Installing Debian's ${missing[*]} ..."
apt-get update -qq >/dev/null
# policy-rc.d 101: the packages' own services are not started (the run starts its own servers).
policy=/usr/sbin/policy-rc.d
had_policy=0; [ -e "$policy" ] && had_policy=1
[ "$had_policy" = 1 ] || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; }
status=0
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || status=$?
[ "$had_policy" = 1 ] || rm -f "$policy"
exit $status
