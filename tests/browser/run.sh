#!/usr/bin/env bash
# Runs the browser end-to-end tests: npm deps from the lockfile, the server binary, then every
# *.test.mjs with Node's test runner (one file at a time: each starts its own server and Chromium;
# firefox.test.mjs adds Firefox and runs inside two network namespaces it creates, so it needs root).
#
#   tests/browser/run.sh                 # all tests
#   tests/browser/run.sh demo.test.mjs   # some files (names relative to tests/browser/)
#
# Environment: CHROMIUM (default /usr/bin/chromium), FIREFOX (default /usr/bin/firefox-esr, used by
# firefox.test.mjs only), FANOUT_BIN (default: debug/fanout in cargo's
# target directory, wherever CARGO_TARGET_DIR puts it),
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

# The binary lives in cargo's target directory, which CARGO_TARGET_DIR or a config may move.
if [ -z "${FANOUT_BIN:-}" ]; then
  target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps \
    | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
  export FANOUT_BIN="$target_dir/debug/fanout"
fi

rm -rf "$root/target/browser-failures"
cd "$here"
if [ "$#" -gt 0 ]; then
  files=("$@")
else
  files=(./*.test.mjs)
fi
exec node --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
