#!/usr/bin/env python3
"""Turn a loadtest results directory into runs.csv, summary.md and report.html.

    python3 scripts/report.py RESULTS_DIR [--tolerance 0.01]

Everything is derived from RESULTS_DIR/raw.jsonl, so the report can be regenerated (or the
script's logic fixed) without rerunning the benchmark. raw.jsonl holds a sweep's raw
results, one JSON object per line, told apart by "kind":

    {"kind": "run", "name": N, "meta": {...}, "generator": {...}, "stderr": "..."}
        one generator run: what loadtest.sh knew about it (server, mode, connections, size,
        repeat, generator exit code, server CPU ticks before/after), the generator's JSON
        (or "generator_stdout", its output verbatim, when that is not one JSON object, e.g.
        after a crash) and its stderr
    {"kind": "server", "server": S, "info": {...}, "stdout": "...", "stderr": "..."}
        server S: whether it prints a summary and its exit status; its stdout (the
        `listening` line, then its `summary` line) and its log
    {"kind": "skipped", "server": S, "mode": M, "connections": C, "size": Z, "reason": R}
        a matrix point loadtest.sh did not run, and why
    {"kind": "knee", "server": S, "knee": {...}, "stderr": "..."}
        `echoloop-bench knee --json` against server S (loadtest.sh --knee): the curve
    {"kind": "check", "server": S, "check": {...}, "stderr": "..."}
        `echoloop-bench check --quick --json` against server S, run before measuring it
    {"kind": "outcome", "text": "..."}
        why loadtest.sh stopped before the end (refused to measure a server, interrupted,
        a setup error); absent after a complete sweep

Every run record also carries "target_check": the verdict of its server's check ("PASS",
"FAIL", or "none" when no check was run) and the names of the checks it failed, so a script
reading raw.jsonl alone cannot take a failing server's figures for good ones.

machine.txt (the machine, commit and command lines) sits beside it and is copied into the
HTML. While a sweep runs, loadtest.sh writes one file per run under RESULTS_DIR/raw/; the
first thing this script does is pack that directory into raw.jsonl and remove it, so a kept
sweep is five files however many runs it had. (`--pack-only` does just that.)

summary.md and report.html are rendered from the same aggregated rows (a small document of
headings, paragraphs, tables and lists), not one from the other.

Exit status: 0 when every run succeeded and every server cross-check agreed (or none
applied), 1 when a run failed (verification errors, generator failure, no JSON) or a
cross-check failed, 2 on usage errors. Python 3.11 standard library only.
"""

import csv
import glob
import html
import json
import math
import os
import shutil
import statistics
import sys

# The first 17 columns are the contract with whoever reads runs.csv; extras go after them.
CSV_COLUMNS = [
    "server", "mode", "connections", "size", "repeat",
    "requests", "requests_per_s", "bytes_per_s",
    "p50", "p90", "p99", "p999", "max",
    "errors", "server_cpu_s", "server_cpu_us_per_msg", "gen_cpu_s",
    # extras
    "duration_s", "gen_exit", "errors_verify", "errors_connect", "errors_io", "raw_file",
    "target_check",
]

PERCENTILES = [("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9")]


def die(msg):
    print(f"report.py: {msg}", file=sys.stderr)
    sys.exit(2)


def size_bytes(size):
    """'64' -> 64, '1K' -> 1024, '64K' -> 65536, '1M' -> 1048576 (binary units)."""
    s = str(size).strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
    digits = s[:-1] if s[-1:] in "KMG" else s
    try:
        return int(float(digits) * mult)
    except ValueError:
        return 0


def num(x):
    """A JSON number or None (bools and strings are not numbers here)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def parse_summary_line(text):
    """The server's last `summary k=v ...` line as a dict (values as int/float/str), or None."""
    found = None
    for line in text.splitlines():
        if line.startswith("summary "):
            found = line
    if found is None:
        return None
    out = {}
    for tok in found.split()[1:]:
        k, sep, v = tok.partition("=")
        if not sep:
            continue
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


RAW_FILE = "raw.jsonl"


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def pack_raw_dir(results):
    """Pack loadtest.sh's per-run files under raw/ into raw.jsonl, then remove raw/.

    Lines are written in a stable order (servers, runs by name, skipped points), so packing
    the same directory twice gives the same file.
    """
    raw = os.path.join(results, "raw")
    records = []
    for stdout in sorted(glob.glob(os.path.join(raw, "server-*.stdout"))):
        base = stdout.removesuffix(".stdout")
        try:
            with open(base + ".info.json", encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError):
            info = None  # killed before loadtest.sh could write it
        records.append({"kind": "server", "server": os.path.basename(base)[len("server-"):],
                        "info": info, "stdout": read_text(stdout), "stderr": read_text(base + ".stderr")})
    for meta_path in sorted(glob.glob(os.path.join(raw, "*.meta.json"))):
        base = meta_path.removesuffix(".meta.json")
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        rec = {"kind": "run", "name": os.path.basename(base), "meta": meta}
        out = read_text(base + ".json")
        try:
            parsed = json.loads(out)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            rec["generator"] = parsed
        else:
            rec["generator_stdout"] = out
        rec["stderr"] = read_text(base + ".stderr")
        records.append(rec)
    for path in sorted(glob.glob(os.path.join(raw, "knee-*.json"))):
        try:
            knee = json.loads(read_text(path))
        except ValueError:
            knee = None  # the search was killed before printing its JSON
        records.append({"kind": "knee", "server": os.path.basename(path)[len("knee-"):-len(".json")],
                        "knee": knee, "stderr": read_text(path.removesuffix(".json") + ".stderr")})
    for path in sorted(glob.glob(os.path.join(raw, "check-*.json"))):
        try:
            check = json.loads(read_text(path))
        except ValueError:
            check = None  # killed before printing its JSON
        records.append({"kind": "check", "server": os.path.basename(path)[len("check-"):-len(".json")],
                        "check": check, "stderr": read_text(path.removesuffix(".json") + ".stderr")})
    verdicts = {rec["server"]: check_summary(rec.get("check")) for rec in records if rec["kind"] == "check"}
    for rec in records:
        if rec["kind"] == "run":
            rec["target_check"] = verdicts.get(rec["meta"].get("server"), {"verdict": "none", "failed": []})
    outcome = read_text(os.path.join(raw, "outcome.txt")).strip()
    if outcome:
        records.append({"kind": "outcome", "text": outcome})
    for line in read_text(os.path.join(raw, "skipped.tsv")).splitlines():
        parts = line.split("\t")
        if len(parts) >= 5 and parts[0] != "server":
            server, mode, conns, size, reason = parts[:5]
            records.append({"kind": "skipped", "server": server, "mode": mode,
                            "connections": int(conns), "size": size, "reason": reason})
    tmp = os.path.join(results, RAW_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, os.path.join(results, RAW_FILE))
    shutil.rmtree(raw)


