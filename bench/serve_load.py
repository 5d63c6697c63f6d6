"""A bounded load test of ``mmre serve`` on 127.0.0.1: latency percentiles and failed requests.

Starts ``mmre serve`` in a child process on a free port of 127.0.0.1 (unless ``--url`` names a
running server), waits for ``GET /health``, then ``--clients`` threads, each on its own
keep-alive connection, send ``--requests`` ``POST /predict`` requests between them (the shipped
sample's lines with their captions; every ``--upload-every``-th one sends its image as
``image_b64`` instead of a sample's name) and stop by themselves when the count is reached or
``--deadline`` seconds have passed (the requests not sent then count as failed). Meanwhile one more
thread asks ``GET /health`` every ``--health-every`` seconds: its latency shows whether a
prediction holds up the server's other answers. A request failed = no answer, a transport
error, a status other than 200 or a body without one prediction per input.

Prints one JSON object (``p50_ms``, ``p99_ms``, ``failed``, ``health_p99_ms``, ...) on stdout and
writes it to ``bench/results/serve_load_<UTC date-time>.json``; exits 1 if any request failed.

Usage::

    python bench/serve_load.py --model out/model                      # 8 clients, 400 requests
    python bench/serve_load.py --model out/model --clients 2 --requests 20   # a smoke run

``load()`` is the client half alone (tests/cli/test_serve.py runs a small load through it).
"""

from __future__ import annotations

import argparse
import ast
import base64
import datetime as dt
import http.client
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"


def sample_lines(root: Path = SAMPLE) -> list[dict]:
    """The sample's val then train lines as ``POST /predict`` objects (image = the sample's name)."""
    lines = []
    for split in ("val", "train"):
        caps = {
            d["img_id"]: d["text"]
            for d in map(ast.literal_eval, (root / f"captions_{split}.txt").read_text().splitlines())
        }
        for line in (root / f"ours_{split}.txt").read_text().splitlines():
            rec = ast.literal_eval(line)
            lines.append(
                {
                    "text": " ".join(rec["token"]),
                    "head": rec["h"]["name"],
                    "tail": rec["t"]["name"],
                    "caption": caps.get(rec["img_id"]),
                    "image": rec["img_id"],
                    "_path": str(root / "img_org" / split / rec["img_id"]),
                }
            )
    return lines


def _percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of ``values``, None for none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(len(ordered) * q / 100))) - 1]


