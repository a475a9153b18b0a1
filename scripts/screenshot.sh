#!/usr/bin/env bash
# Regenerates docs/report.png, the README's picture of the run report: a rehearsal of the
# lab fleet (simulated, no host touched) with one injected failure, its report, and a
# screenshot of that page in headless Chromium (Debian's `chromium`), taken by the same
# DevTools driver as the report's browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build -q -p medic-cli -p medic-bench
medic=$PWD/target/debug/medic
# The run stops at the failure budget and exits 3; the report is what we want.
(cd "$work" && "$medic" apply -i "$OLDPWD/examples/lab/inventory.yaml" \
    -p "$OLDPWD/playbooks/ds-activeupdate-cert-2023.yaml" --simulate --time-scale 600 --yes \
    --sim-fault fail:web-01:agent-upgrade:5 --journal journal.sqlite --progress never) || true
(cd "$work" && "$medic" report --journal journal.sqlite --out report.html)
./target/debug/medic-bench screenshot --html "$work/report.html" --out docs/report.png --width 1200
