#!/usr/bin/env python3
"""Plots a soak CSV (scripts/soak.sh) as a small PNG: server RSS and open
fds over time, with open streams for context.

    python3 scripts/soak_plot.py target/soak/soak.csv docs/soak.png

Needs matplotlib (pip install matplotlib).
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    with open(src) as f:
        rows = list(csv.DictReader(f))
    minutes = [float(r["t_s"]) / 60 for r in rows]
    rss = [int(r["rss_kb"]) / 1024 for r in rows]
    fds = [int(r["fds"]) for r in rows]
    streams = [int(r["streams_open"]) for r in rows]

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 4.2), sharex=True, dpi=100)
    top.plot(minutes, rss, color="tab:blue", linewidth=1)
    top.set_ylabel("RSS (MiB)")
    top.set_ylim(0, max(rss) * 1.3)
    top.grid(alpha=0.3)
    top.set_title("herald soak: mixed load, reconnect and channel churn", fontsize=10)
    bottom.plot(minutes, fds, color="tab:orange", linewidth=1, label="open fds")
    bottom.plot(minutes, streams, color="tab:green", linewidth=0.8, alpha=0.7, label="open streams")
    bottom.set_ylabel("count")
    bottom.set_xlabel("minutes")
    bottom.set_ylim(0, max(fds) * 1.3)
    bottom.grid(alpha=0.3)
    bottom.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main()