def _summary(ms: list[float], prefix: str = "") -> dict:
    return {
        f"{prefix}p50_ms": _round(_percentile(ms, 50)),
        f"{prefix}p90_ms": _round(_percentile(ms, 90)),
        f"{prefix}p99_ms": _round(_percentile(ms, 99)),
        f"{prefix}max_ms": _round(max(ms) if ms else None),
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def _connect(url: str, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)


def load(
    url: str,
    *,
    clients: int = 8,
    requests: int = 400,
    lines: list[dict] | None = None,
    upload_every: int = 4,
    health_every: float = 0.25,
    deadline: float = 600.0,
    timeout: float = 120.0,
) -> dict:
    """Send ``requests`` predictions from ``clients`` threads to the server at ``url``; returns the
    figures (latencies in ms, ``failed`` with the first few ``errors``). Stops by itself: after the
    count or at ``deadline`` seconds, whichever comes first."""
    lines = lines or sample_lines()
    bodies, uploads = [], []
    for i, line in enumerate(lines):
        body = {k: v for k, v in line.items() if not k.startswith("_") and v is not None}
        if upload_every and i % upload_every == upload_every - 1:
            body.pop("image")
            body["image_b64"] = base64.b64encode(Path(line["_path"]).read_bytes()).decode()
        bodies.append(json.dumps(body).encode())
        uploads.append("image_b64" in body)
    counter = iter(range(requests))
    take = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    health: list[float] = []
    health_failed = [0]
    stop = threading.Event()
    t_end = time.monotonic() + deadline

    def client() -> None:
        conn = _connect(url, timeout)
        while time.monotonic() < t_end:
            with take:
                i = next(counter, None)
            if i is None:
                break
            t0 = time.perf_counter()
            try:
                conn.request(
                    "POST", "/predict", body=bodies[i % len(bodies)], headers={"content-type": "application/json"}
                )
                r = conn.getresponse()
                data = r.read()
                ms = (time.perf_counter() - t0) * 1000
                if r.status != 200:
                    raise RuntimeError(f"status {r.status}: {data[:200]!r}")
                if len(json.loads(data)["predictions"]) != 1:
                    raise RuntimeError(f"not one prediction: {data[:200]!r}")
                latencies.append(ms)
            except Exception as err:  # noqa: BLE001 - every failure is counted, the load goes on
                errors.append(f"request {i}: {type(err).__name__}: {err}")
                conn.close()
                conn = _connect(url, timeout)
        conn.close()

    def prober() -> None:
        conn = _connect(url, timeout)
        while not stop.wait(health_every):
            t0 = time.perf_counter()
            try:
                conn.request("GET", "/health")
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    raise RuntimeError(r.status)
                health.append((time.perf_counter() - t0) * 1000)
            except Exception:  # noqa: BLE001
                health_failed[0] += 1
                conn.close()
                conn = _connect(url, timeout)
        conn.close()

    probe = threading.Thread(target=prober, daemon=True)
    probe.start()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, t_end - time.monotonic()) + timeout + 5)
    wall = time.perf_counter() - t0
    stop.set()
    probe.join(timeout + 5)
    unsent = requests - len(latencies) - len(errors)
    if unsent:
        errors.append(f"{unsent} request(s) not sent before the {deadline:g} s deadline")
    return {
        "clients": clients,
        "requests": requests,
        "ok": len(latencies),
        "failed": requests - len(latencies),
        **_summary(latencies),
        "mean_ms": _round(statistics.fmean(latencies) if latencies else None),
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 2) if wall else None,
        "uploads": sum(uploads[i % len(bodies)] for i in range(requests)),
        "health_probes": len(health),
        "health_failed": health_failed[0],
        **_summary(health, "health_"),
        "errors": errors[:5],
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_health(url: str, proc: subprocess.Popen | None, limit: float) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"mmre serve exited with {proc.returncode} before answering")
        try:
            conn = _connect(url, 5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return time.perf_counter() - t0
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"mmre serve did not answer GET /health within {limit:g} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=REPO / "out" / "model", help="model folder (default out/model)")
    ap.add_argument("--url", help="a running server to load instead of starting one")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument(
        "--upload-every", type=int, default=4, help="every N-th line sends its image as image_b64 (0: never)"
    )
    ap.add_argument("--health-every", type=float, default=0.25, help="seconds between GET /health probes")
    ap.add_argument("--deadline", type=float, default=900, help="stop sending after this many seconds")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="folder of the dated JSON log")
    args = ap.parse_args(argv)

    proc = None
    url = args.url
    if url is None:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mmre_cli",
                "serve",
                "--model",
                str(args.model),
                "--port",
                str(port),
                "--samples",
                str(SAMPLE / "img_org"),
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        first = _wait_health(url, proc, 300)
        load(url, clients=1, requests=2, upload_every=0, health_every=60)  # warm-up, not counted
        loadavg_before = os.getloadavg()
        result = load(
            url,
            clients=args.clients,
            requests=args.requests,
            upload_every=args.upload_every,
            health_every=args.health_every,
            deadline=args.deadline,
        )
        loadavg_after = os.getloadavg()
        alive = _wait_health(url, proc, 10) is not None
    finally:
        stderr, code = "", None
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                stderr = proc.communicate(timeout=30)[1]
            except subprocess.TimeoutExpired:
                proc.kill()
                stderr = proc.communicate()[1]
            code = proc.returncode
    now = dt.datetime.now(dt.timezone.utc)
    out = {
        "bench": "serve_load",
        "when": now.isoformat(timespec="seconds"),
        "model": str(args.model),
        "url": url if args.url else "127.0.0.1 (a child mmre serve)",
        **result,
        "server_alive_after": alive,
        "first_health_s": round(first, 2) if proc is not None else None,
        "server_exit_on_ctrl_c": code,
        "server_stderr_tail": stderr.strip().splitlines()[-3:] if stderr else [],
        "loadavg_before": [round(x, 2) for x in loadavg_before],
        "loadavg_after": [round(x, 2) for x in loadavg_after],
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "threads_env": {k: os.environ.get(k) for k in ("MMRE_TORCH_THREADS", "OMP_NUM_THREADS")},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"serve_load_{now.strftime('%Y-%m-%dT%H%M%S')}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 1 if out["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
