#!/usr/bin/env bash
# Install Debian's chromium for the browser test, when this machine allows it (root, apt-get).
# Without it the browser test skips loudly on a developer machine and fails in CI.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser test ..."
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
    && exit 0
  echo "WARNING: apt-get install chromium failed; the browser test will not run" >&2
else
  echo "WARNING: chromium is not installed and cannot be installed here (needs root and apt-get):" >&2
  echo "         the browser test will be skipped. Install it with: sudo apt-get install chromium" >&2
fi
exit 0
