#!/bin/sh
# medic on the bench fleet with two workers in two zones, as run_bench.sh's `custom` tool
# (see README.md here):
#   BENCH_CMD="$PWD/examples/bench-fleet/run-workers.sh" ./run_bench.sh custom 1000 50 3 medic-workers
# The same inventory and playbook as run.sh, the hosts split over zones zone-a and zone-b
# (alternately, so that each has relays), the journal in a PostgreSQL this script starts
# (initdb in a temporary directory, 127.0.0.1 and a private socket only, a random password
# given to medic through PGPASSWORD; run as `nobody` when this runs as root; stopped and
# removed on exit). `medic apply --workers` creates the run in the database, then two
# `medic worker` processes serve it (zone-a + default, zone-b + default); one of them
# coordinates. The whole script is what run_bench.sh times (PostgreSQL's start included);
# its phases are printed apart at the end.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
medic=${MEDIC:-$here/../../target/release/medic}
forks=${FLEET_FORKS:-50}
now() { date +%s.%N; }
t0=$(now)
work=$(mktemp -d "${TMPDIR:-/tmp}/medic-bench-workers.XXXXXX")
pgdir=$(mktemp -d "${TMPDIR:-/tmp}/medic-bench-pg.XXXXXX")
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$pgbin" ] || pgbin=$(dirname "$(command -v initdb)")
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}
pids=
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    as_pg "$pgbin/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work" "$pgdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# PostgreSQL: a password for TCP logins (what medic uses), trust on the private socket.
PGPASSWORD=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export PGPASSWORD
printf '%s\n' "$PGPASSWORD" > "$pgdir/pwfile"
[ "$(id -u)" != 0 ] || chown -R nobody "$pgdir"
(cd "$pgdir" && as_pg "$pgbin/initdb" -D "$pgdir/data" -U medic --pwfile "$pgdir/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-sync >/dev/null)
rm -f "$pgdir/pwfile"
started=
for try in 1 2 3 4 5; do
    port=$(( 20000 + ($$ * 7 + try * 7919) % 30000 ))
    if (cd "$pgdir" && as_pg "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$pgdir" \
        start >/dev/null); then
        started=1
        break
    fi
done
[ -n "$started" ] || { cat "$pgdir/server.log" >&2; echo "error: PostgreSQL did not start" >&2; exit 1; }
(cd "$pgdir" && as_pg "$pgbin/createdb" -h "$pgdir" -p "$port" -U medic medic)
url="postgres://medic@127.0.0.1:$port/medic"
t1=$(now)

# The inventory in two zones: a `zones:` list, then each host in zone-a or zone-b in turn.
"$here/inventory.sh" "$FLEET_STATE/hosts.txt" "${FLEET_PORT:-2222}" | awk '
/^hosts:/ { print "zones:"; print "  - { name: zone-a }"; print "  - { name: zone-b }" }
/^  - \{ name: / { n++; sub(/ }$/, ", zone: zone-" (n % 2 ? "a" : "b") " }") }
{ print }' > "$work/inventory.yaml"
sed "s/^max_parallel: .*/max_parallel: $forks/" "$here/playbook.yaml" > "$work/playbook.yaml"
cd "$work"
# --skip-preflight: as run.sh (the fleet's fake `dsa` is no Deep Security agent).
"$medic" apply -i inventory.yaml -p playbook.yaml --skip-preflight \
    --set "target=${FLEET_TARGET:-20.0.1.690}" \
    --known-hosts "$FLEET_STATE/known_hosts" --ssh-key "$FLEET_STATE/id_ed25519" \
    --journal "$url" --workers --yes --progress never ${MEDIC_ARGS:-} 2> apply.log \
    || { cat apply.log >&2; exit 1; }
run=$(grep -o "postgres://[^' ]*run=[^' ]*" apply.log | head -n 1)
[ -n "$run" ] || { cat apply.log >&2; echo "error: no run URL from medic apply --workers" >&2; exit 1; }
t2=$(now)

"$medic" worker --journal "$run" --zone zone-a --zone default --max-parallel "$forks" \
    --name w-a 2> w-a.log &
pids="$!"
"$medic" worker --journal "$run" --zone zone-b --zone default --max-parallel "$forks" \
    --name w-b 2> w-b.log &
pids="$pids $!"
rc=0
for p in $pids; do wait "$p" || rc=$?; done
pids=
t3=$(now)
cat w-a.log w-b.log
"$medic" status --journal "$run" || true
awk -v t0="$t0" -v t1="$t1" -v t2="$t2" -v t3="$t3" 'BEGIN {
    printf "phases: PostgreSQL started %.2f s; medic apply --workers %.2f s; the 2 workers %.2f s; total %.2f s\n",
        t1 - t0, t2 - t1, t3 - t2, t3 - t0 }'
exit "$rc"
