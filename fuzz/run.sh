#!/usr/bin/env bash
# Runs one fuzz target for SECONDS (default 600) on the stable toolchain, without a
# sanitizer, on its committed corpus plus the seeds; new finds go to corpus/TARGET, crashes
# to artifacts/TARGET; builds into target-none/ (ASan builds keep target/). Usage: fuzz/run.sh TARGET [SECONDS] [extra libFuzzer flags...]
set -euo pipefail
cd "$(dirname "$0")"
t=${1:?usage: run.sh TARGET [SECONDS] [libFuzzer flags]}; secs=${2:-600}; shift $(( $# >= 2 ? 2 : 1 ))
case $t in
  inventory)    dict=medic.dict;     max_len=16384 ;;
  playbook)     dict=medic.dict;     max_len=32768 ;;
  set)          dict=medic.dict;     max_len=4096 ;;
  build_string) dict=medic.dict;     max_len=256 ;;
  plan)         dict=medic.dict;     max_len=32768 ;;
  plan_json)    dict=plan_json.dict; max_len=65536 ;;
  *) echo "unknown target $t" >&2; exit 2 ;;
esac
[ -d seeds/$t ] || ./seed.sh
mkdir -p corpus/$t
exec nice -n 19 cargo fuzz run -O -s none --target-dir target-none "$t" "corpus/$t" "seeds/$t" -- \
  -dict="dict/$dict" -max_len=$max_len -timeout=10 -rss_limit_mb=2048 \
  -max_total_time="$secs" -print_final_stats=1 "$@"