def check_summary(check):
    """A check report (`echoloop-bench check --json`) reduced to its verdict and the names of
    the checks that failed; a check that printed no report (killed) counts as failed."""
    if not isinstance(check, dict):
        return {"verdict": "FAIL", "failed": ["(the check printed no report)"]}
    failed = [c.get("name", "?") for c in check.get("checks", []) if c.get("verdict") == "FAIL"]
    verdict = check.get("verdict") or ("FAIL" if failed else "PASS")
    return {"verdict": verdict, "failed": failed}


def check_status(records):
    """server -> {"verdict", "failed": [(name, figure, detail)], "reproduce"} from the check
    records; servers without one are absent."""
    out = {}
    for rec in records:
        if rec.get("kind") != "check":
            continue
        check = rec.get("check")
        if not isinstance(check, dict):
            tail = (rec.get("stderr") or "").strip().splitlines()[-1:]
            out[rec["server"]] = {"verdict": "FAIL", "reproduce": None,
                                  "failed": [("check", "", "printed no report" + (f": {tail[0]}" if tail else ""))]}
            continue
        failed = [(c.get("name", "?"), c.get("figure") or "", c.get("detail") or "")
                  for c in check.get("checks", []) if c.get("verdict") == "FAIL"]
        verdict = check.get("verdict") or ("FAIL" if failed else "PASS")
        cmd = None
        if failed:
            cmd = (f"echoloop-bench check --target {check.get('target')} --seed {check.get('seed')}"
                   + (" --quick" if check.get("quick") else "") + (" --udp" if check.get("udp") else "")
                   + " --only " + ",".join(n for n, _, _ in failed))
        out[rec["server"]] = {"verdict": verdict, "failed": failed, "reproduce": cmd}
    return out


def failed_check_servers(status):
    return sorted((s for s, v in status.items() if v["verdict"] != "PASS"), key=server_order)


def load_records(results):
    """Every record of raw.jsonl, packing raw/ first if a sweep left one."""
    if os.path.isdir(os.path.join(results, "raw")):
        if os.path.exists(os.path.join(results, RAW_FILE)):
            die(f"{results} has both raw/ and {RAW_FILE}; remove the one that is stale")
        pack_raw_dir(results)
    path = os.path.join(results, RAW_FILE)
    records = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except ValueError as e:
                        die(f"{path}:{n}: not JSON: {e}")
    except OSError as e:
        die(f"cannot read {path}: {e.strerror} (is this a loadtest results directory?)")
    return records


def generator_json(rec):
    """The generator's JSON object for a run record, or (None, why not)."""
    if isinstance(rec.get("generator"), dict):
        return rec["generator"], None
    text = rec.get("generator_stdout") or ""
    # The contract is one JSON object on stdout; tolerate stray lines around it.
    for line in [text] + text.splitlines()[::-1]:
        try:
            cand = json.loads(line)
        except ValueError:
            continue
        if isinstance(cand, dict):
            return cand, None
    return None, "no JSON object in generator output"


def load_runs(records):
    """One dict per run record, with the generator's figures pulled out."""
    runs = []
    for rec in records:
        if rec.get("kind") != "run":
            continue
        meta = rec["meta"]
        gen, problem = generator_json(rec)
        run = {
            "server": meta["server"],
            "mode": meta["mode"],
            "connections": int(meta["connections"]),
            "size": str(meta["size"]),
            "size_bytes": size_bytes(meta["size"]),
            "repeat": int(meta["repeat"]),
            "gen_exit": meta.get("gen_exit"),
            "raw_file": f"{RAW_FILE}:{rec['name']}",
            "problem": problem,
            "gen": gen or {},
        }
        g = run["gen"]
        lat = g.get("latency_us") or {}
        err = g.get("errors") or {}
        cpu = g.get("cpu") or {}
        tot = g.get("totals") or {}
        run["requests"] = num(g.get("requests"))
        run["requests_per_s"] = num(g.get("requests_per_s"))
        run["bytes_per_s"] = num(g.get("bytes_per_s"))
        run["duration_s"] = num(g.get("duration_s"))
        for key, _ in PERCENTILES + [("max", "max")]:
            run[key] = num(lat.get(key))
        run["errors_verify"] = num(err.get("verify")) or 0
        run["errors_connect"] = num(err.get("connect")) or 0
        run["errors_io"] = num(err.get("io")) or 0
        run["errors"] = run["errors_verify"] + run["errors_connect"] + run["errors_io"]
        u, s = num(cpu.get("user_s")), num(cpu.get("sys_s"))
        run["gen_cpu_s"] = (u or 0) + (s or 0) if (u is not None or s is not None) else None
        run["bytes_sent"] = num(tot.get("bytes_sent"))
        run["bytes_received"] = num(tot.get("bytes_received"))

        # Server CPU: utime+stime ticks from /proc/PID/stat around the run. This includes the
        # warmup and the connection set-up/tear-down, while `requests` counts only the
        # measured window, so µs/msg is an upper bound; it is the same bias for every server.
        tb, ta, hz = meta.get("server_ticks_before"), meta.get("server_ticks_after"), meta.get("clk_tck")
        if isinstance(tb, int) and isinstance(ta, int) and hz:
            run["server_cpu_s"] = (ta - tb) / hz
            r = run["requests"]
            run["server_cpu_us_per_msg"] = run["server_cpu_s"] * 1e6 / r if r else None
        else:
            run["server_cpu_s"] = None
            run["server_cpu_us_per_msg"] = None

        run["causes"] = error_causes(err, rec.get("stderr") or "")
        if problem is None and run["requests"] is None:
            run["problem"] = "generator JSON lacks 'requests'"
        if run["problem"] is None and run["errors_verify"]:
            run["problem"] = "verification failed"
        if run["problem"] is None and run["gen_exit"] not in (0, None):
            run["problem"] = f"generator exited with status {run['gen_exit']}"
        if run["problem"] and run["errors"]:
            run["problem"] += ": " + errors_text(run)
        runs.append(run)
    runs.sort(key=lambda r: (server_order(r["server"]), r["mode"], r["size_bytes"], r["connections"], r["repeat"]))
    return runs


