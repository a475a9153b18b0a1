#!/usr/bin/env bash
# Every tool on the same fleet in the same session, alternating, ROUNDS rounds (default
# 3): medic, the plain OpenSSH loop (default key exchange and curve25519) and pyinfra at
# N=1000; the same plus Ansible at N=200. Each run starts from a reset fleet and counts
# only if every host ends at the target build with exactly one security update.
#   matrix.sh BENCH_FLEET_DIR [ROUNDS]       (about 15 minutes for 3 rounds here)
# Then: python3 summarize.py BENCH_FLEET_DIR
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=$(cd "${1:?usage: matrix.sh BENCH_FLEET_DIR [ROUNDS]}" && pwd)
rounds=${2:-3}
x25519="-o KexAlgorithms=curve25519-sha256"
cd "$bench"
./fleet.sh up 1000 </dev/null >/dev/null || exit 1
one() { # LABEL TOOL N FORKS ROUND [ssh opts]
    local label=$1 tool=$2 n=$3 forks=$4 k=$5 opts=${6:-}
    echo "=== $(date +%T) round $k: $label n=$n forks=$forks"
    BENCH_FIRST_RUN=$k BENCH_SSH_OPTS=$opts BENCH_CMD="$here/run.sh" \
        ./run_bench.sh "$tool" "$n" "$forks" 1 "$label" </dev/null | tail -1
}
for (( k = 1; k <= rounds; k++ )); do
    for n in 1000 200; do
        one medic custom "$n" 50 "$k"
        one rawssh-x25519 rawssh "$n" 50 "$k" "$x25519"
        one rawssh rawssh "$n" 50 "$k"
        one pyinfra pyinfra "$n" 50 "$k"
    done
    one ansible ansible 200 50 "$k"
done
echo "=== $(date +%T) done"
