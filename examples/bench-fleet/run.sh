#!/bin/sh
# medic on the bench fleet, as run_bench.sh's `custom` tool (see README.md here):
#   BENCH_CMD="$PWD/examples/bench-fleet/run.sh" ./run_bench.sh custom 1000 50 3 medic
# Reads FLEET_STATE, FLEET_FORKS, FLEET_PORT and FLEET_TARGET as run_bench.sh sets them.
# Everything medic does is timed: the inventory, the plan, the run and its journal.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
medic=${MEDIC:-$here/../../target/release/medic}
work=$(mktemp -d "${TMPDIR:-/tmp}/medic-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$here/inventory.sh" "$FLEET_STATE/hosts.txt" "${FLEET_PORT:-2222}" > "$work/inventory.yaml"
sed "s/^max_parallel: .*/max_parallel: ${FLEET_FORKS:-50}/" "$here/playbook.yaml" > "$work/playbook.yaml"
# --skip-preflight: the pre-flight checks Deep Security agents (listening ports, the
# agent's build, privileges for its installer); the fleet's fake `dsa` is none of that, and
# this playbook's generic `command` steps need none of it.
"$medic" apply -i "$work/inventory.yaml" -p "$work/playbook.yaml" --skip-preflight \
    --set "target=${FLEET_TARGET:-20.0.1.690}" \
    --known-hosts "$FLEET_STATE/known_hosts" --ssh-key "$FLEET_STATE/id_ed25519" \
    --journal "$work/journal.sqlite" --yes --progress never ${MEDIC_ARGS:-}
