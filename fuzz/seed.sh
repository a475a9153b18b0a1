#!/usr/bin/env bash
# Lays the seed corpora (fuzz/seeds/<target>/) and the dictionaries (fuzz/dict/) from the
# repository's own inputs. The seeds are the start; fuzz/corpus/<target>/ is what the runs
# found on top of them (after `cargo fuzz cmin`). Re-run after the formats change.
# The plan_json seeds are written by a built `medic` (target/release/medic or target/debug/medic).
set -euo pipefail
cd "$(dirname "$0")"
root=..
fx=$root/crates/medic-cli/tests/fixtures/invalid
pb=$root/playbooks/ds-activeupdate-cert-2023.yaml
rm -rf seeds && mkdir -p seeds/{inventory,playbook,set,build_string,plan,plan_json} dict

# inventory: the examples, the simulator's demo fleet, every invalid fixture.
for d in $root/examples/*/; do cp "$d/inventory.yaml" "seeds/inventory/example-$(basename "$d").yaml"; done
cp $root/crates/medic-sim/fleets/demo.yaml seeds/inventory/sim-demo.yaml
for d in "$fx"/*/; do cp "$d/inventory.yaml" "seeds/inventory/invalid-$(basename "$d").yaml"; done

# playbook: the shipped one, the invalid fixtures' playbooks, the YAML blocks of docs/playbook.md.
cp "$pb" seeds/playbook/ds-activeupdate-cert-2023.yaml
for f in "$fx"/*/playbook.yaml; do cp "$f" "seeds/playbook/invalid-$(basename "$(dirname "$f")").yaml"; done
awk '/^```yaml/{n++; f=sprintf("seeds/playbook/doc-%02d.yaml", n); next} /^```/{f=""; next} f{print > f}' $root/docs/playbook.md

# set: one `--set` argument per line (the fixtures' args.txt, then valid and near-valid ones).
for f in "$fx"/*/args.txt; do grep -v '^--set$' "$f" > "seeds/set/invalid-$(basename "$(dirname "$f")")" ; done
printf '%s\n' fixed_build.linux=20.0.1-690 fixed_build.windows=20.0.1.7380 > seeds/set/fixed-both
printf '%s\n' fixed_build.linux=20.0.1-690 target_build.linux=20.0.2-100 target_build.windows=20.0.1-690 > seeds/set/target
printf '%s\n' manager_min_build=20.0.463 relay_barrier=relay-group bundle_name=my-bundle > seeds/set/scalars
printf '%s\n' relay_barrier=global bundle_name=true bundle_name=42 > seeds/set/string-typed
printf '%s\n' fixed_build.solaris=20.0.1-690 'fixed_build.linux = 20.0.1-690' 'x' '=' '.=' > seeds/set/odd
printf '%s\n' manager_min_build=4294967296.0.0 fixed_build.linux=99999999999.0.0.1 > seeds/set/overflow

# build_string: agent and manager builds, good and bad.
i=0
for s in 20.0.1-690 20.0.1.7380 20.0.463 0.0.0.0 12.0.0-1234 11.0.1617 " 20.0.1-690 " 20.0.1-0690 \
         4294967295.4294967295.4294967295.4294967295 4294967296.0.0.0 1.2.3.4.5 1..2.3 -1.0.0.0 \
         +1.0.0.0 1.0.0-- abc 20.0 "" 20.0.1_690 "20.0.1-690\n" ２０.0.1-690 1e3.0.0.0; do
  i=$((i+1)); printf '%s' "$s" > "seeds/build_string/$(printf %02d $i)"
done

# plan: each loadable inventory with the shipped playbook (empty 2nd part), then with a
# window and --set lines; each fixture pair that has its own playbook.
# A tiny fleet too: its plan is a small plan_json seed.
cat > seeds/inventory/tiny.yaml <<'YAML'
manager: { name: dsm01, address: 10.0.0.5, version: "20.0.400" }
relay_groups: [ { name: g } ]
hosts:
  - { name: r1, address: 10.0.1.10, platform: linux, agent_version: "20.0.0-3445", relay: true, relay_group: g }
  - { name: w1, address: 10.0.1.21, platform: windows, agent_version: "12.0.0-1234", relay_group: g, groups: [canary] }
