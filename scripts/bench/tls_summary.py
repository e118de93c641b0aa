"""Prints the final table of scripts/bench-tls.sh from the RESULT files it
collected: usage: tls_summary.py RESULTS_DIR

Bridle's numbers are put next to direct and mitmproxy measured in the same
run, with the ratio (or the difference) and the issue's target.
"""
import os
import re
import sys

from summary import fmt, get, load, print_table, signed, verdict


def ms(us):
    return None if us is None else round(us / 1000.0, 3)


def median(values):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else round((v[mid - 1] + v[mid]) / 2, 2)


def rounds(d, name):
    """The results NAME.1.json, NAME.2.json, ... in round order."""
    found = []
    for f in os.listdir(d):
        m = re.fullmatch(re.escape(name) + r"\.(\d+)\.json", f)
        if m:
            found.append((int(m.group(1)), load(d, f[:-5])))
    return [r for _, r in sorted(found) if r is not None]


def keepalive(d, name):
    """Interleaved keep-alive rounds merged: median requests/s and median
    of each round's latency percentiles; CPU per request over them all."""
    rs = rounds(d, name)
    if not rs:
        return None
    done = sum(get(r, "done") or 0 for r in rs)
    cpu = [get(r, "cpu", "parent_cpu_s") for r in rs]
    out = {"rounds_rps": [get(r, "rps") for r in rs], "rps": median(get(r, "rps") for r in rs), "done": done,
           "latency_us": {q: median(get(r, "latency_us", q) for r in rs) for q in ("p50", "p99")},
           "rounds_p50": [get(r, "latency_us", "p50") for r in rs],
           "issuer": ",".join(sorted({get(r, "issuer") or "?" for r in rs}))}
    if done and None not in cpu:
        out["cpu"] = {"parent_cpu_us_per_op": round(sum(cpu) * 1e6 / done, 1)}
    return out


def pct(values, q):
    v = sorted(values)
    return None if not v else v[min(len(v) - 1, max(0, int(round(q * (len(v) - 1)))))]


def newhost(d, name):
    """Interleaved new-host rounds pooled: percentiles over every sample."""
    rs = rounds(d, name)
    if not rs:
        return None
    out = {"issuer": ",".join(sorted({get(r, "issuer") or "?" for r in rs}))}
    for kind in ("new_host", "known_host"):
        total = [x for r in rs for x in get(r, kind, "samples_us") or []]
        hs = [x for r in rs for x in get(r, kind, "handshake_samples_us") or []]
        cpu = [get(r, kind, "cpu", "parent_cpu_s") for r in rs]
        out[kind] = {"total_us": {"n": len(total), "p50": pct(total, 0.5), "p99": pct(total, 0.99)},
                     "handshake_us": {"p50": pct(hs, 0.5)}}
        if total and None not in cpu:
            out[kind]["cpu"] = {"parent_cpu_us_per_op": round(sum(cpu) * 1e6 / len(total), 1)}
    return out


def download(d, name):
    rs = rounds(d, name)
    if not rs:
        return None
    runs = [run for r in rs for run in get(r, "runs") or []]
    moved = sum(run["bytes"] for run in runs)
    cpu = [get(r, "cpu", "parent_cpu_s") for r in rs]
    out = {"bytes": get(rs[0], "bytes"), "runs": runs, "mb_s": median(run["mb_s"] for run in runs),
           "complete": all(get(r, "complete") for r in rs), "issuer": ",".join(sorted({get(r, "issuer") or "?" for r in rs}))}
    if moved and None not in cpu:
        out["cpu"] = {"parent_cpu_s_per_gib": round(sum(cpu) * (1 << 30) / moved, 3)}
    return out


