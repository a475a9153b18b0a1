#!/usr/bin/env python3
"""The bench fleet's results (BENCH/results/*/run*.json) as the table in medic's README.

    python3 summarize.py BENCH_FLEET_DIR [LABEL ...]   # default labels: the matrix's

Per (N, tool): medians over runs (min-max of wall time), controller CPU per host (the
tool's cgroup, which also counts detached ssh masters), the fleet's sshd CPU, the floor
that CPU sets on 2 cores (fleet CPU / 2), and how far the wall time is from the tool's
own floor and from the floor of the plain OpenSSH loop with curve25519.
"""
import glob
import json
import os
import statistics
import sys
from collections import defaultdict

bench = sys.argv[1]
labels = sys.argv[2:] or ["medic", "rawssh-x25519", "rawssh", "pyinfra", "ansible"]
rows = defaultdict(list)
for p in glob.glob(os.path.join(bench, "results", "*", "run*.json")):
    r = json.load(open(p))
    if r["label"] in labels:
        rows[(r["n"], r["label"])].append(r)


def med(runs, key):
    return statistics.median(r[key] for r in runs)


print("| N | tool | runs | wall s, median (min-max) | controller CPU ms/host | peak RSS MiB "
      "| fleet (sshd) CPU s | floor s = fleet/2 | wall / own floor | wall / OpenSSH-x25519 floor "
      "| verified |")
print("|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
for n in sorted({n for n, _ in rows}, reverse=True):
    ref = rows.get((n, "rawssh-x25519"))
    ref_floor = med(ref, "fleet_cpu_s") / 2 if ref else None
    walls = {}
    for label in labels:
        runs = rows.get((n, label))
        if not runs:
            continue
        w = [r["wall_s"] for r in runs]
        wall = med(runs, "wall_s")
        walls[label] = wall
        floor = med(runs, "fleet_cpu_s") / 2
        ok = min(r["verified"] for r in runs)
        bad = sum(1 for r in runs if r["rc"] != 0)
        ver = f"{ok}/{n}" + (f" (rc!=0 in {bad})" if bad else "")
        rel = f"{wall / ref_floor:.2f}x" if ref_floor else "-"
        print(f"| {n} | {label} | {len(runs)} | {wall:.2f} ({min(w):.2f}-{max(w):.2f}) | "
              f"{med(runs, 'client_total_cpu_s') / n * 1000:.1f} | "
              f"{med(runs, 'peak_rss_kb') / 1024:.0f} | {med(runs, 'fleet_cpu_s'):.1f} | "
              f"{floor:.1f} | {wall / floor:.2f}x | {rel} | {ver} |")
    if "medic" in walls:
        others = ", ".join(f"{walls[l] / walls['medic']:.1f}x faster than {l}"
                           for l in labels if l != "medic" and l in walls)
        print(f"\nN={n}: medic {others}\n", file=sys.stderr)
