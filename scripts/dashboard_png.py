#!/usr/bin/env python3
"""Renders deploy/grafana/herald.json's panels from a live herald, to a PNG.

No Grafana runs here (Debian packages none), so this is the next best
thing: the dashboard's own PromQL queries, evaluated by a real Prometheus
(Debian's `prometheus`) that scraped a real herald under traffic, drawn
with matplotlib on the dashboard's grid.

    python3 scripts/dashboard_png.py target/debug/herald docs/dashboard.png [seconds]

It starts herald (HTTPS with a throw-away certificate valid 45 days, a
--data-dir, a publish token), Prometheus scraping it every 2 s, and
traffic: SSE subscribers, publishers (single and batch), some bad
requests, and a burst of unauthorized publishes halfway. Everything runs
on loopback in a temporary directory and is stopped at the end.

Needs: openssl, prometheus, matplotlib (pip install matplotlib).
"""

import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "dashboard-demo-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} did not open port {port}")


class Traffic:
    def __init__(self, base):
        self.base = base
        self.ctx = ssl.create_default_context()
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE
        self.stop = threading.Event()
        self.unauthorized = threading.Event()

    def request(self, method, path, body=None, token=TOKEN, timeout=5):
        req = urllib.request.Request(self.base + path, data=body, method=method)
        if token:
            req.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError:
            return 0, b""

    def subscriber(self, channel, seconds):
        req = urllib.request.Request(self.base + "/events/" + channel)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=10) as r:
                end = time.time() + seconds
                while time.time() < end and not self.stop.is_set():
                    if not r.readline():
                        break
        except OSError:
            pass

    def subscribers(self):
        while not self.stop.is_set():
            threads = [
                threading.Thread(
                    target=self.subscriber,
                    args=(random.choice(["news", "prices", "chat"]), random.uniform(5, 40)),
                    daemon=True,
                )
                for _ in range(random.randint(2, 6))
            ]
            for t in threads:
                t.start()
            time.sleep(3)

    def publisher(self, rate):
        n = 0
        while not self.stop.is_set():
            n += 1
            channel = random.choice(["news", "prices", "chat"])
            if n % 10 == 0:
                items = [{"channel": channel, "data": {"n": n, "i": i}} for i in range(5)]
                self.request("POST", "/publish", json.dumps(items).encode())
            else:
                self.request("POST", "/publish/" + channel, f"event {n}".encode())
            if n % 25 == 0:
                self.request("POST", "/publish/bad%20name", b"x")  # 400
                self.request("GET", "/nope")  # 404
            if self.unauthorized.is_set():
                self.request("POST", "/publish/news", b"x", token="wrong")  # 401
            time.sleep(random.expovariate(rate))


def query_range(prom, expr, start, end, step):
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prom}/api/v1/query_range?{q}", timeout=30) as r:
        answer = json.load(r)
    return answer["data"]["result"]


def legend(fmt, labels):
    out = fmt
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    return out


