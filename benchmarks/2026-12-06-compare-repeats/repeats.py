#!/usr/bin/env python3
"""How many repeats a `loadtest.sh --compare` needs: from one sweep with many pairs, the
median ratio of k pairs (every subset of k of the n pairs) against the median of all n.

    python3 repeats.py RESULTS_DIR      (a folder with raw.jsonl; report.py's own reading)

For each point and each k it prints the 90th percentile of |median of k / median of n - 1|
over all subsets, and how often a k-pair spread (min-max) includes 1 although all n pairs
say there is a difference (their spread excludes 1; "–" when they do not). Standard
library only.
"""
import itertools
import os
import statistics
import sys

sys.path.insert(0, os.environ.get("ECHOLOOP_SCRIPTS") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import report  # noqa: E402  (scripts/report.py: its loading and pairing, not a copy)


def main(results):
    runs = report.load_runs(report.load_records(results))
    rows = report.compare_rows(runs)
    ks = [1, 2, 3, 5]
    print("point                      field     n  all-pairs median (min-max)   "
          + "  ".join(f"k={k}: p90 dev, =1" for k in ks))
    for mode, conns, size, peer, pairs in rows:
        for field, name in [("requests_per_s", "thrpt"), ("server_cpu_us_per_msg", "cpu/msg")]:
            rs = report.pair_ratios(pairs, field)
            n = len(rs)
            if n < 2:
                continue
            full = statistics.median(rs)
            differs = not (min(rs) <= 1 <= max(rs))
            cells = []
            for k in ks:
                if k >= n:
                    cells.append(f"k={k}: –")
                    continue
                subs = list(itertools.combinations(rs, k))
                devs = sorted(abs(statistics.median(s) / full - 1) for s in subs)
                p90 = devs[int(0.9 * (len(devs) - 1))]
                if differs:
                    wrong = sum(1 for s in subs if min(s) <= 1 <= max(s)) / len(subs)
                    cells.append(f"k={k}: {p90:5.1%}, {wrong:4.0%}")
                else:
                    cells.append(f"k={k}: {p90:5.1%},    –")
            print(f"{mode} c={conns} s={size} vs {peer}".ljust(27)
                  + f"{name:8} {n:2}  {full:.2f}× ({min(rs):.2f}–{max(rs):.2f})".ljust(33) + "  ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1])
