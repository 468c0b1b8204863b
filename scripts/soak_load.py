#!/usr/bin/env python3
"""Soak load for herald (stdlib only), driven by scripts/soak.sh.

Runs mixed load against one herald server for a fixed time and samples the
server's resident memory and open file descriptors into a CSV:

- publishers: one per stable channel, POSTing numbered events ("<channel>:<n>")
  over keep-alive connections;
- channel churn: batches of events to never-seen channel names (the server's
  short --channel-ttl reaps them), plus short-lived subscribers on those names;
- subscribers on one or several stable channels that read for a random while,
  drop the connection at a random point (mid-event too), and come back with
  Last-Event-ID; some read slowly, a few bytes at a time;
- a sampler: /proc/<pid>/status VmRSS, /proc/<pid>/fd, and a few gauges of
  /metrics, every --sample-every seconds.

Subscribers check the promise of SPEC section 2 as they go: per channel the
numbers they receive go up by one, unless a herald.gap notice came first.
At the end the summary says whether RSS or fds kept growing (a linear fit of
the last two thirds of the samples, and the last third's peak against the
middle third's) and whether any loss was silent; exit status 1 if so.

Every connection goes to the --url given (127.0.0.1); every loop stops at the
deadline.
"""

import argparse
import asyncio
import csv
import json
import os
import random
import sys
import time
from urllib.parse import urlsplit

STABLE_CHANNELS = 8


class Stats:
    def __init__(self):
        self.published = 0
        self.publish_errors = 0
        self.churn_channels = 0
        self.received = 0
        self.reconnects = 0
        self.gaps = 0
        self.silent_losses = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.stream_errors = 0
        self.examples = []

    def problem(self, text):
        if len(self.examples) < 20:
            self.examples.append(text)


# --- a minimal HTTP/1.1 client over asyncio streams ---------------------------------


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