def errors_text(r):
    """'56 verification, 56 I/O' (the kinds that occurred, each named), or '0'."""
    kinds = [(r["errors_verify"], "verification"), (r["errors_io"], "I/O"), (r["errors_connect"], "connect")]
    named = [f"{n} {k}" for n, k in kinds if n]
    return ", ".join(named) if named else "0"


# What a user can change when the generator meets these errors.
HINTS = [
    (("os error 99", "Cannot assign requested address", "EADDRNOTAVAIL"),
     "EADDRNOTAVAIL: no local port was free for a new connection to this address: the "
     "ephemeral ports (`net.ipv4.ip_local_port_range`) are used up, many of them held in "
     "TIME_WAIT by connections closed in the last minute. Widen the range (`sysctl "
     "net.ipv4.ip_local_port_range=\"1024 65535\"`), let the client reuse TIME_WAIT ports "
     "(`sysctl net.ipv4.tcp_tw_reuse=1`), connect from more source addresses (each has its own "
     "ports), use fewer connections, or wait a minute between runs."),
    (("os error 24", "Too many open files"),
     "EMFILE: the process ran out of file descriptors; raise `ulimit -n` (each connection is one)."),
]


def hints_for(texts):
    return [hint for keys, hint in HINTS if any(k in t for t in texts for k in keys)]


def error_causes(err, stderr):
    """The causes of a run's errors in the generator's words: its JSON `errors.causes`
    (kind, cause, count), then the reason it gave on stderr for failing (`echoloop-bench:
    ...` lines other than the warning that only repeats the counts)."""
    out = []
    for c in err.get("causes") or []:
        if isinstance(c, dict) and c.get("cause"):
            kind = {"verify": "verification", "io": "I/O", "connect": "connect"}.get(c.get("kind"), c.get("kind"))
            out.append(f"{kind}: {c['cause']} (×{c.get('count', '?')})")
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith("echoloop-bench: ") and " warning: " not in line and not line.endswith(" i/o errors"):
            said = line[len("echoloop-bench: "):]
            if out:
                said = said.split("; causes: ")[0]  # the causes are listed above
            out.append("generator: " + said)
    return out


def fmt_csv(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}" if abs(v) < 1e6 else f"{v:.0f}"
    return str(v)


