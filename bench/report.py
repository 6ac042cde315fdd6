"""Turn bench/out/results.jsonl into the Markdown tables of bench/RESULTS.md."""
import json
import os
import platform
import subprocess
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
get = lambda phase, target: next((r for r in rows if r["phase"] == phase and r["target"] == target), None)
every = lambda phase, target: [r for r in rows if r["phase"] == phase and r["target"] == target]


def ratios(tops, bottoms, key):
    """Each round's ratio, "a, b, ...": tops[i][key] / bottoms[i][key]."""
    return ", ".join(f"{t[key] / b[key]:.2f}" for t, b in zip(tops, bottoms))


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return (xs[n // 2] + xs[(n - 1) // 2]) / 2


def cpu():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def pending_share(r):
    total = sum(r["outcomes"].values()) or 1
    return 100.0 * r["outcomes"].get("400 authorization_pending", 0) / total


commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print(f"Machine: {os.cpu_count()} cores, {cpu()}, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**30} GiB; "
      f"commit {commit}. Load generator, database and servers share the machine.\n")
print("| target | poll throughput (req/s) | p50 ms | p99 ms | authorization_pending | ratio to peer | rounds' ratios |")
print("|---|---:|---:|---:|---:|---:|---|")
# Alternated rounds: throughput over all rounds, the median of the rounds' p50 and p99, and
# each round's ratio to the peer's round that followed it.
rounds = {t: every("poll-throughput", t) for t in ["postgres", "sqlite", "peer"]}
rate = lambda rs: sum(r["count"] for r in rs) / sum(r["seconds"] for r in rs)
for t, rs in rounds.items():
    if not rs:
        continue
    peer = rounds["peer"]
    ratio = f"{rate(rs) / rate(peer):.2f}x" if peer else "-"
    each = ratios(rs, peer, "per_second") if peer and t != "peer" else ""
    share = min(pending_share(r) for r in rs)
    print(f"| {t} | {rate(rs):.0f} | {median([r['p50_ms'] for r in rs]):.2f} | {median([r['p99_ms'] for r in rs]):.2f} "
          f"| {share:.1f}% | {ratio} | {each} |")
print()
print("| target | poll p50 at 1,000 stored (ms) | poll p50 at 1,000,000 stored (ms) | ratio | rounds' ratios | authorization_pending |")
print("|---|---:|---:|---:|---|---:|")
for t in ["postgres", "sqlite"]:
    # alternated rounds: the median of each size's round p50s, and each round's own ratio
    a, b = every("poll-paced-1k", t), every("poll-paced-1m", t)
    if a and b:
        pa, pb = median([r["p50_ms"] for r in a]), median([r["p50_ms"] for r in b])
        share = min(pending_share(r) for r in a + b)
        print(f"| {t} | {pa:.2f} | {pb:.2f} | {pb / pa:.2f}x | {ratios(b, a, 'p50_ms')} | {share:.1f}% |")
print()
print("| target | full flows/s | flow p50 ms | flow p99 ms | completed share | ratio to peer |")
print("|---|---:|---:|---:|---:|---:|")
peer = get("flows", "peer")
for t in ["postgres", "sqlite", "peer"]:
    r = get("flows", t)
    if r:
        done = 100.0 * r["outcomes"].get("completed", 0) / max(1, sum(r["outcomes"].values()))
        ratio = f"{r['per_second'] / peer['per_second']:.2f}x" if peer else "-"
        print(f"| {t} | {r['per_second']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {done:.1f}% | {ratio} |")
print()
print("| process | peak resident memory (MiB) |")
print("|---|---:|")
for t in ["postgres", "sqlite", "peer"]:
    r = get("memory", t)
    if r:
        print(f"| {'ciba-api on ' + t if t != 'peer' else 'node-oidc-provider'} | {r['peak_rss_kib'] / 1024:.1f} |")
