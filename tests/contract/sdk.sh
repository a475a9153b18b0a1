#!/usr/bin/env bash
# Contract test (b): the official Deep Security Python SDK (PyPI deep-security-api 20.0.463)
# lists, searches and reads settings and scheduled tasks from medic's DSM simulator, over
# HTTPS with a generated CA, and parses every answer (see sdk_check.py).
#
# Usage: tests/contract/sdk.sh          (makes tests/contract/.venv once)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

fail() { echo "FAIL python SDK contract: $*"; exit 1; }

venv="$here/.venv"
if ! "$venv/bin/python" -c 'import deepsecurity' 2>/dev/null; then
  echo "installing deep-security-api into $venv"
  python3 -m venv "$venv" || fail "cannot create the venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" \
    || fail "pip install failed"
fi

cd "$root"
cargo build -q -p medic-sim --features server --bin medic-sim || fail "cannot build medic-sim"
bin=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/medic-sim

work=$(mktemp -d)
export MEDIC_DSM_API_KEY="contract-$RANDOM-$RANDOM"
"$bin" serve --inventory "$root/examples/lab/inventory.yaml" --tls-self-signed \
  --ca-out "$work/ca.pem" --time-scale 3000 >"$work/url" 2>"$work/log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  [ -s "$work/url" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/log"; fail "medic-sim exited"; }
  sleep 0.1
done
url=$(head -1 "$work/url")
[ -n "$url" ] || fail "medic-sim printed no URL"

"$venv/bin/python" "$here/sdk_check.py" "$url" "$work/ca.pem"