def main():
    d = sys.argv[1]
    rows = []  # (metric, direct, bridle, mitmproxy, diff/ratio, target, verdict)

    kd, kb, km = keepalive(d, "ka-direct"), keepalive(d, "ka-bridle"), keepalive(d, "ka-mitm")
    a, b, m = get(kd, "rps"), get(kb, "rps"), get(km, "rps")
    r = None if not a or b is None else round(b / a, 2)
    rows.append(("keep-alive GETs/s, 1 conn [1]", fmt(a), fmt(b), fmt(m), f"x{r} of direct" if r is not None else "n/a",
                 ">= x0.5", verdict(None if r is None else r >= 0.5)))
    r = None if not m or b is None else round(b / m, 1)
    rows.append(("  bridle / mitmproxy", "", "", "", f"x{r}" if r is not None else "n/a", ">= x20",
                 verdict(None if r is None else r >= 20)))
    r = None if not m or a is None else round(a / m, 1)
    rows.append(("  direct / mitmproxy (ceiling of the above) [2]", "", "", "", f"x{r}" if r is not None else "n/a", "", ""))
    rows.append(("  every round (GETs/s)", *(", ".join(fmt(round(x)) for x in get(t, "rounds_rps") or []) or "n/a"
                                            for t in (kd, kb, km)), "", "", ""))
    # Added latency: per round, bridle's p50 minus direct's p50 of the same
    # round (they ran back to back), then the median of those.
    paired = [None if x is None or y is None else round(y - x, 1)
              for x, y in zip(get(kd, "rounds_p50") or [], get(kb, "rounds_p50") or [])]
    added_p50 = median(paired)
    for q in ("p50", "p99"):
        a, b, m = (get(t, "latency_us", q) for t in (kd, kb, km))
        if q == "p50":
            ok = None if added_p50 is None else added_p50 <= 150
            rows.append(("keep-alive GET latency p50 (us) [5]", fmt(a), fmt(b), fmt(m), signed(added_p50), "<= +150 us",
                         verdict(ok)))
            rows.append(("  added p50 in each round (us)", "", ", ".join(signed(x) for x in paired), "", "", "", ""))
        else:
            added = None if a is None or b is None else round(b - a, 1)
            rows.append(("keep-alive GET latency p99 (us)", fmt(a), fmt(b), fmt(m), signed(added), "report", ""))
    kf = keepalive(d, "ka-floor")
    if kf is not None:
        a, f, b = get(kd, "rps"), get(kf, "rps"), get(kb, "rps")
        rows.append(("  floor [6]: minimal TCP relay, GETs/s", fmt(a), fmt(f), "",
                     "n/a" if not a or f is None else f"x{round(f / a, 2)} of direct", "report", ""))
        rows.append(("  bridle against the floor, GETs/s", "", "", "",
                     "n/a" if not f or b is None else f"x{round(b / f, 2)}", "", ""))
        floor_added = median(None if x is None or y is None else round(y - x, 1)
                             for x, y in zip(get(kd, "rounds_p50") or [], get(kf, "rounds_p50") or []))
        rows.append(("  floor [6]: added p50 (us)", "", fmt(get(kf, "latency_us", "p50")), "", signed(floor_added),
                     "report", ""))
        rows.append(("  bridle beyond the floor, p50 (us)", "", "", "",
                     "n/a" if added_p50 is None or floor_added is None else signed(round(added_p50 - floor_added, 1)),
                     "", ""))
    cb, cm = get(kb, "cpu", "parent_cpu_us_per_op"), get(km, "cpu", "parent_cpu_us_per_op")
    if cb is not None or cm is not None:
        rows.append(("  proxy CPU per request (us)", "", fmt(cb), fmt(cm), "", "", ""))
    audited, done = get(load(d, "ka-audit"), "requests"), get(kb, "done")
    rows.append(("  requests decided + audited by bridle", "", fmt(audited), "", f"of {fmt(done)} sent (+warmup)", "", ""))

    nd, nb, nm = newhost(d, "nh-direct"), newhost(d, "nh-bridle"), newhost(d, "nh-mitm")
    for what, label in (("new_host", "first request, new host [3]"), ("known_host", "first request, known host [4]")):
        for q in ("p50", "p99"):
            a, b, m = (ms(get(t, what, "total_us", q)) for t in (nd, nb, nm))
            added = None if a is None or b is None else round(b - a, 3)
            target, ok = "report", None
            if what == "new_host" and q == "p50":
                target, ok = "<= +3 ms", None if added is None else added <= 3
            rows.append((f"{label} {q} (ms)", fmt(a), fmt(b), fmt(m), signed(added), target, verdict(ok)))
        a, b, m = (ms(get(t, what, "handshake_us", "p50")) for t in (nd, nb, nm))
        rows.append(("  of which connect + TLS handshake p50 (ms)", fmt(a), fmt(b), fmt(m),
                     signed(None if a is None or b is None else round(b - a, 3)), "", ""))
        cb, cm = get(nb, what, "cpu", "parent_cpu_us_per_op"), get(nm, what, "cpu", "parent_cpu_us_per_op")
        if cb is not None or cm is not None:
            rows.append(("  proxy CPU per connection (us)", "", fmt(cb), fmt(cm), "", "", ""))
    rows.append(("  connections measured (new / known)",
                 *(f"{fmt(get(t, 'new_host', 'total_us', 'n'))} / {fmt(get(t, 'known_host', 'total_us', 'n'))}"
                   for t in (nd, nb, nm)), "", "", ""))

    dd, db = download(d, "dl-direct"), download(d, "dl-bridle")
    size = get(dd, "bytes") or get(db, "bytes")
    a, b = get(dd, "mb_s"), get(db, "mb_s")
    r = None if not a or b is None else round(b / a, 3)
    label = f"download {size / (1 << 20):.0f} MiB (MB/s)" if size else "download (MB/s)"
    if get(dd, "complete") is False or get(db, "complete") is False:
        label += " [time-limited]"
    rows.append((label, fmt(a), fmt(b), "", f"x{r}" if r is not None else "n/a", ">= x0.7",
                 verdict(None if r is None else r >= 0.7)))
    rows.append(("  every run (MB/s)", *(", ".join(fmt(round(x["mb_s"])) for x in get(t, "runs") or []) or "n/a"
                                         for t in (dd, db)), "", "", "", ""))
    df = download(d, "dl-floor")
    if df is not None:
        f = get(df, "mb_s")
        rows.append(("  floor [6]: minimal TCP relay (MB/s)", fmt(a), fmt(f), "",
                     "n/a" if not a or f is None else f"x{round(f / a, 3)} of direct", "report", ""))
        rows.append(("  bridle against the floor", "", "", "", "n/a" if not f or b is None else f"x{round(b / f, 3)}",
                     "", ""))
    cpu = get(db, "cpu", "parent_cpu_s_per_gib")
    if cpu is not None:
        rows.append(("  bridle CPU per GiB (s)", "", fmt(cpu), "", "", "", ""))

    hold, rss = load(d, "hold"), load(d, "rss")
    if hold or rss:
        n = get(hold, "open")
        kib = lambda k: None if get(rss, k) is None else round(rss[k] / 1024, 1)  # noqa: E731
        rows.append((f"bridle RSS, {fmt(n)} TLS conns held (MiB)", "", fmt(kib("held_kib")), "",
                     f"idle {fmt(kib('idle_kib'))}", "report", ""))
        if get(rss, "held_kib") is not None and get(rss, "idle_kib") is not None and n:
            rows.append(("  RSS per held connection (KiB)", "", fmt(round((rss["held_kib"] - rss["idle_kib"]) / n, 1)),
                         "", "", "", ""))
        rows.append(("  RSS peak (VmHWM) / after close (MiB)", "", f"{fmt(kib('hwm_kib'))} / {fmt(kib('closed_kib'))}",
                     "", "", "", ""))
        rows.append(("  time to open all / still answering after", "",
                     f"{fmt(get(hold, 'open_s'))} s / {fmt(get(hold, 'alive_after'))}", "", "", "", ""))

    print_table(("metric", "direct", "bridle", "mitmproxy", "diff/ratio", "target", ""), rows)
    print("[1] one keep-alive connection, sequential GETs of a 64-byte body (HTTP/1.1); rounds interleave direct,")
    print("    bridle and mitmproxy; medians over the rounds (latency: median of each round's percentile).")
    print("    Client and upstream are python and share the 2 cores with the proxy.")
    print("[2] the most bridle/mitmproxy can show with this client and upstream: bridle at direct's rate.")
    print("[3] new TCP connection + TLS handshake(s) + one GET + close, each to a new SNI under *.bench.test:")
    print("    bridle mints a leaf for each, does its own verified upstream handshake, and decides twice")
    print("    (the connect, then the request).")
    print("[4] the same to one name seen before, alternating with [3]: no leaf to mint (bridle's upstream TLS")
    print("    may resume). [3] and [4]: percentiles over the samples of every round.")
    print("[5] diff: the median over rounds of (bridle p50 - direct p50) of the same round.")
    print("[6] the same client through scripts/bench/relay.c (one thread, epoll, splice through 1 MiB pipes),")
    print("    which passes its TLS through to the upstream untouched (no interception, policy or audit), in")
    print("    the same rounds, in the 'bridle' column: what any proxy in the path costs on this machine.")
    issuers = [get(t, "issuer") for t in (kd, kb, km)]
    print(f"peer certificate issuer seen by the client: direct={issuers[0]}, bridle={issuers[1]}, mitmproxy={issuers[2]}")
    bad = [name for name, t, want in (("bridle", kb, "Bridle"), ("bridle new hosts", nb, "Bridle"),
                                      ("bridle download", db, "Bridle"), ("bridle hold", hold, "Bridle"))
           if t is not None and get(t, "issuer") != want]
    if bad:
        print("WARNING: not intercepted by Bridle (issuer is not Bridle's CA): " + ", ".join(bad))
    notes = load(d, "notes")
    if notes and notes.get("mitmproxy"):
        print(f"mitmproxy {notes['mitmproxy']} (mitmdump, regular mode, explicit CONNECT proxy)")
    for note in (notes or {}).get("lines", []):
        print("note: " + note)


if __name__ == "__main__":
    main()