async def read_body(reader, headers):
    if headers.get("transfer-encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return bytes(out)
            out += await reader.readexactly(size)
            await reader.readexactly(2)
    n = int(headers.get("content-length", "0"))
    return await reader.readexactly(n)


class Conn:
    """One keep-alive connection for request/response exchanges."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, method, path, body=b"", timeout=10):
        if self.writer is None:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), timeout
            )
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: soak\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        try:
            self.writer.write(head + body)
            await self.writer.drain()
            status, headers = await asyncio.wait_for(read_head(self.reader), timeout)
            data = await asyncio.wait_for(read_body(self.reader, headers), timeout)
            if headers.get("connection", "").lower() == "close":
                self.close()
            return status, data
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# --- load ----------------------------------------------------------------------------


async def publisher(host, port, channel, rate, deadline, stats):
    conn = Conn(host, port)
    n = 0
    while time.monotonic() < deadline:
        n += 1
        data = f"{channel}:{n}".encode()
        if random.random() < 0.05:
            data += b"\nsecond line: " + b"x" * random.randint(0, 2000)
        try:
            status, body = await conn.request("POST", f"/publish/{channel}", data)
            if status == 200:
                stats.published += 1
            else:
                stats.publish_errors += 1
                stats.problem(f"publish {channel} answered {status}: {body[:100]!r}")
        except Exception as e:  # noqa: BLE001 - counted, never fatal
            stats.publish_errors += 1
            stats.problem(f"publish {channel}: {e!r}")
        await asyncio.sleep(random.expovariate(rate))
    conn.close()


async def churn(host, port, deadline, stats, per_second):
    """Publishes to fresh channel names, and briefly subscribes to some."""
    conn = Conn(host, port)
    k = 0
    while time.monotonic() < deadline:
        items = []
        for _ in range(per_second):
            k += 1
            items.append({"channel": f"churn-{k}", "data": {"k": k}})
        try:
            status, body = await conn.request("POST", "/publish", json.dumps(items).encode())
            if status == 200:
                stats.churn_channels += len(items)
            else:
                stats.publish_errors += 1
                stats.problem(f"batch answered {status}: {body[:100]!r}")
        except Exception as e:  # noqa: BLE001 - counted, never fatal
            stats.publish_errors += 1
            stats.problem(f"batch: {e!r}")
        # A short-lived subscriber on one of the names just used.
        asyncio.ensure_future(brief_subscribe(host, port, f"churn-{k}", deadline))
        await asyncio.sleep(1)
    conn.close()


async def brief_subscribe(host, port, channel, deadline):
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except (OSError, asyncio.TimeoutError):
        return
    try:
        writer.write(f"GET /events/{channel} HTTP/1.1\r\nHost: soak\r\n\r\n".encode())
        await writer.drain()
        await asyncio.wait_for(reader.read(4096), min(3, max(0.1, deadline - time.monotonic())))
    except (OSError, asyncio.TimeoutError):
        pass
    finally:
        writer.close()


class Sub:
    """One logical subscriber: a list of channels and, per channel, the last
    number received; it survives its connections."""

    def __init__(self, channels, slow):
        self.channels = channels
        self.slow = slow
        self.last_id = None
        self.last_numeric_id = 0
        self.seen = {}  # channel -> last number received
        self.gap_pending = set()


def handle_event(sub, fields, stats):
    event = fields.get("event", "message")
    data = "\n".join(fields.get("data", []))
    if event == "herald.gap":
        stats.gaps += 1
        try:
            sub.gap_pending.add(json.loads(data)["channel"])
        except (ValueError, KeyError):
            stats.problem(f"bad gap notice {data!r}")
        return
    if "id" in fields:
        try:
            numeric = int(fields["id"])
        except ValueError:
            numeric = 0
        if numeric <= sub.last_numeric_id:
            stats.out_of_order += 1
            stats.problem(f"id {numeric} after {sub.last_numeric_id} on {sub.channels}")
        sub.last_numeric_id = numeric
        sub.last_id = fields["id"]
    first = data.split("\n", 1)[0]
    channel, _, n = first.rpartition(":")
    try:
        n = int(n)
    except ValueError:
        stats.problem(f"unexpected data {first!r}")
        return
    stats.received += 1
    prev = sub.seen.get(channel)
    if prev is not None:
        if n <= prev:
            stats.duplicates += 1
            stats.problem(f"{channel}: {n} after {prev}")
        elif n != prev + 1 and channel not in sub.gap_pending:
            stats.silent_losses += 1
            stats.problem(f"{channel}: {n} after {prev} with no herald.gap")
    sub.gap_pending.discard(channel)
    sub.seen[channel] = n


def parse_sse(buffer, sub, stats, state):
    """Feeds complete lines of `buffer` to the SSE parser; returns the rest."""
    while True:
        i = buffer.find(b"\n")
        if i < 0:
            return buffer
        line = buffer[:i].rstrip(b"\r").decode("utf-8")
        buffer = buffer[i + 1 :]
        if line == "":
            if state:
                handle_event(sub, state, stats)
                state.clear()
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            state.setdefault("data", []).append(value)
        elif name in ("id", "event"):
            state[name] = value


async def subscriber(host, port, sub, deadline, stats):
    while time.monotonic() < deadline:
        try:
            await one_connection(host, port, sub, deadline, stats)
        except Exception as e:  # noqa: BLE001 - counted, never fatal
            stats.stream_errors += 1
            stats.problem(f"stream: {e!r}")
        stats.reconnects += 1
        await asyncio.sleep(random.uniform(0, 0.5))


async def one_connection(host, port, sub, deadline, stats):
    if len(sub.channels) == 1:
        path = f"/events/{sub.channels[0]}"
    else:
        path = "/events?" + "&".join(f"channel={c}" for c in sub.channels)
    headers = f"Last-Event-ID: {sub.last_id}\r\n" if sub.last_id else ""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: soak\r\n{headers}\r\n".encode())
        await writer.drain()
        status, resp = await asyncio.wait_for(read_head(reader), 10)
        if status != 200:
            raise ValueError(f"subscribe answered {status}")
        chunked = resp.get("transfer-encoding", "").lower() == "chunked"
        # Drop the connection after a random number of body bytes: often
        # mid-event, sometimes right after connecting.
        budget = random.choice([0, 50, 500, 5000, 50000, 500000])
        budget = random.randint(0, budget)
        stop = min(deadline, time.monotonic() + random.uniform(0.2, 20))
        raw = b""  # body bytes not yet de-chunked
        sse = b""  # de-chunked bytes not yet parsed
        state = {}
        taken = 0
        while time.monotonic() < stop and taken <= budget:
            size = random.randint(1, 64) if sub.slow else 65536
            try:
                got = await asyncio.wait_for(
                    reader.read(size), max(0.05, stop - time.monotonic())
                )
            except asyncio.TimeoutError:
                break
            if not got:
                break
            taken += len(got)
            if chunked:
                raw += got
                while True:
                    j = raw.find(b"\r\n")
                    if j < 0:
                        break
                    n = int(raw[:j].split(b";")[0], 16)
                    if len(raw) < j + 2 + n + 2:
                        break
                    sse += raw[j + 2 : j + 2 + n]
                    raw = raw[j + 2 + n + 2 :]
                    if n == 0:
                        break
            else:
                sse += got
            sse = parse_sse(sse, sub, stats, state)
            if sub.slow:
                await asyncio.sleep(random.uniform(0, 0.02))
    finally:
        writer.close()


# --- sampling and the verdict -----------------------------------------------------------


def proc_sample(pid):
    rss_kb = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss_kb, fds


async def metrics(host, port):
    conn = Conn(host, port)
    try:
        status, body = await conn.request("GET", "/metrics")
    finally:
        conn.close()
    values = {}
    for line in body.decode().splitlines():
        if line.startswith("herald_") and " " in line:
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


async def sampler(host, port, pid, deadline, every, path, stats, rows):
    start = time.monotonic()
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(
            ["t_s", "rss_kb", "fds", "channels", "streams_open", "connections_open",
             "published_total", "received", "reconnects", "gaps"]
        )
        while True:
            rss_kb, fds = proc_sample(pid)
            try:
                m = await metrics(host, port)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                stats.problem(f"metrics: {e!r}")
                m = {}
            row = [
                round(time.monotonic() - start, 1), rss_kb, fds,
                int(m.get("herald_channels", -1)), int(m.get("herald_streams_open", -1)),
                int(m.get("herald_connections_open", -1)),
                int(m.get("herald_events_published_total", -1)),
                stats.received, stats.reconnects, stats.gaps,
            ]
            rows.append(row)
            out.writerow(row)
            f.flush()
            if time.monotonic() >= deadline:
                return
            await asyncio.sleep(min(every, max(0.0, deadline - time.monotonic())))


def fit(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def verdict(rows, column, name, abs_tol, rel_tol):
    """Growth check on one column: the slope over the last two thirds must not
    add more than the tolerance over that span, and the last third's peak must
    not pass the middle third's by more than the tolerance."""
    idx = {"rss_kb": 1, "fds": 2}[column]
    xs = [r[0] for r in rows]
    ys = [r[idx] for r in rows]
    n = len(rows)
    a, b = n // 3, 2 * n // 3
    xs2, ys2 = xs[a:], ys[a:]
    slope = fit(xs2, ys2)  # per second
    span = xs2[-1] - xs2[0]
    typical = sorted(ys2)[len(ys2) // 2]
    tolerance = max(abs_tol, rel_tol * typical)
    fitted_growth = slope * span
    middle_peak, last_peak = max(ys[a:b]), max(ys[b:])
    ok = fitted_growth <= tolerance and last_peak <= middle_peak + tolerance
    return {
        "name": name,
        "start": ys[0],
        "end": ys[-1],
        "min": min(ys),
        "max": max(ys),
        "first_third_max": max(ys[:a]) if a else ys[0],
        "middle_third_max": middle_peak,
        "last_third_max": last_peak,
        "slope_per_hour_last_two_thirds": round(slope * 3600, 1),
        "fitted_growth_over_last_two_thirds": round(fitted_growth, 1),
        "tolerance": round(tolerance, 1),
        "ok": ok,
    }


async def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="http://127.0.0.1:PORT")
    p.add_argument("--pid", type=int, required=True, help="the server's pid, for /proc")
    p.add_argument("--duration", type=float, default=1800, help="seconds")
    p.add_argument("--csv", required=True)
    p.add_argument("--summary", required=True)
    p.add_argument("--sample-every", type=float, default=5)
    p.add_argument("--subscribers", type=int, default=40)
    p.add_argument("--rate", type=float, default=20, help="events/s per stable channel")
    p.add_argument("--churn", type=int, default=50, help="new channel names per second")
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args()

    random.seed(args.seed)
    url = urlsplit(args.url)
    host, port = url.hostname, url.port
    if host not in ("127.0.0.1", "localhost"):
        sys.exit("soak load only talks to 127.0.0.1")
    stats = Stats()
    deadline = time.monotonic() + args.duration
    channels = [f"soak-{i}" for i in range(STABLE_CHANNELS)]
    tasks = [publisher(host, port, c, args.rate, deadline, stats) for c in channels]
    tasks.append(churn(host, port, deadline, stats, args.churn))
    for i in range(args.subscribers):
        subset = random.sample(channels, random.choice([1, 1, 1, 2, 3]))
        sub = Sub(subset, slow=(i % 5 == 0))
        tasks.append(subscriber(host, port, sub, deadline, stats))
    rows = []
    tasks.append(sampler(host, port, args.pid, deadline, args.sample_every, args.csv, stats, rows))
    await asyncio.gather(*tasks)

    summary = {
        "duration_s": args.duration,
        "samples": len(rows),
        "published": stats.published,
        "publish_errors": stats.publish_errors,
        "churn_channels": stats.churn_channels,
        "received": stats.received,
        "reconnects": stats.reconnects,
        "gaps": stats.gaps,
        "silent_losses": stats.silent_losses,
        "duplicates": stats.duplicates,
        "out_of_order": stats.out_of_order,
        "stream_errors": stats.stream_errors,
        "examples": stats.examples,
    }
    failures = []
    if len(rows) >= 9:
        summary["rss_kb"] = verdict(rows, "rss_kb", "rss_kb", abs_tol=8 * 1024, rel_tol=0.10)
        summary["fds"] = verdict(rows, "fds", "fds", abs_tol=20, rel_tol=0.25)
        failures += [k for k in ("rss_kb", "fds") if not summary[k]["ok"]]
    else:
        failures.append("too few samples for a growth verdict")
    if stats.silent_losses or stats.duplicates or stats.out_of_order:
        failures.append("events lost silently, duplicated or out of order")
    if stats.published == 0 or stats.received == 0:
        failures.append("no traffic")
    summary["failures"] = failures
    with open(args.summary, "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
