#!/usr/bin/env python3
"""Turn a loadtest results directory into runs.csv, summary.md and report.html.

    python3 scripts/report.py RESULTS_DIR [--tolerance 0.01]

Everything is derived from RESULTS_DIR/raw/, so the report can be regenerated (or the
script's logic fixed) without rerunning the benchmark:

    raw/NAME.json          the generator's JSON, exactly as it printed it (may be empty
                           or invalid if the generator crashed)
    raw/NAME.meta.json     what loadtest.sh knew about the run: server, mode, connections,
                           size, repeat, generator exit code, server CPU ticks before/after
    raw/NAME.stderr        the generator's stderr
    raw/server-S.stdout    server S's stdout: the `listening` line, then its `summary` line
    raw/server-S.info.json whether S prints a summary at all, and its exit status
    raw/skipped.tsv        matrix points loadtest.sh did not run, with the reason
    machine.txt            the machine, commit and command lines (copied into the HTML)

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


def parse_summary_line(path):
    """The server's last `summary k=v ...` line as a dict (values as int/float/str), or None."""
    found = None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("summary "):
                    found = line
    except OSError:
        return None
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


def load_runs(results):
    """One dict per run, from raw/*.meta.json plus the generator JSON next to it."""
    runs = []
    for meta_path in sorted(glob.glob(os.path.join(results, "raw", "*.meta.json"))):
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        json_path = meta_path.removesuffix(".meta.json") + ".json"
        gen, problem = None, None
        try:
            with open(json_path, encoding="utf-8") as f:
                text = f.read()
            # The contract is one JSON object on stdout; tolerate stray lines around it.
            for line in [text] + text.splitlines()[::-1]:
                try:
                    cand = json.loads(line)
                except ValueError:
                    continue
                if isinstance(cand, dict):
                    gen = cand
                    break
            if gen is None:
                problem = "no JSON object in generator output"
        except OSError as e:
            problem = f"cannot read {os.path.basename(json_path)}: {e.strerror}"

        run = {
            "server": meta["server"],
            "mode": meta["mode"],
            "connections": int(meta["connections"]),
            "size": str(meta["size"]),
            "size_bytes": size_bytes(meta["size"]),
            "repeat": int(meta["repeat"]),
            "gen_exit": meta.get("gen_exit"),
            "raw_file": os.path.join("raw", os.path.basename(json_path)),
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

        if problem is None and run["requests"] is None:
            run["problem"] = "generator JSON lacks 'requests'"
        if run["problem"] is None and run["errors_verify"]:
            run["problem"] = f"{run['errors_verify']} verification errors"
        if run["problem"] is None and run["gen_exit"] not in (0, None):
            run["problem"] = f"generator exited with status {run['gen_exit']}"
        runs.append(run)
    runs.sort(key=lambda r: (server_order(r["server"]), r["mode"], r["size_bytes"], r["connections"], r["repeat"]))
    return runs


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
        for field in ["requests_per_s", "bytes_per_s", "server_cpu_us_per_msg", "gen_cpu_s",
                      "p50", "p90", "p99", "p999", "max"]:
            vals = [r[field] for r in rs if r[field] is not None and not r["problem"]]
            g[field] = statistics.median(vals) if vals else None
            g[field + "_min"] = min(vals) if vals else None
            g[field + "_max"] = max(vals) if vals else None
        out.append(g)
    return out


def cross_check(results, runs, tolerance):
    """Compare each server's own byte counters with what the generator saw.

    Returns a list of dicts with a verdict per server that has (or should have) a summary.
    The invariants: the generator cannot have received more than the server sent, the server
    cannot have read more than the generator sent, and the differences (bytes still in flight
    when a connection was closed) must be within `tolerance` of the total.
    """
    checks = []
    for stdout in sorted(glob.glob(os.path.join(results, "raw", "server-*.stdout"))):
        server = os.path.basename(stdout)[len("server-"):-len(".stdout")]
        mine = [r for r in runs if r["server"] == server]
        tcp = [r for r in mine if r["mode"] != "udp"]
        c = {"server": server, "runs": len(mine), "udp_runs_excluded": len(mine) - len(tcp)}
        info = {}
        try:
            with open(stdout.removesuffix(".stdout") + ".info.json", encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError):
            pass  # no info file: the server should have printed a summary
        if info.get("has_summary") is False:
            c["ok"] = True
            c["verdict"] = "not applicable: this server prints no byte counters"
            checks.append(c)
            continue
        status = info.get("exit_status")
        summary = parse_summary_line(stdout)
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


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def skipped_rows(results):
    rows = []
    for line in read_text(os.path.join(results, "raw", "skipped.tsv")).splitlines():
        parts = line.split("\t")
        if len(parts) >= 5 and parts[0] != "server":
            rows.append(parts[:5])
    return rows


def compare_rows(aggs):
    """(mode, conns, size, {server: group}) for points measured on echoloop and a peer."""
    by_point = {}
    for g in aggs:
        by_point.setdefault((g["mode"], g["size_bytes"], g["connections"], g["size"]), {})[g["server"]] = g
    rows = []
    for (mode, _, conns, size), servers in sorted(by_point.items()):
        if "echoloop" in servers and len(servers) > 1:
            rows.append((mode, conns, size, servers))
    return rows


# ---------------------------------------------------------------- summary.md

def write_summary(results, runs, aggs, checks, tolerance):
    L = []
    L.append(f"# Load test summary: {os.path.basename(os.path.abspath(results))}")
    L.append("")
    L.append("Medians over repeats, with the spread (min–max) in brackets. Throughput is what the")
    L.append("generator measured after warmup. Latency percentiles are the median of each run's")
    L.append("percentile. Server CPU µs/msg = server utime+stime over the whole run (warmup and")
    L.append("connection set-up included) / measured requests, so it is an upper bound.")
    L.append("")
    L.append("| server | mode | conns | size | runs | req/s | MB/s | p50 µs | p99 µs | p99.9 µs | srv CPU µs/msg | errors |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for g in aggs:
        runs_cell = f"{g['n']}" + (f" ({g['failed']} failed)" if g["failed"] else "")
        mbps = None if g["bytes_per_s"] is None else g["bytes_per_s"] / 1e6
        L.append(f"| {g['server']} | {g['mode']} | {g['connections']} | {g['size']} | {runs_cell} | "
                 f"{spread(g, 'requests_per_s')} | {si(mbps)} | {us(g['p50'])} | {us(g['p99'])} | "
                 f"{us(g['p999'])} | {us(g['server_cpu_us_per_msg'])} | {g['errors']} |")
    cmp_rows = compare_rows(aggs)
    if cmp_rows:
        L.append("")
        L.append("## echoloop vs peers")
        L.append("")
        L.append("Ratios of medians. Throughput > 1: echoloop is faster. CPU/msg < 1: echoloop spends less")
        L.append("server CPU per echoed message. p99 < 1: echoloop has the lower tail latency.")
        L.append("")
        L.append("| mode | conns | size | peer | echoloop req/s | peer req/s | throughput ratio | CPU/msg ratio | p99 ratio |")
        L.append("|---|---:|---:|---|---:|---:|---:|---:|---:|")
        for mode, conns, size, servers in cmp_rows:
            e = servers["echoloop"]
            for peer in sorted(s for s in servers if s != "echoloop"):
                p = servers[peer]
                tr = ratio(e["requests_per_s"], p["requests_per_s"])
                cr = ratio(e["server_cpu_us_per_msg"], p["server_cpu_us_per_msg"])
                lr = ratio(e["p99"], p["p99"])
                L.append(f"| {mode} | {conns} | {size} | {peer} | {si(e['requests_per_s'])} | "
                         f"{si(p['requests_per_s'])} | {fx(tr)} | {fx(cr)} | {fx(lr)} |")
    L.append("")
    L.append("## Cross-check: server counters vs generator totals")
    L.append("")
    if not checks:
        L.append("Not applicable: no server was started by the script (external --target), so there")
        L.append("is no server summary and no server CPU to compare.")
    for c in checks:
        L.append(f"- **{c['server']}**: {c['verdict']}")
        if "server_out" in c:
            L.append(f"  - server tcp_bytes_out = {c['server_out']}, sum of generator totals.bytes_received = {c['gen_received']}")
            L.append(f"  - server tcp_bytes_in = {c['server_in']}, sum of generator totals.bytes_sent = {c['gen_sent']}")
        if c.get("udp_runs_excluded"):
            L.append(f"  - {c['udp_runs_excluded']} udp run(s) excluded from the TCP byte sums")
    if checks:
        L.append("")
        L.append(f"(Tolerance {tolerance:.2%}: bytes in flight when a generator closes its connections may be")
        L.append("echoed but never read; anything beyond that, or any byte that appears from nowhere, fails.)")
    failed = [r for r in runs if r["problem"]]
    L.append("")
    L.append("## Failed runs")
    L.append("")
    if failed:
        for r in failed:
            L.append(f"- {r['server']} {r['mode']} c={r['connections']} s={r['size']} repeat {r['repeat']}: "
                     f"{r['problem']} ({r['raw_file']})")
    else:
        L.append("None.")
    skipped = skipped_rows(results)
    if skipped:
        L.append("")
        L.append("## Skipped matrix points")
        L.append("")
        for server, mode, conns, size, reason in skipped:
            L.append(f"- {server} {mode} c={conns} s={size}: {reason}")
    L.append("")
    L.append("Raw data: `raw/`; per-run rows: `runs.csv`; charts: `report.html`; machine and commands: `machine.txt`.")
    L.append("")
    text = "\n".join(L)
    with open(os.path.join(results, "summary.md"), "w", encoding="utf-8") as f:
        f.write(text)
    return text


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


def throughput_charts(aggs):
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
                    series.append({"label": f"{server} {size}", "color": PALETTE[si_ % len(PALETTE)],
                                   "dash": DASHES[di % len(DASHES)], "points": pts})
            out.append(svg_chart(f"{mode}: {label} vs connections", series, "connections (log)", f"{label} (log)"))
    return out


def latency_charts(aggs):
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
                    series.append({"label": f"{server} {name}", "color": PALETTE[pi],
                                   "dash": DASHES[di % len(DASHES)], "points": pts})
            if any(p[1] for s in series for p in s["points"]):
                out.append(svg_chart(f"{mode} {size}: latency percentiles", series,
                                     "connections (log)", "latency µs (log)"))
    return out


def sc(v, scale):
    return None if v is None else v * scale


def md_table_to_html(md):
    """Render the headings, pipe tables, bullets and paragraphs of our own summary.md."""
    e = html.escape
    out, para = [], []
    in_table, list_depth = False, 0

    def flush_para():
        if para:
            out.append("<p>" + e(" ".join(para)).replace("`", "") + "</p>")
            para.clear()

    def close_lists(depth):
        nonlocal list_depth
        while list_depth > depth:
            out.append("</ul>")
            list_depth -= 1

    for line in md.splitlines():
        if line.startswith("|"):
            flush_para()
            close_lists(0)
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= set("-:") for c in cells):
                continue
            tag = "td" if in_table else "th"
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<{tag}>{e(c)}</{tag}>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        stripped = line.lstrip()
        if stripped.startswith("- "):
            flush_para()
            depth = 1 + (len(line) - len(stripped)) // 2
            while list_depth < depth:
                out.append("<ul>")
                list_depth += 1
            close_lists(depth)
            txt = e(stripped[2:]).replace("**", "").replace("`", "")
            cls = ' class="bad"' if "FAILED" in txt else (' class="good"' if "AGREE" in txt else "")
            out.append(f"<li{cls}>{txt}</li>")
            continue
        close_lists(0)
        if line.startswith("#"):
            flush_para()
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{e(line[level:].strip())}</h{level}>")
        elif line.strip():
            para.append(line.strip())
        else:
            flush_para()
    flush_para()
    close_lists(0)
    if in_table:
        out.append("</table>")
    return "\n".join(out)


def knee_section(results):
    """The knee curves (raw/knee-*.json from `loadtest.sh --knee`): p50/p99 against the offered
    rate, one colour per server, the target as a dashed line. Empty when no knee was run."""
    knees = []
    for path in sorted(glob.glob(os.path.join(results, "raw", "knee-*.json"))):
        try:
            with open(path, encoding="utf-8") as f:
                knees.append((os.path.basename(path)[5:-5], json.load(f)))
        except (OSError, ValueError) as e:
            print(f"report.py: skipping {path}: {e}", file=sys.stderr)
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


def write_html(results, aggs, summary_md):
    machine = read_text(os.path.join(results, "machine.txt"))
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>echoloop load test {html.escape(os.path.basename(os.path.abspath(results)))}</title>",
             "<style>body{font-family:sans-serif;margin:1.5em;max-width:1200px;color:#222}"
             "table{border-collapse:collapse;font-size:12px;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
             "td:nth-child(-n+2),th{text-align:left}"
             ".charts{display:flex;flex-wrap:wrap;gap:12px}.chart.empty{padding:1em;border:1px dashed #ccc}"
             "li.bad{color:#b00;font-weight:bold}li.good{color:#070}"
             "pre{background:#f6f6f6;padding:.6em;font-size:11px;white-space:pre-wrap}</style>",
             "</head><body>"]
    parts.append(md_table_to_html(summary_md))
    parts.append("<h2>Throughput vs connections</h2>")
    parts.append("<p>Median over repeats; vertical bars show min–max. Colour = message size, dash = server.</p>")
    parts.append('<div class="charts">' + "\n".join(throughput_charts(aggs)) + "</div>")
    parts.append("<h2>Latency percentiles</h2>")
    parts.append("<p>Median of each run's percentile; colour = percentile, dash = server. "
                 "Stream mode may report no per-message latency.</p>")
    parts.append('<div class="charts">' + "\n".join(latency_charts(aggs)) + "</div>")
    parts.append(knee_section(results))
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
    if len(args) != 1:
        die("usage: report.py RESULTS_DIR [--tolerance FRACTION]")
    results = args[0]
    if not os.path.isdir(os.path.join(results, "raw")):
        die(f"{results}/raw is not a directory (is this a loadtest results directory?)")
    runs = load_runs(results)
    if not runs:
        die(f"no runs found in {results}/raw (no *.meta.json files)")
    aggs = aggregate(runs)
    checks = cross_check(results, runs, tolerance)
    write_csv(results, runs)
    md = write_summary(results, runs, aggs, checks, tolerance)
    write_html(results, aggs, md)

    failed = [r for r in runs if r["problem"]]
    bad_checks = [c for c in checks if not c["ok"]]
    print(f"report.py: {len(runs)} runs, {len(failed)} failed; wrote runs.csv, summary.md, report.html in {results}")
    for c in checks:
        print(f"report.py: cross-check {c['server']}: {c['verdict']}")
    if not checks:
        print("report.py: cross-check not applicable (no server summary: external target)")
    return 1 if failed or bad_checks else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