def render(dashboard, prom, start, end, out):
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    plt.style.use("dark_background")
    fig = plt.figure(figsize=(16, rows * 0.42), dpi=90)
    fig.patch.set_facecolor("#111217")
    step = 2
    for p in panels:
        g = p["gridPos"]
        ax = fig.add_axes(
            [
                g["x"] / 24 + 0.028,
                1 - (g["y"] + g["h"]) / rows + 0.02,
                g["w"] / 24 - 0.034,
                g["h"] / rows - 0.045,
            ]
        )
        ax.set_facecolor("#181b1f")
        ax.set_title(p["title"], loc="left", fontsize=10, color="#ccccdc")
        ax.tick_params(labelsize=7, colors="#8e8e8e")
        for spine in ax.spines.values():
            spine.set_visible(False)
        unit = p["fieldConfig"]["defaults"].get("unit", "short")
        series = []
        for t in p["targets"]:
            expr = t["expr"].replace("$__rate_interval", "10s").replace("$instance", ".*")
            for r in query_range(prom, expr, start, end, step):
                xs = [(float(v[0]) - start) / 60 for v in r["values"]]
                ys = [float(v[1]) for v in r["values"]]
                series.append((legend(t["legendFormat"], r["metric"]), xs, ys))
        if p["type"] == "stat":
            ax.set_xticks([])
            ax.set_yticks([])
            text = []
            for name, _, ys in series:
                v = ys[-1] if ys else float("nan")
                if unit == "s":
                    text.append(f"{v / 86400:.1f} days")
                else:
                    text.append(f"{name}: {v:g}")
            ax.text(0.5, 0.45, "\n".join(text) or "no data", ha="center", va="center",
                    fontsize=16 if len(text) < 2 else 11, color="#73bf69", transform=ax.transAxes)
            continue
        for name, xs, ys in series:
            if unit == "bytes":
                ys = [y / 2**20 for y in ys]
            elif unit == "s":
                ys = [y * 1000 for y in ys]
            elif unit == "percentunit":
                ys = [y * 100 for y in ys]
            ax.plot(xs, ys, linewidth=1.2, label=name)
        suffix = {"bytes": " MiB", "s": " ms", "percentunit": " %", "ops": " /s", "reqps": " /s"}.get(unit, "")
        ax.set_ylabel(suffix.strip(), fontsize=7, color="#8e8e8e")
        ax.grid(color="#2c3235", linewidth=0.5)
        if series:
            ax.legend(fontsize=6, loc="upper left", frameon=False, ncol=3)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", transform=ax.transAxes, color="#8e8e8e")
    fig.text(0.004, 0.002, "deploy/grafana/herald.json: its PromQL evaluated by Prometheus 2.42 on a live herald "
             "(minutes on the x axis); drawn with matplotlib, not Grafana", fontsize=7, color="#8e8e8e")
    fig.savefig(out, facecolor=fig.get_facecolor())


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    herald, out = os.path.abspath(sys.argv[1]), sys.argv[2]
    seconds = int(sys.argv[3]) if len(sys.argv) == 4 else 120
    with open(os.path.join(ROOT, "deploy/grafana/herald.json")) as f:
        dashboard = json.load(f)
    tmp = tempfile.mkdtemp(prefix="herald-dashboard-")
    procs = []
    try:
        cert, key = f"{tmp}/cert.pem", f"{tmp}/key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "45", "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
            check=True, capture_output=True,
        )
        hport, pport = free_port(), free_port()
        procs.append(subprocess.Popen(
            [herald, "--listen", f"127.0.0.1:{hport}", "--tls-cert", cert, "--tls-key", key,
             "--data-dir", f"{tmp}/data", "--history", "20"],
            env={**os.environ, "HERALD_PUBLISH_TOKEN": TOKEN},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        wait_port(hport, "herald")
        with open(f"{tmp}/prometheus.yml", "w") as f:
            f.write(
                "global: {scrape_interval: 2s, evaluation_interval: 2s}\n"
                "scrape_configs:\n"
                "  - job_name: herald\n"
                "    scheme: https\n"
                "    tls_config: {insecure_skip_verify: true}\n"
                f"    static_configs: [{{targets: ['127.0.0.1:{hport}']}}]\n"
            )
        procs.append(subprocess.Popen(
            ["prometheus", f"--config.file={tmp}/prometheus.yml", f"--storage.tsdb.path={tmp}/tsdb",
             f"--web.listen-address=127.0.0.1:{pport}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        wait_port(pport, "prometheus")
        prom = f"http://127.0.0.1:{pport}"

        traffic = Traffic(f"https://127.0.0.1:{hport}")
        start = time.time()
        workers = [threading.Thread(target=traffic.subscribers, daemon=True)]
        workers += [threading.Thread(target=traffic.publisher, args=(rate,), daemon=True)
                    for rate in (20, 40, 60)]
        for w in workers:
            w.start()
        time.sleep(seconds / 2)
        traffic.unauthorized.set()
        time.sleep(seconds / 4)
        traffic.unauthorized.clear()
        time.sleep(seconds / 4)
        traffic.stop.set()
        time.sleep(3)
        render(dashboard, prom, start, time.time(), out)
        print(f"wrote {out}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
