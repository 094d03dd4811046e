#!/usr/bin/env bash
# Runs the browser end-to-end tests: npm deps from the lockfile, the server binary, then every
# *.test.mjs with Node's test runner (one file at a time: each starts its own server and Chromium).
#
#   tests/browser/run.sh                 # all tests
#   tests/browser/run.sh demo.test.mjs   # some files (names relative to tests/browser/)
#
# Environment: CHROMIUM (default /usr/bin/chromium), FANOUT_BIN (default target/debug/fanout),
# FANOUT_LOG (the server's RUST_LOG, default info; logs land in target/browser-logs/),
# FANOUT_TEST_WAIT_MS (bound of each wait, default 25000), SKIP_BUILD=1, SKIP_NPM=1.
# Failure evidence (screenshots, page consoles, server log tails): target/browser-failures/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "error: $chromium not found; install Debian's chromium (apt-get install -y chromium) or set CHROMIUM" >&2
  exit 2
fi

if [ "${SKIP_NPM:-}" != 1 ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ "${SKIP_BUILD:-}" != 1 ] && [ -z "${FANOUT_BIN:-}" ]; then
  (cd "$root" && cargo build -p fanout-server)
fi

rm -rf "$root/target/browser-failures"
cd "$here"
if [ "$#" -gt 0 ]; then
  files=("$@")
else
  files=(./*.test.mjs)
fi
exec node --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
