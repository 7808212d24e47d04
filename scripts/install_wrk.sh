#!/usr/bin/env bash
# `make bench` drives the server with wrk, a Debian package a fresh machine does not have:
# install it (as .ci/run installs Chromium), or stop with one line saying how.
set -euo pipefail
command -v wrk >/dev/null 2>&1 && exit 0
as_root=()
if [ "$(id -u)" != 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "bench: wrk is not installed; install it as root with: apt-get install wrk" >&2
    exit 1
  fi
  as_root=(sudo -n)
fi
echo "bench: wrk is not installed; installing it (apt-get install wrk, log in /tmp/bench-wrk.log)"
if ! { "${as_root[@]}" apt-get update -q && "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; } >/tmp/bench-wrk.log 2>&1; then
  echo "bench: wrk could not be installed (see /tmp/bench-wrk.log); install it with: apt-get install wrk" >&2
  exit 1
fi