def write_csv(results, runs):
    with open(os.path.join(results, "runs.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in runs:
            w.writerow([fmt_csv(r.get(c)) for c in CSV_COLUMNS])


def group_key(r):
    return (r["server"], r["mode"], r["connections"], r["size_bytes"], r["size"])


def server_order(name):
    # echoloop first, then the comparison peers, in a stable order.
    return (0 if name == "echoloop" else 1, name)


def aggregate(runs):
    """Medians and min/max per (server, mode, connections, size) over the repeats."""
    groups = {}
    for r in runs:
        groups.setdefault(group_key(r), []).append(r)
    out = []
    for key in sorted(groups, key=lambda k: (server_order(k[0]), k[1], k[3], k[2])):
        rs = groups[key]
        g = {"server": key[0], "mode": key[1], "connections": key[2], "size_bytes": key[3],
             "size": key[4], "n": len(rs), "failed": sum(1 for r in rs if r["problem"]),
             "errors": sum(r["errors"] for r in rs)}
        for kind in ("errors_verify", "errors_io", "errors_connect"):
            g[kind] = sum(r[kind] for r in rs)
        for field in ["requests_per_s", "bytes_per_s", "server_cpu_us_per_msg", "gen_cpu_s",
                      "p50", "p90", "p99", "p999", "max"]:
            vals = [r[field] for r in rs if r[field] is not None and not r["problem"]]
            g[field] = statistics.median(vals) if vals else None
            g[field + "_min"] = min(vals) if vals else None
            g[field + "_max"] = max(vals) if vals else None
        out.append(g)
    return out


def cross_check(records, runs, tolerance):
    """Compare each server's own byte counters with what the generator saw.

    Returns a list of dicts with a verdict per server that has (or should have) a summary.
    The invariants: the generator cannot have received more than the server sent, the server
    cannot have read more than the generator sent, and the differences (bytes still in flight
    when a connection was closed) must be within `tolerance` of the total.
    """
    checks = []
    for rec in sorted((r for r in records if r.get("kind") == "server"), key=lambda r: r["server"]):
        server = rec["server"]
        mine = [r for r in runs if r["server"] == server]
        tcp = [r for r in mine if r["mode"] != "udp"]
        c = {"server": server, "runs": len(mine), "udp_runs_excluded": len(mine) - len(tcp)}
        # No info: the run was cut short; the server should still have printed a summary.
        info = rec.get("info") or {}
        if info.get("has_summary") is False:
            c["ok"] = True
            c["verdict"] = "not applicable: this server prints no byte counters"
            checks.append(c)
            continue
        status = info.get("exit_status")
        summary = parse_summary_line(rec.get("stdout") or "")
        c["summary"] = summary
        if summary is None:
            c["ok"] = False
            c["verdict"] = ("FAILED: the server printed no `summary` line"
                            + (f" (exit status {status} after SIGTERM)" if status is not None else ""))
            checks.append(c)
            continue
        missing_gen = [r for r in tcp if r["bytes_sent"] is None or r["bytes_received"] is None]
        sent = sum(r["bytes_sent"] or 0 for r in tcp)
        recv = sum(r["bytes_received"] or 0 for r in tcp)
        s_in, s_out = summary.get("tcp_bytes_in"), summary.get("tcp_bytes_out")
        c.update(gen_sent=sent, gen_received=recv, server_in=s_in, server_out=s_out)
        if not isinstance(s_in, int) or not isinstance(s_out, int):
            c["ok"] = False
            c["verdict"] = "FAILED: summary line lacks tcp_bytes_in / tcp_bytes_out"
        elif missing_gen:
            c["ok"] = False
            c["verdict"] = (f"FAILED: {len(missing_gen)} run(s) have no generator totals, "
                            "so the sums cannot be compared")
        else:
            d_out = s_out - recv  # echoed by the server but never read by the generator
            d_in = sent - s_in    # sent by the generator but never read by the server
            c["diff_out"], c["diff_in"] = d_out, d_in
            problems = []
            if d_out < 0:
                problems.append(f"generator received {-d_out} bytes more than the server sent")
            if d_in < 0:
                problems.append(f"server read {-d_in} bytes more than the generator sent")
            if s_out > s_in:
                problems.append(f"server sent {s_out - s_in} bytes more than it read")
            bound_out = tolerance * max(s_out, 1)
            bound_in = tolerance * max(sent, 1)
            if d_out > bound_out:
                problems.append(f"{d_out} bytes echoed but not received ({pct(d_out, s_out)}) exceed the tolerance {tolerance:.2%}")
            if d_in > bound_in:
                problems.append(f"{d_in} bytes sent but not read by the server ({pct(d_in, sent)}) exceed the tolerance {tolerance:.2%}")
            if status not in (0, None):
                problems.append(f"server exited with status {status} after SIGTERM")
            if problems:
                c["ok"] = False
                c["verdict"] = "FAILED: " + "; ".join(problems)
            elif d_out == 0 and d_in == 0:
                c["ok"] = True
                c["verdict"] = "AGREE exactly"
            else:
                c["ok"] = True
                c["verdict"] = (f"AGREE within tolerance {tolerance:.2%}: out differs by {d_out} bytes "
                                f"({pct(d_out, s_out)}), in by {d_in} bytes ({pct(d_in, sent)})")
        checks.append(c)
    return checks


def pct(part, whole):
    return f"{100.0 * part / whole:.4f}%" if whole else "n/a"


# ---------------------------------------------------------------- formatting helpers

def si(v, unit=""):
    if v is None:
        return "–"
    for div, p in [(1e9, "G"), (1e6, "M"), (1e3, "k")]:
        if abs(v) >= div:
            return f"{v / div:.3g}{p}{unit}"
    return f"{v:.3g}{unit}"


def us(v):
    if v is None:
        return "–"
    return f"{v:.0f}" if v >= 10 else f"{v:.3g}"


def spread(g, field, f=si):
    if g[field] is None:
        return "–"
    if g["n"] - g["failed"] <= 1:
        return f(g[field])
    return f"{f(g[field])} ({f(g[field + '_min'])}–{f(g[field + '_max'])})"


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def skipped_rows(records):
    return [r for r in records if r.get("kind") == "skipped"]


def compare_rows(runs):
    """(mode, conns, size, peer, pairs) for points measured on echoloop and a peer, where
    pairs is the list of (echoloop run, peer run) with the same repeat number, both good:
    loadtest.sh makes them one after the other, so each pair saw the same machine."""
    by_point = {}
    for r in runs:
        by_point.setdefault((r["mode"], r["size_bytes"], r["connections"], r["size"]), {}) \
            .setdefault(r["server"], {})[r["repeat"]] = r
    rows = []
    for (mode, _, conns, size), servers in sorted(by_point.items()):
        if "echoloop" not in servers:
            continue
        mine = servers["echoloop"]
        for peer in sorted((s for s in servers if s != "echoloop"), key=server_order):
            theirs = servers[peer]
            pairs = [(mine[k], theirs[k]) for k in sorted(set(mine) & set(theirs))
                     if not mine[k]["problem"] and not theirs[k]["problem"]]
            rows.append((mode, conns, size, peer, pairs))
    return rows


def median_of(pairs, side, field):
    vals = [p[side][field] for p in pairs if p[side][field] is not None]
    return statistics.median(vals) if vals else None


def pair_ratios(pairs, field):
    return [r for r in (ratio(a[field], b[field]) for a, b in pairs) if r is not None]


def ratio_cell(pairs, field):
    """'1.05× (0.97–1.12) **=**': the median of the pairs' ratios, their spread, and the mark
    when the spread includes 1."""
    rs = pair_ratios(pairs, field)
    if not rs:
        return "–"
    med = statistics.median(rs)
    if len(rs) == 1:
        return f"{fx(med)} (1 pair)"
    lo, hi = min(rs), max(rs)
    same = " **=**" if lo <= 1.0 <= hi else ""
    return f"{fx(med)} ({lo:.2f}–{hi:.2f}){same}"


# ---------------------------------------------------------------- the summary document
#
# summary.md and the top of report.html are one document, built once from the aggregated
# rows as a list of blocks and rendered twice:
#   ("h", level, text)                 a heading
#   ("p", [line, ...])                 a paragraph (Markdown keeps the line breaks)
#   ("table", header, align, rows)     align: one "l" or "r" per column
#   ("list", [(text, cls, [sub, ...])]) a bulleted list; cls "good"/"bad"/"" colours it in HTML
# Text may hold `code` and **bold**, rendered as such in HTML.

FAILED_MARK = "✗"


def summary_blocks(results, runs, aggs, checks, tolerance, skipped, status=None, outcome=None):
    status = status or {}
    bad_servers = failed_check_servers(status)
    mark = lambda server, text: f"{text} {FAILED_MARK}" if server in bad_servers else text
    B = []
    B.append(("h", 1, f"Load test summary: {os.path.basename(os.path.abspath(results))}"))
    if outcome:
        B.append(("h", 2, "This load test did not complete"))
        B.append(("p", [outcome]))
    for server in bad_servers:
        st = status[server]
        B.append(("h", 2, f"{server} FAILED the conformance check: its figures are not those of a correct echo"))
        B.append(("list", [(f"**{name}** failed: {detail}" + (f" ({figure})" if figure else ""), "bad", [])
                           for name, figure, detail in st["failed"]]))
        measured = any(r["server"] == server for r in runs)
        B.append(("p", [f"`echoloop-bench check --quick` found {server} to be a wrong echo (above, one line per failed",
                        "check with its cause). " + (f"It was measured anyway: every figure of {server} below is marked "
                                                     f"{FAILED_MARK}, in the tables and the charts. Fast wrong figures are worse than none."
                                                     if measured else "It was not measured.")]
                       + ([f"Reproduce: `{st['reproduce']}`"] if st.get("reproduce") else [])))
    if not runs:
        B.append(("p", ["No run was made, so there are no figures."]))
        return B
    B.append(("p", ["Medians over repeats, with the spread (min–max) in brackets. Throughput is what the",
                    "generator measured after warmup. Latency percentiles are the median of each run's",
                    "percentile. Server CPU µs/msg = server utime+stime over the whole run (warmup and",
                    "connection set-up included) / measured requests, so it is an upper bound. Errors are",
                    "counted by kind: a connection reset with echoes outstanding counts once as an I/O",
                    "error and once as a verification error (the bytes it lost)."]))
    rows = []
    for g in aggs:
        runs_cell = f"{g['n']}" + (f" ({g['failed']} failed)" if g["failed"] else "")
        mbps = None if g["bytes_per_s"] is None else g["bytes_per_s"] / 1e6
        figures = [spread(g, "requests_per_s"), si(mbps), us(g["p50"]), us(g["p99"]),
                   us(g["p999"]), us(g["server_cpu_us_per_msg"])]
        rows.append([mark(g["server"], g["server"]), g["mode"], str(g["connections"]), g["size"], runs_cell]
                    + [mark(g["server"], f) for f in figures] + [errors_text(g)])
    B.append(("table", ["server", "mode", "conns", "size", "runs", "req/s", "MB/s", "p50 µs", "p99 µs",
                        "p99.9 µs", "srv CPU µs/msg", "errors"], "llrrrrrrrrrr", rows))
    if bad_servers:
        B.append(("p", [f"{FAILED_MARK}: a figure of a server that failed `echoloop-bench check` (see the top)."]))
    cmp_rows = compare_rows(runs)
    if cmp_rows:
        B.append(("h", 2, "echoloop vs peers"))
        B.append(("p", ["Each server's runs of a point were made in turn (echoloop, peer, echoloop, peer...), and",
                        "each ratio is the median of the pairs' ratios, with their spread (min–max) in brackets.",
                        "Throughput > 1: echoloop is faster. CPU/msg < 1: echoloop spends less server CPU per echoed",
                        "message. p99 < 1: echoloop has the lower tail latency. **=** marks a ratio whose spread",
                        "includes 1: no difference shown. One pair has no spread: repeat (`--repeats`) to see one."]))
        rows = []
        for mode, conns, size, peer, pairs in cmp_rows:
            rows.append([mode, str(conns), size, mark(peer, peer), str(len(pairs)),
                         si(median_of(pairs, 0, "requests_per_s")), mark(peer, si(median_of(pairs, 1, "requests_per_s"))),
                         mark(peer, ratio_cell(pairs, "requests_per_s")),
                         mark(peer, ratio_cell(pairs, "server_cpu_us_per_msg")),
                         mark(peer, ratio_cell(pairs, "p99"))])
        B.append(("table", ["mode", "conns", "size", "peer", "pairs", "echoloop req/s", "peer req/s",
                            "throughput ratio", "CPU/msg ratio", "p99 ratio"], "lrrlrrrrrr", rows))
    B.append(("h", 2, "Cross-check: server counters vs generator totals"))
    if not checks:
        B.append(("p", ["Not applicable: no server was started by the script (external --target), so there",
                        "is no server summary and no server CPU to compare."]))
    else:
        items = []
        for c in checks:
            sub = []
            if "server_out" in c:
                sub.append(f"server tcp_bytes_out = {c['server_out']}, sum of generator totals.bytes_received = {c['gen_received']}")
                sub.append(f"server tcp_bytes_in = {c['server_in']}, sum of generator totals.bytes_sent = {c['gen_sent']}")
            if c.get("udp_runs_excluded"):
                sub.append(f"{c['udp_runs_excluded']} udp run(s) excluded from the TCP byte sums")
            items.append((f"**{c['server']}**: {c['verdict']}", "good" if c["ok"] else "bad", sub))
        B.append(("list", items))
        B.append(("p", [f"(Tolerance {tolerance:.2%}: bytes in flight when a generator closes its connections may be",
                        "echoed but never read; anything beyond that, or any byte that appears from nowhere, fails.)"]))
    failed = [r for r in runs if r["problem"]]
    B.append(("h", 2, "Failed runs"))
    if failed:
        B.append(("list", [(f"{r['server']} {r['mode']} c={r['connections']} s={r['size']} repeat {r['repeat']}: "
                            f"{r['problem']} (`{r['raw_file']}`)", "bad", r["causes"]) for r in failed]))
        hints = hints_for([c for r in failed for c in r["causes"]])
        for h in hints:
            B.append(("p", ["Hint: " + h]))
    else:
        B.append(("p", ["None."]))
    if skipped:
        B.append(("h", 2, "Skipped matrix points"))
        B.append(("list", [(f"{k['server']} {k['mode']} c={k['connections']} s={k['size']}: {k['reason']}", "", [])
                           for k in skipped]))
    B.append(("p", [f"Raw data: `{RAW_FILE}`; per-run rows: `runs.csv`; charts: `report.html`; "
                    "machine and commands: `machine.txt`."]))
    return B


def render_md(blocks):
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append("#" * block[1] + " " + block[2])
        elif kind == "p":
            out.append("\n".join(block[1]))
        elif kind == "table":
            _, header, align, rows = block
            lines = ["| " + " | ".join(header) + " |",
                     "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
            lines += ["| " + " | ".join(row) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "list":
            lines = []
            for text, _, sub in block[1]:
                lines.append(f"- {text}")
                lines += [f"  - {t}" for t in sub]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def inline_html(text):
    """Escapes `text` and renders its `code` and **bold** spans."""
    out = []
    for i, part in enumerate(html.escape(text).split("`")):
        if i % 2:
            out.append(f"<code>{part}</code>")
        else:
            bold = part.split("**")
            out.append("".join(f"<b>{t}</b>" if j % 2 else t for j, t in enumerate(bold)))
    return "".join(out)


def render_html(blocks):
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append(f"<h{block[1]}>{inline_html(block[2])}</h{block[1]}>")
        elif kind == "p":
            out.append("<p>" + inline_html(" ".join(block[1])) + "</p>")
        elif kind == "table":
            _, header, _, rows = block
            out.append("<table>")
            out.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr>")
            for row in rows:
                out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
            out.append("</table>")
        elif kind == "list":
            out.append("<ul>")
            for text, cls, sub in block[1]:
                attr = f' class="{cls}"' if cls else ""
                inner = "".join(f"<li>{inline_html(t)}</li>" for t in sub)
                out.append(f"<li{attr}>{inline_html(text)}" + (f"<ul>{inner}</ul>" if inner else "") + "</li>")
            out.append("</ul>")
    return "\n".join(out)


def write_summary(results, blocks):
    with open(os.path.join(results, "summary.md"), "w", encoding="utf-8") as f:
        f.write(render_md(blocks))


def fx(v):
    return "–" if v is None else f"{v:.2f}×"


# ---------------------------------------------------------------- SVG charts

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
DASHES = ["", "6 4", "2 3", "8 3 2 3"]


def log_ticks(lo, hi):
    """1-2-5 ticks between lo and hi (both > 0), at most ~10 labels."""
    ticks = []
    e = math.floor(math.log10(lo))
    while 10 ** e <= hi * 1.0001:
        for m in (1, 2, 5):
            t = m * 10 ** e
            if lo * 0.9999 <= t <= hi * 1.0001:
                ticks.append(t)
        e += 1
    if len(ticks) > 10:
        ticks = [t for t in ticks if str(t).lstrip("0.").startswith("1")]
    return ticks


def svg_chart(title, series, xlabel, ylabel, width=560, height=340):
    """A log-log line chart. series: [{label, color, dash, points: [(x, y, ylo, yhi)]}]."""
    pts = [p for s in series for p in s["points"] if p[0] and p[0] > 0 and p[1] and p[1] > 0]
    e = html.escape
    if not pts:
        return f'<div class="chart empty"><b>{e(title)}</b><br>no data</div>'
    xs = [p[0] for p in pts]
    ys = [v for p in pts for v in (p[1], p[2], p[3]) if v and v > 0]
    xlo, xhi = min(xs), max(xs)
    ylo, yhi = min(ys), max(ys)
    if xlo == xhi:
        xlo, xhi = xlo / 2, xhi * 2
    ylo = 10 ** math.floor(math.log10(ylo))
    yhi = 10 ** math.ceil(math.log10(yhi)) if yhi > ylo else ylo * 10
    ml, mr, mt, mb = 64, 14, 28, 44
    legend_h = 16 * math.ceil(len(series) / 2)
    H = height + legend_h
    pw, ph = width - ml - mr, height - mt - mb

    def X(x):
        return ml + pw * (math.log10(x) - math.log10(xlo)) / (math.log10(xhi) - math.log10(xlo))

    def Y(y):
        return mt + ph * (1 - (math.log10(y) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo)))

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{H}" viewBox="0 0 {width} {H}" '
         f'font-family="sans-serif" font-size="11">']
    o.append(f'<title>{e(title)}</title>')
    o.append(f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{e(title)}</text>')
    o.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    xt = sorted(set(xs)) if len(set(xs)) <= 12 else log_ticks(xlo, xhi)
    for t in xt:
        o.append(f'<line x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{mt}" y2="{mt + ph}" stroke="#eee"/>')
        o.append(f'<text x="{X(t):.1f}" y="{mt + ph + 14}" text-anchor="middle">{e(si(t))}</text>')
    for t in log_ticks(ylo, yhi):
        o.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{Y(t):.1f}" y2="{Y(t):.1f}" stroke="#eee"/>')
        o.append(f'<text x="{ml - 4}" y="{Y(t) + 4:.1f}" text-anchor="end">{e(si(t))}</text>')
    o.append(f'<text x="{ml + pw / 2}" y="{mt + ph + 32}" text-anchor="middle">{e(xlabel)}</text>')
    o.append(f'<text transform="translate(14,{mt + ph / 2}) rotate(-90)" text-anchor="middle">{e(ylabel)}</text>')
    for s in series:
        good = sorted(p for p in s["points"] if p[0] and p[0] > 0 and p[1] and p[1] > 0)
        if not good:
            continue
        dash = f' stroke-dasharray="{s["dash"]}"' if s["dash"] else ""
        path = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y, _, _ in good)
        o.append(f'<polyline points="{path}" fill="none" stroke="{s["color"]}" stroke-width="1.8"{dash}/>')
        for x, y, lo, hi in good:
            if lo and hi and lo > 0 and hi > lo:
                o.append(f'<line x1="{X(x):.1f}" x2="{X(x):.1f}" y1="{Y(lo):.1f}" y2="{Y(hi):.1f}" stroke="{s["color"]}"/>')
            if s.get("bad"):
                # A failing server's points are crosses, not dots: marked wherever they are.
                cx, cy = X(x), Y(y)
                o.append(f'<path d="M{cx - 4:.1f},{cy - 4:.1f}L{cx + 4:.1f},{cy + 4:.1f}M{cx - 4:.1f},{cy + 4:.1f}'
                         f'L{cx + 4:.1f},{cy - 4:.1f}" stroke="{s["color"]}" stroke-width="2">'
                         f'<title>{e(s["label"])}: x={si(x)} y={si(y)}</title></path>')
            else:
                o.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="2.6" fill="{s["color"]}">'
                         f'<title>{e(s["label"])}: x={si(x)} y={si(y)}</title></circle>')
    for i, s in enumerate(series):
        lx = ml + (i % 2) * (pw / 2)
        ly = height + 16 * (i // 2)
        dash = f' stroke-dasharray="{s["dash"]}"' if s["dash"] else ""
        o.append(f'<line x1="{lx:.1f}" x2="{lx + 26:.1f}" y1="{ly - 4}" y2="{ly - 4}" stroke="{s["color"]}" stroke-width="2"{dash}/>')
        o.append(f'<text x="{lx + 30:.1f}" y="{ly}">{e(s["label"])}</text>')
    o.append("</svg>")
    return "\n".join(o)


def chart_label(server, bad):
    return f"{server} {FAILED_MARK} failed check" if server in bad else server


def throughput_charts(aggs, bad=()):
    out = []
    servers = sorted({g["server"] for g in aggs}, key=server_order)
    sizes = sorted({(g["size_bytes"], g["size"]) for g in aggs})
    for mode in sorted({g["mode"] for g in aggs}):
        for field, label, scale in [("requests_per_s", "requests/s", 1.0), ("bytes_per_s", "MB/s", 1e-6)]:
            series = []
            for si_, (sb, size) in enumerate(sizes):
                for di, server in enumerate(servers):
                    gs = [g for g in aggs if g["mode"] == mode and g["server"] == server and g["size_bytes"] == sb]
                    if not gs:
                        continue
                    pts = [(g["connections"], sc(g[field], scale), sc(g[field + "_min"], scale),
                            sc(g[field + "_max"], scale)) for g in gs]
                    series.append({"label": f"{chart_label(server, bad)} {size}", "color": PALETTE[si_ % len(PALETTE)],
                                   "dash": DASHES[di % len(DASHES)], "points": pts, "bad": server in bad})
            out.append(svg_chart(f"{mode}: {label} vs connections", series, "connections (log)", f"{label} (log)"))
    return out


def latency_charts(aggs, bad=()):
    out = []
    servers = sorted({g["server"] for g in aggs}, key=server_order)
    for mode in sorted({g["mode"] for g in aggs}):
        for sb, size in sorted({(g["size_bytes"], g["size"]) for g in aggs if g["mode"] == mode}):
            series = []
            for di, server in enumerate(servers):
                gs = [g for g in aggs if g["mode"] == mode and g["server"] == server and g["size_bytes"] == sb]
                if not gs:
                    continue
                for pi, (key, name) in enumerate(PERCENTILES):
                    pts = [(g["connections"], g[key], g[key + "_min"], g[key + "_max"]) for g in gs]
                    series.append({"label": f"{chart_label(server, bad)} {name}", "color": PALETTE[pi],
                                   "dash": DASHES[di % len(DASHES)], "points": pts, "bad": server in bad})
            if any(p[1] for s in series for p in s["points"]):
                out.append(svg_chart(f"{mode} {size}: latency percentiles", series,
                                     "connections (log)", "latency µs (log)"))
    return out


def sc(v, scale):
    return None if v is None else v * scale


def knee_section(records):
    """The knee curves ("knee" records, from `loadtest.sh --knee`): p50/p99 against the offered
    rate, one colour per server, the target as a dashed line. Empty when no knee was run."""
    knees = [(r["server"], r["knee"]) for r in records
             if r.get("kind") == "knee" and isinstance(r.get("knee"), dict)]
    if not knees:
        return ""
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    series, lines = [], []
    for i, (server, k) in enumerate(knees):
        curve = k.get("curve") or []
        for q, dash in (("p50_us", "4 3"), ("p99_us", "")):
            series.append({"label": f"{server} {q[:3]}", "color": colors[i % len(colors)], "dash": dash,
                           "points": [(c["rate"], c[q], None, None) for c in curve]})
        rate = k.get("knee_rate")
        lines.append(f"<li>{html.escape(server)}: knee "
                     f"{'none' if rate is None else f'{rate:,.0f}/s'} at p99 ≤ {k.get('p99_target_us')} µs "
                     f"({k.get('protocol')}, {k.get('connections')} connections, size {k.get('size')})</li>")
    target = knees[0][1].get("p99_target_us")
    if target:
        xs = [c["rate"] for _, k in knees for c in (k.get("curve") or [])]
        if xs:
            series.append({"label": "p99 target", "color": "#888", "dash": "2 2",
                           "points": [(min(xs), target, None, None), (max(xs), target, None, None)]})
    return ("<h2>Knee: latency vs offered rate</h2><ul>" + "".join(lines) + "</ul>"
            + svg_chart("latency vs offered rate", series, "offered rate /s (log)", "latency µs (log)"))


def write_html(results, aggs, blocks, knees="", bad=()):
    machine = read_text(os.path.join(results, "machine.txt"))
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>echoloop load test {html.escape(os.path.basename(os.path.abspath(results)))}</title>",
             "<style>body{font-family:sans-serif;margin:1.5em;max-width:1200px;color:#222}"
             "table{border-collapse:collapse;font-size:12px;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
             "td:nth-child(-n+2),th{text-align:left}"
             ".charts{display:flex;flex-wrap:wrap;gap:12px}.chart.empty{padding:1em;border:1px dashed #ccc}"
             "li.bad,p.bad{color:#b00;font-weight:bold}li.good{color:#070}"
             "pre{background:#f6f6f6;padding:.6em;font-size:11px;white-space:pre-wrap}</style>",
             "</head><body>"]
    parts.append(render_html(blocks))
    if not aggs:
        parts.append("<h2>Machine and commands</h2>")
        parts.append(f"<pre>{html.escape(machine) or 'machine.txt missing'}</pre></body></html>")
        with open(os.path.join(results, "report.html"), "w", encoding="utf-8") as f:
            f.write("\n".join(parts))
        return
    parts.append("<h2>Throughput vs connections</h2>")
    parts.append("<p>Median over repeats; vertical bars show min–max. Colour = message size, dash = server.</p>")
    if bad:
        parts.append(f"<p class=bad>Crosses ({FAILED_MARK}) and the label “failed check”: figures of "
                     f"{html.escape(', '.join(bad))}, which failed <code>echoloop-bench check</code>.</p>")
    parts.append('<div class="charts">' + "\n".join(throughput_charts(aggs, bad)) + "</div>")
    parts.append("<h2>Latency percentiles</h2>")
    parts.append("<p>Median of each run's percentile; colour = percentile, dash = server. "
                 "Stream mode may report no per-message latency.</p>")
    parts.append('<div class="charts">' + "\n".join(latency_charts(aggs, bad)) + "</div>")
    parts.append(knees)
    parts.append("<h2>Machine and commands</h2>")
    parts.append(f"<pre>{html.escape(machine) or 'machine.txt missing'}</pre>")
    parts.append("</body></html>")
    with open(os.path.join(results, "report.html"), "w", encoding="utf-8") as f:
        f.write("\n".join(parts))


def main(argv):
    args = argv[1:]
    tolerance = 0.01
    if "-h" in args or "--help" in args:
        print(__doc__)
        return 0
    if "--tolerance" in args:
        i = args.index("--tolerance")
        try:
            tolerance = float(args[i + 1])
        except (IndexError, ValueError):
            die("--tolerance needs a fraction, e.g. 0.01 for 1%")
        del args[i:i + 2]
    pack_only = "--pack-only" in args
    if pack_only:
        args.remove("--pack-only")
    if len(args) != 1:
        die("usage: report.py RESULTS_DIR [--tolerance FRACTION] [--pack-only]")
    results = args[0]
    if not os.path.isdir(results):
        die(f"{results} is not a directory")
    records = load_records(results)
    if pack_only:
        print(f"report.py: packed {len(records)} records into {os.path.join(results, RAW_FILE)}")
        return 0
    runs = load_runs(records)
    status = check_status(records)
    outcome = "\n".join(r.get("text", "") for r in records if r.get("kind") == "outcome") or None
    if not runs and not outcome and not status:
        die(f"no runs found in {os.path.join(results, RAW_FILE)}")
    for r in runs:
        r["target_check"] = status.get(r["server"], {}).get("verdict", "none")
    aggs = aggregate(runs)
    checks = cross_check(records, runs, tolerance) if runs else []
    write_csv(results, runs)
    blocks = summary_blocks(results, runs, aggs, checks, tolerance, skipped_rows(records), status, outcome)
    write_summary(results, blocks)
    write_html(results, aggs, blocks, knee_section(records), failed_check_servers(status))
    if not runs:
        print(f"report.py: no runs; wrote summary.md and report.html in {results} saying why")
        return 1

    failed = [r for r in runs if r["problem"]]
    bad_checks = [c for c in checks if not c["ok"]]
    print(f"report.py: {len(runs)} runs, {len(failed)} failed; wrote runs.csv, summary.md, report.html in {results}")
    for server in failed_check_servers(status):
        print(f"report.py: {server} FAILED echoloop-bench check ({', '.join(n for n, _, _ in status[server]['failed'])}); "
              "its figures are marked in the summary and the report")
    for c in checks:
        print(f"report.py: cross-check {c['server']}: {c['verdict']}")
    if not checks:
        print("report.py: cross-check not applicable (no server summary: external target)")
    return 1 if failed or bad_checks else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
