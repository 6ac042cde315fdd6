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


def summed(rs):
    """The outcomes of several runs added up."""
    total = {}
    for r in rs:
        for k, v in r["outcomes"].items():
            total[k] = total.get(k, 0) + v
    return total


def pending_share(r):
    total = sum(r["outcomes"].values()) or 1
    return 100.0 * r["outcomes"].get("400 authorization_pending", 0) / total


commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print(f"Machine: {os.cpu_count()} cores, {cpu()}, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**30} GiB; "
      f"commit {commit}. Load generator, database and servers share the machine.\n")
# Alternated rounds: throughput over all rounds, the median of the rounds' p50 and p99, and
# each round's ratio to the peer's round that followed it.
rounds = {t: every("poll-throughput", t) for t in ["postgres", "sqlite", "peer"]}
rate = lambda rs: sum(r["count"] for r in rs) / sum(r["seconds"] for r in rs)
if any(rounds.values()):
    print("| target | poll throughput (req/s) | p50 ms | p99 ms | authorization_pending | ratio to peer | rounds' ratios |")
    print("|---|---:|---:|---:|---:|---:|---|")
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
# Polls too fast (nearly every answer slow_down), against the same target's well-paced
# throughput above and against the peer polled the same way.
fast = {t: every("poll-too-fast", t) for t in ["postgres", "sqlite", "peer"]}
if any(fast.values()):
    print("| target | too-fast polls (req/s) | p50 ms | p99 ms | slow_down | ratio to its well-paced throughput | ratio to peer | rounds' ratios to peer |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for t, rs in fast.items():
        if not rs:
            continue
        total = summed(rs)
        slow = 100.0 * total.get("400 slow_down", 0) / max(1, sum(total.values()))
        paced_ratio = f"{rate(rs) / rate(rounds[t]):.2f}x" if rounds[t] else "-"
        peer = fast["peer"]
        ratio = f"{rate(rs) / rate(peer):.2f}x" if peer else "-"
        each = ratios(rs, peer, "per_second") if peer and t != "peer" else ""
        print(f"| {t} | {rate(rs):.0f} | {median([r['p50_ms'] for r in rs]):.2f} | {median([r['p99_ms'] for r in rs]):.2f} "
              f"| {slow:.1f}% | {paced_ratio} | {ratio} | {each} |")
    print()
paced = [(t, every("poll-paced-1k", t), every("poll-paced-1m", t)) for t in ["postgres", "sqlite"]]
if any(a and b for _, a, b in paced):
    print("| target | poll p50 at 1,000 stored (ms) | poll p50 at 1,000,000 stored (ms) | ratio | rounds' ratios | authorization_pending |")
    print("|---|---:|---:|---:|---|---:|")
    for t, a, b in paced:
        # alternated rounds: the median of each size's round p50s, and each round's own ratio
        if a and b:
            pa, pb = median([r["p50_ms"] for r in a]), median([r["p50_ms"] for r in b])
            share = min(pending_share(r) for r in a + b)
            print(f"| {t} | {pa:.2f} | {pb:.2f} | {pb / pa:.2f}x | {ratios(b, a, 'p50_ms')} | {share:.1f}% |")
    print()
flows = {t: every("flows", t) for t in ["postgres", "sqlite", "peer"]}
if any(flows.values()):
    # Alternated rounds, as the throughput: flows over all rounds, the median of the rounds'
    # p50 and p99, and each round's ratio to the peer's round that followed it.
    print("| target | full flows/s | flow p50 ms | flow p99 ms | completed share | ratio to peer | rounds' ratios |")
    print("|---|---:|---:|---:|---:|---:|---|")
    peer = flows["peer"]
    for t, rs in flows.items():
        if not rs:
            continue
        total = summed(rs)
        done = 100.0 * total.get("completed", 0) / max(1, sum(total.values()))
        ratio = f"{rate(rs) / rate(peer):.2f}x" if peer else "-"
        each = ratios(rs, peer, "per_second") if peer and t != "peer" else ""
        print(f"| {t} | {rate(rs):.0f} | {median([r['p50_ms'] for r in rs]):.1f} | {median([r['p99_ms'] for r in rs]):.1f} "
              f"| {done:.1f}% | {ratio} | {each} |")
    print()
if any(get("memory", t) for t in ["postgres", "sqlite", "peer"]):
    print("| process | peak resident memory (MiB) |")
    print("|---|---:|")
    for t in ["postgres", "sqlite", "peer"]:
        r = get("memory", t)
        if r:
            print(f"| {'ciba-api on ' + t if t != 'peer' else 'node-oidc-provider'} | {r['peak_rss_kib'] / 1024:.1f} |")
    print()


def by_status(outcomes):
    """Counts of 401, 429 and anything else among outcomes keyed "status error"."""
    counts = {"401": 0, "429": 0, "other": 0}
    for k, v in outcomes.items():
        status = k.split(" ", 1)[0]
        counts[status if status in counts else "other"] += v
    return counts


def others(outcomes, expected="400 authorization_pending"):
    """Every answer but the expected one, "answer: count, ...", or "none"."""
    rest = [f"{k}: {v}" for k, v in sorted(outcomes.items()) if k != expected]
    return ", ".join(rest) or "none"


# Polls without and with a flood of failing client authentications: alternated rounds on one
# API process; the median of each kind's round p50/p99, and each round's own ratio.
floods = [(t, prefix, limit) for prefix, limit in [("flood", "off"), ("flood-limited", "default (30/60), flood from 127.0.0.2")]
          for t in ["postgres", "sqlite"]
          if every(f"{prefix}-polls-quiet", t) and every(f"{prefix}-polls-flooded", t)]
if floods:
    conns = next((r["connections"] for r in rows if r["phase"].endswith("-load") and "connections" in r), 64)
    print(f"Paced polls of the bench client alone and during a flood of {conns} connections sending failing "
          "client authentications to the token endpoint as fast as they are answered (half wrong secrets for the "
          "bench client, half made-up client ids; a new secret each time), in alternated rounds on one API process. "
          "The flood's own process runs on the same cores (its CPU below). "
          "Targets: polls' p99 under the flood below 50 ms; the flood costs the polls at most 2x their p50.\n")
    print("| target | address limit | poll p50 alone (ms) | poll p50 flooded (ms) | ratio (target <= 2x) | rounds' ratios "
          "| poll p99 alone (ms) | poll p99 flooded (ms) (target < 50) | polls' other answers (alone; flooded) |")
    print("|---|---|---:|---:|---:|---|---:|---:|---|")
    for t, prefix, limit in floods:
        quiet, flooded = every(f"{prefix}-polls-quiet", t), every(f"{prefix}-polls-flooded", t)
        p50q, p50f = median([r["p50_ms"] for r in quiet]), median([r["p50_ms"] for r in flooded])
        p99q, p99f = median([r["p99_ms"] for r in quiet]), median([r["p99_ms"] for r in flooded])
        ratio = p50f / p50q if p50q else float("inf")
        print(f"| {t} | {limit} | {p50q:.2f} | {p50f:.2f} | {ratio:.2f}x ({'met' if ratio <= 2 else 'missed'}) "
              f"| {ratios(flooded, quiet, 'p50_ms')} | {p99q:.2f} | {p99f:.2f} ({'met' if p99f < 50 else 'missed'}) "
              f"| {others(summed(quiet))}; {others(summed(flooded))} |")
    print()
    print(f"How the flood was answered, by the half that sent it; the CPU the API process, the flood's own "
          f"process and the whole host used meanwhile (in cores, of the machine's {os.cpu_count()}; "
          f"stolen: taken by the hypervisor), all rounds together.\n")
    print("| target | address limit | flood half | requests/s | answered 401 | answered 429 | other answers "
          "| p50 ms | p99 ms | API CPU (cores) | flood CPU (cores) | host busy (cores) | host stolen (cores) |")
    print("|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for t, prefix, limit in floods:
        rs = every(f"{prefix}-load", t)
        if not rs:
            continue
        secs = sum(r["seconds"] for r in rs)
        cores = lambda key: f"{sum(r.get(key, 0) * r['seconds'] for r in rs) / secs:.2f}" if all(key in r for r in rs) else "-"
        halves = [("wrong secret, real client id", [r["kinds"]["wrong_secret"] for r in rs if "kinds" in r]),
                  ("made-up client ids", [r["kinds"]["made_up_id"] for r in rs if "kinds" in r]),
                  ("all", rs)]
        for half, parts in halves:
            if not parts:
                continue
            total = summed(parts)
            c = by_status(total)
            rest = ", ".join(f"{k}: {v}" for k, v in sorted(total.items()) if k.split(" ", 1)[0] not in ("401", "429"))
            keys = ["server_cpu_cores", "flood_cpu_cores", "host_busy_cores", "host_steal_cores"]
            cpu = " | ".join(cores(k) if half == "all" else "" for k in keys)
            print(f"| {t} | {limit} | {half} | {sum(p['count'] for p in parts) / secs:.0f} | {c['401']} | {c['429']} "
                  f"| {rest or 'none'} | {median([p['p50_ms'] for p in parts]):.2f} | {median([p['p99_ms'] for p in parts]):.2f} | {cpu} |")
    print()

oversized = [(t, get("oversized", t)) for t in ["postgres", "sqlite"] if get("oversized", t)]
if oversized:
    print("The flood phase's API process before and after requests with oversized client ids, alternately "
          "in client_secret_basic (a head over the server's limit: expected 431) and in a client_secret_post "
          "form body under the body limit (expected 401). Target: resident memory grows by less than 16 MiB.\n")
    print("| target | requests | client id bytes (Basic; form) | answers | req/s | RSS before (MiB) | RSS after (MiB) "
          "| growth (MiB) (target < 16) | peak over the process's life (MiB) |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|")
    for t, r in oversized:
        growth = (r["rss_after_kib"] - r["rss_before_kib"]) / 1024
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(r["outcomes"].items()))
        print(f"| {t} | {r['count']} | {r['basic_id_bytes']}; {r['form_id_bytes']} | {answers} | {r['per_second']:.0f} "
              f"| {r['rss_before_kib'] / 1024:.1f} | {r['rss_after_kib'] / 1024:.1f} "
              f"| {growth:.1f} ({'met' if growth < 16 else 'missed'}) | {r['peak_rss_kib'] / 1024:.1f} |")
