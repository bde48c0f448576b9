"""The A1111 API's throughput on the embedded model, against direct calls in the same process.

    python bench/api.py [--requests 20] [--size 64] [--steps 2] [--clients 1]

Four ways to make the same image, each warmed up once, then timed over --requests requests:
world.create (direct), Service.create().wait() (the queue), POST /sdapi/v1/txt2img over real HTTP to the
API served by uvicorn in this process (--clients threads at once), and the queue's overhead per job
(queue minus direct). Ratios are against direct world.create.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from dreamworld import DreamWorld  # noqa: E402
from dreamworld.api import server  # noqa: E402
from dreamworld.service import Service  # noqa: E402


def timed(n: int, make, clients: int = 1) -> float:
    """Seconds per request for n requests made by `clients` threads."""
    make(0)
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(make, range(1, n + 1)))
    return (time.perf_counter() - start) / n


def serve(service: Service) -> tuple[str, uvicorn.Server]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(server.standalone(service), host="127.0.0.1", port=port, log_level="warning")
    api = uvicorn.Server(config)
    threading.Thread(target=api.run, daemon=True).start()
    while not api.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", api


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--clients", type=int, default=1)
    args = parser.parse_args()
    fields = {"prompt": "a lighthouse", "steps": args.steps, "width": args.size, "height": args.size}
    world = DreamWorld(creations_dir=tempfile.mkdtemp(prefix="dreamworld-bench-api-"))
    service = Service(world)
    url, api = serve(service)
    with httpx.Client(timeout=600) as http:
        direct = timed(args.requests, lambda i: world.create(seed=i, **fields))
        queued = timed(args.requests, lambda i: service.create(seed=i, **fields).wait())
        body = {k if k != "guidance_scale" else "cfg_scale": v for k, v in fields.items()}
        over_http = timed(args.requests, lambda i: http.post(f"{url}/sdapi/v1/txt2img", json={**body, "seed": i})
                          .raise_for_status(), args.clients)
    api.should_exit = True
    print(f"{args.size}x{args.size}, {args.steps} steps, {args.requests} requests, {args.clients} client(s)")
    print(f"direct world.create   {1 / direct:8.2f} req/s   1.00")
    print(f"Service queue         {1 / queued:8.2f} req/s   {direct / queued:.2f}")
    print(f"HTTP /sdapi/v1/txt2img {1 / over_http:7.2f} req/s   {direct / over_http:.2f}")
    print(f"queue overhead per job {1000 * (queued - direct):+.1f} ms; API overhead per request "
          f"{1000 * (over_http - direct):+.1f} ms")


if __name__ == "__main__":
    main()
