"""`bgremove serve` as a long-running process: the first request's latency, and memory over a soak.

Starts the real `bgremove serve` (a subprocess, as an operator runs it) on 127.0.0.1 and measures:

1. Cold start: the time of the first request against the median of the next five, one photo
   (samples/astronaut.jpg, 512x512) in each mode. Target: the first no slower than 1.5x the median.
2. Memory: the server's RSS (VmRSS) over a soak of REQUESTS mixed requests (small, medium and
   4000x3000 photos, every mode, PNG and WebP, a few clients at once), sampled every 20 requests.
   Measured with the server idle after each round of 20, so it is what the server keeps, not
   what one 4000x3000 image in flight needs. Target: the second half of the soak grows RSS by
   less than 5% of its level at the half-way point (a bound, not a leak).

    python benchmarks/serve.py                    # about 5 minutes on 2 cores
    python benchmarks/serve.py --requests 100 --no-write

Rewrites the `serve` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks.sections import write_section  # noqa: E402

API = "/api/remove-background/"
MODES = ("fast", "balanced", "quality")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def jpeg(size: tuple[int, int], seed: int) -> bytes:
    from PIL import Image

    source = Image.open(ROOT / "samples" / "astronaut.jpg").convert("RGB")
    rng = random.Random(seed)
    box = (rng.randrange(0, 100), rng.randrange(0, 100), 512 - rng.randrange(0, 100), 512)
    buffer = io.BytesIO()
    source.crop(box).resize(size).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def soak_plan(count: int) -> list[tuple[bytes, dict[str, str]]]:
    """A repeatable mix: 6 small, 3 medium and 1 large image in every 10 requests."""
    rng = random.Random(0)
    small = [jpeg((480, 360), s) for s in range(3)]
    medium = [jpeg((1600, 1200), s) for s in range(2)]
    large = [jpeg((4000, 3000), s) for s in range(2)]
    plan = []
    for i in range(count):
        slot = i % 10
        data = rng.choice(large if slot == 9 else medium if slot >= 6 else small)
        # quality on a 4000x3000 photo takes ~10 s here: keep it for the smaller ones
        mode = rng.choice(MODES[:2] if slot == 9 else MODES)
        plan.append((data, {"mode": mode, "outputFormat": rng.choice(("png", "webp"))}))
    return plan


class Server:
    def __init__(self, tmp: Path, env: dict[str, str]):
        self.db = tmp / "keys.sqlite3"
        self.env = env
        self.key = subprocess.run(
            [sys.executable, "-m", "bgremove", "keys", "create", "--email", "soak@example.com",
             "--credits", "100000", "--db", str(self.db)],
            env=env, capture_output=True, text=True, check=True).stdout.strip()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bgremove", "serve", "--port", str(self.port), "--db",
             str(self.db), "--rate-limit", "0"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + "/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("bgremove serve did not start")
            time.sleep(0.1)

    def post(self, client: httpx.Client, data: bytes, fields: dict[str, str]) -> float:
        started = time.perf_counter()
        response = client.post(self.url + API, headers={"x-api-key": self.key},
                               files={"file": ("a.jpg", data)}, data=fields)
        if response.status_code != 200:
            raise SystemExit(f"{response.status_code}: {response.text}")
        return time.perf_counter() - started

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(30)


def cold_start(tmp: Path, env: dict[str, str]) -> list[tuple[str, float, float]]:
    """(mode, first, median of the next five), each mode on a freshly started server."""
    photo = (ROOT / "samples" / "astronaut.jpg").read_bytes()
    rows = []
    for mode in MODES:
        server = Server(tmp / mode, env)
        try:
            with httpx.Client(timeout=300) as client:
                times = [server.post(client, photo, {"mode": mode}) for _ in range(6)]
        finally:
            server.stop()
        rows.append((mode, times[0], statistics.median(times[1:])))
    return rows


def soak(tmp: Path, env: dict[str, str], count: int, clients: int) -> list[tuple[int, float]]:
    """(requests done, RSS in MB) after every round of 20 requests, measured with the server
    idle: what it keeps between requests, not what one image in flight needs."""
    plan = soak_plan(count)
    server = Server(tmp / "soak", env)
    samples = [(0, rss_mb(server.proc.pid))]

    def work(items: list[tuple[bytes, dict[str, str]]]) -> None:
        with httpx.Client(timeout=600) as client:
            for data, fields in items:
                server.post(client, data, fields)

    try:
        for start in range(0, count, 20):
            batch = plan[start:start + 20]
            threads = [threading.Thread(target=work, args=(batch[i::clients],))
                       for i in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            samples.append((start + len(batch), rss_mb(server.proc.pid)))
            print(f"{samples[-1][0]:5d} requests: {samples[-1][1]:7.1f} MB", flush=True)
    finally:
        server.stop()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="soak length (200)")
    parser.add_argument("--clients", type=int, default=4, help="clients at once (4)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--skip-cold", action="store_true", help="the soak alone")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("BGREMOVE_DB", None)

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for name in MODES + ("soak",):
            (tmp_path / name).mkdir()
        cold = [] if args.skip_cold else cold_start(tmp_path, env)
        for mode, first, warm in cold:
            print(f"{mode}: first {first * 1000:.0f} ms, then {warm * 1000:.0f} ms", flush=True)
        rss = soak(tmp_path, env, args.requests, args.clients)
    half = min(rss, key=lambda s: abs(s[0] - args.requests / 2))
    growth = rss[-1][1] - half[1]
    peak = max(mb for _, mb in rss)
    ok_growth = growth < 0.05 * half[1]
    ok_cold = all(first <= 1.5 * warm for _, first, warm in cold)
    shown = rss[:: max(1, len(rss) // 8)]
    if shown[-1] != rss[-1]:
        shown.append(rss[-1])
    lines = [
        f"`bgremove serve` (`benchmarks/serve.py`), a real server process on 127.0.0.1, "
        f"{os.cpu_count()} cores.",
        "",
        "| mode | first request (ms) | median of the next five (ms) |",
        "|---|---|---|",
        *(f"| {mode} | {first * 1000:.0f} | {warm * 1000:.0f} |" for mode, first, warm in cold),
        "",
        "Memory (RSS with the server idle, after every 20 requests) over "
        f"{args.requests} requests ({args.clients} clients at once; in every ten: "
        "six 480x360, three 1600x1200 and one 4000x3000 photo; every mode, PNG and WebP):",
        "",
        "| requests | RSS (MB) |",
        "|---|---|",
        *(f"| {done} | {mb:.0f} |" for done, mb in shown),
        "",
        f"Second half: {growth:+.0f} MB ({growth / half[1]:+.1%}); highest {peak:.0f} MB. "
        f"Bars: first request within 1.5x of warm {'met' if ok_cold else '**missed**'}; "
        f"second-half growth under 5% {'met' if ok_growth else '**missed**'}.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("serve", text)
    if not (ok_growth and ok_cold):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
