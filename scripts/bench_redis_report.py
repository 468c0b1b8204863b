"""Summarises scripts/bench-redis.sh runs (target/bench/redis/runs.jsonl)
into a Markdown table: medians over rounds."""
import json
import statistics
import sys

runs_file, out_file, title = sys.argv[1], sys.argv[2], sys.argv[3]
runs = [json.loads(line) for line in open(runs_file) if line.strip()]


def med(target, scenario, key):
    values = [r["metrics"].get(key) for r in runs
              if r["target"] == target and r["scenario"] == scenario and r.get("ok")]
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    return "n/a" if v is None else f"{v:,.{digits}f}"


single = med("single", "fanout-1k", "deliveries_per_s")
lines = [f"## herald on Redis: two nodes vs one", "", title, "",
         "| fanout-1k (1000 subscribers, 4 publishers) | deliveries/s | share of single node | p50 / p99 latency (µs) | subscriber node CPU µs/delivery | publishing node CPU µs/event | Redis CPU µs/event | lost / dup / out of order |",
         "|---|---:|---:|---:|---:|---:|---:|---:|"]
for target, label in [("single", "single node"), ("A<-B", "subscribers on A, publishers on B"),
                      ("B<-A", "subscribers on B, publishers on A")]:
    d = med(target, "fanout-1k", "deliveries_per_s")
    share = "" if target == "single" or d is None or not single else f"{100 * d / single:.0f} %"
    lat = f"{fmt(med(target, 'fanout-1k', 'lat_p50_us'))} / {fmt(med(target, 'fanout-1k', 'lat_p99_us'))}"
    faults = "/".join(fmt(med(target, "fanout-1k", k)) for k in ("lost", "dup", "ooo"))
    lines.append(f"| {label} | {fmt(d)} | {share} | {lat} | {fmt(med(target, 'fanout-1k', 'srv_cpu_us_per_delivery'), 2)} | "
                 f"{fmt(med(target, 'fanout-1k', 'pubnode_cpu_us_per_event'), 1)} | {fmt(med(target, 'fanout-1k', 'redis_cpu_us_per_event'), 1)} | {faults} |")
lines += ["", "| publish (16 keep-alive publishers, own channels) | publishes/s | p50 / p99 latency (µs) | node CPU µs/publish | Redis CPU µs/publish | other node CPU µs/publish |",
          "|---|---:|---:|---:|---:|---:|"]
for target, label in [("single", "single node"), ("redis", "through Redis (node A)")]:
    lat = f"{fmt(med(target, 'publish', 'lat_p50_us'))} / {fmt(med(target, 'publish', 'lat_p99_us'))}"
    lines.append(f"| {label} | {fmt(med(target, 'publish', 'publishes_per_s'))} | {lat} | "
                 f"{fmt(med(target, 'publish', 'srv_cpu_us_per_publish'), 1)} | {fmt(med(target, 'publish', 'redis_cpu_us_per_publish'), 1)} | "
                 f"{fmt(med(target, 'publish', 'other_cpu_us_per_publish'), 1)} |")
text = "\n".join(lines) + "\n"
open(out_file, "w").write(text)
print(text)
