#!/usr/bin/env bash
# Contract test (a): every kind of request medic's DSM client sends is accepted by the vendor
# OpenAPI spec (shared/vendor-spec), served by Prism in validating mode: with --errors an
# invalid request (missing header, wrong type, unknown enum value, bad body) gets a 4xx, which
# fails the client call. The requests are made by the real client code, in the ignored test
# `prism_accepts_every_client_request` of crates/medic-sim/tests/it (the dsm driver against the simulator's server).
#
# Usage: tests/contract/prism.sh        (installs Prism into tests/contract/node_modules once)
# Env:   MEDIC_VENDOR_SPEC=path/to/workload-security-openapi.json (default: ../shared/vendor-spec)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
spec=${MEDIC_VENDOR_SPEC:-$root/../shared/vendor-spec/workload-security-openapi.json}

fail() { echo "FAIL prism contract: $*"; exit 1; }

[ -f "$spec" ] || fail "vendor spec not found at $spec (set MEDIC_VENDOR_SPEC)"
if [ ! -x "$here/node_modules/.bin/prism" ]; then
  echo "installing @stoplight/prism-cli into $here/node_modules"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci failed"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
"$here/node_modules/.bin/prism" mock -h 127.0.0.1 -p "$port" --errors "$spec" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$log"' EXIT

# A 3 MB spec takes Prism a while to load.
for _ in $(seq 1 240); do
  grep -q "Prism is listening" "$log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; fail "prism exited"; }
  sleep 0.5
done
grep -q "Prism is listening" "$log" || { tail -20 "$log"; fail "prism did not start in 120 s"; }

cd "$root"
if MEDIC_CONTRACT_DSM_URL="http://127.0.0.1:$port" cargo test -q -p medic-sim --test it -- \
    --ignored --exact prism_accepts_every_client_request --nocapture; then
  echo "PASS prism contract: every kind of DSM client request is accepted by the vendor spec"
else
  tail -40 "$log"
  fail "the spec refused a request of the DSM client (see above)"
fi