YAML
invs="$root/examples/lab/inventory.yaml $root/examples/multi-site/inventory.yaml $root/crates/medic-sim/fleets/demo.yaml seeds/inventory/tiny.yaml"
name() { case "$1" in *sim/fleets/demo.yaml) echo sim-demo;; *tiny.yaml) echo tiny;; *) basename "$(dirname "$1")";; esac; }
for f in $invs; do
  n=$(name "$f")
  cp "$f" "seeds/plan/$n"
  { cat "$f"; printf '\n%%%%\n\n%%%%\n2026-12-01T22:00+09:00/2026-12-02T04:00+09:00\n%%%%\nfixed_build.linux=20.0.2-100\nrelay_barrier=relay-group\n'; } > "seeds/plan/$n-window-sets"
done
for d in "$fx"/*/; do
  [ -f "$d/playbook.yaml" ] || continue
  { cat "$d/inventory.yaml"; printf '\n%%%%\n'; cat "$d/playbook.yaml"; } > "seeds/plan/fixture-$(basename "$d")"
done
for w in 2026-12-01T22:00+09:00/2026-12-01T22:30+09:00 2026-12-02T04:00Z/2026-12-01T22:00Z nonsense/x 2026-12-01T22:00:00-05:00/2026-12-03T00:00:00-05:00; do
  { cat $root/examples/lab/inventory.yaml; printf '\n%%%%\n\n%%%%\n%s\n' "$w"; } > "seeds/plan/lab-window-$(echo "$w" | md5sum | cut -c1-8)"
done

# plan_json: the plans medic writes for the lab and the tiny fleet (the larger fleets' plans
# are over the 64 KiB max_len the runs use).
medic=""
for m in $root/target/release/medic $root/target/debug/medic; do [ -x "$m" ] && { medic=$m; break; }; done
if [ -n "$medic" ]; then
  for f in $root/examples/lab/inventory.yaml seeds/inventory/tiny.yaml; do
    n=$(name "$f")
    "$medic" plan -i "$f" -p "$pb" --format json > "seeds/plan_json/$n.json"
    "$medic" plan -i "$f" -p "$pb" --format json --window 2026-12-01T22:00+09:00/2026-12-02T04:00+09:00 \
      --set relay_barrier=relay-group > "seeds/plan_json/$n-window.json"
  done
  # The same plans without whitespace: a quarter of the size, so mutating them is cheaper.
  for f in seeds/plan_json/*.json; do
    python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":"), ensure_ascii=False), end="")' \
      "$f" > "${f%.json}.min" 2>/dev/null || rm -f "${f%.json}.min"
  done
else
  echo "no medic binary: build it (cargo build -p medic-cli) for the plan_json seeds" >&2
fi

# Dictionaries: YAML punctuation plus every identifier-like string literal of the loaders.
{
  for t in ': ' '- ' '{ ' ' }' '[ ' ' ]' ', ' '"' "'" '&a ' '*a' '!!str ' '---' '...' '|' '>-' '# ' '~' 'null' \
           'true' 'false' '.inf' '0x' '%%' '=' '.linux' '.windows' '20.0.1-690' '20.0.463' '2026-12-01T22:00+09:00'; do
    printf '"%s"\n' "$(printf '%s' "$t" | sed 's/\\/\\\\/g; s/"/\\"/g')"
  done
  grep -ho '"[A-Za-z_][A-Za-z0-9_./-]*"' $root/crates/medic-config/src/*.rs $root/crates/medic-model/src/*.rs | sort -u
} > dict/medic.dict
{
  for t in '{' '}' '[' ']' ':' ',' '"' 'null' 'true' 'false' '-1' '1e999' '4294967296' '\\u0000' '\\ud800'; do
    printf '"%s"\n' "$(printf '%s' "$t" | sed 's/"/\\"/g')"
  done
  grep -ho '"[a-z_][a-z0-9_./-]*"' $root/crates/medic-plan/src/json.rs | sort -u
} > dict/plan_json.dict
for t in inventory playbook set build_string plan plan_json; do echo "$t: $(ls seeds/$t | wc -l) seeds, $(du -sk seeds/$t | cut -f1) KiB"; done
