"""Prints scripts/bench-mcp.sh's table from its RESULT files: medians of the
latency runs, what the gateway adds and the ratio to the server alone (and,
the runs calling both in turns, the median of the per-pair differences),
calls/s under load, and the gateway's RSS across the load run."""

import json
import statistics
import sys
from pathlib import Path

res = Path(sys.argv[1])
calls, reps = int(sys.argv[2]), int(sys.argv[3])


def load(name: str) -> dict:
    return json.loads((res / f"{name}.json").read_text())


def median(kind: str, key: str) -> float:
    return statistics.median(load(f"{kind}-{rep}")[key] for rep in range(1, reps + 1))


rows = [("", "server alone", "through Bridle", "added", "ratio")]
verdicts = []
for transport in ("stdio", "http"):
    for key in ("p50_us", "p90_us", "p99_us"):
        direct, gateway = median(f"{transport}-direct", key), median(f"{transport}-gateway", key)
        rows.append((f"{transport} tools/call {key[:3]} (µs)", f"{direct:.0f}", f"{gateway:.0f}",
                     f"{gateway - direct:+.0f}", f"{gateway / direct:.2f}x"))
        if key == "p50_us":
            verdicts.append((f"{transport} p50 added ≤ 200 µs", gateway - direct <= 200))
            pairs = median(f"{transport}-gateway", "paired_added_p50_us")
            rows.append((f"  median of per-pair differences (µs)", "", "", f"{pairs:+.0f}", ""))
    direct, gateway = median(f"{transport}-direct", "calls_per_s"), median(f"{transport}-gateway", "calls_per_s")
    rows.append((f"{transport} calls/s (time in calls)", f"{direct:.0f}", f"{gateway:.0f}", "", f"{gateway / direct:.2f}x"))

stdio, http, http_direct = load("stdio-load"), load("http-load"), load("http-direct-load")
rows.append((f"stdio calls/s, {stdio['window']} in flight", "", f"{stdio['calls_per_s']:.0f}", "", ""))
rows.append((f"http calls/s, {http['window']} connections", f"{http_direct['calls_per_s']:.0f}",
             f"{http['calls_per_s']:.0f}", "", f"{http['calls_per_s'] / http_direct['calls_per_s']:.2f}x"))
verdicts.append(("stdio ≥ 2000 calls/s through one gateway", stdio["calls_per_s"] >= 2000))
if http_direct["calls_per_s"] >= 2000:
    verdicts.append(("http ≥ 2000 calls/s through one gateway", http["calls_per_s"] >= 2000))
else:
    # A gateway cannot be faster than its server; then only the ratio says something.
    print(f"note: the HTTP server alone managed {http_direct['calls_per_s']:.0f} calls/s here, so the HTTP"
          f" throughput target cannot be checked on this machine (through Bridle: "
          f"{http['calls_per_s'] / http_direct['calls_per_s']:.0%} of it)")
for name, run in (("stdio", stdio), ("http", http)):
    rss = run["rss_kib"]
    if len(rss) > 2:
        # After the first tenth (buffers and caches fill), memory must not grow with calls.
        settled, last = rss[1], rss[-1]
        rows.append((f"{name} gateway RSS over {run['calls']} calls (MiB)", f"{rss[0] / 1024:.1f} at start",
                     f"{last / 1024:.1f} at end", f"{(last - settled) / 1024:+.1f} after 10%", ""))
        verdicts.append((f"{name} memory flat over {run['calls']} calls", last - settled <= max(2048, settled // 20)))

widths = [max(len(row[i]) for row in rows) for i in range(5)]
print()
for row in rows:
    print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
print()
for what, ok in verdicts:
    print(f"{'ok  ' if ok else 'MISS'} {what}")
