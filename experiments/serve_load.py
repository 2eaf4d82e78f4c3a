"""Bounded load check of `handwriting_jax.serve`: N concurrent clients, M requests each, on loopback, with and
without micro-batching (alternated), reporting lines per second and p50 / p95 latency.

  python experiments/serve_load.py --clients=8 --requests=3     # the shipped writer; a few minutes on 2 cores
"""

import argparse
import concurrent.futures
import json
import socket
import threading
import time
import urllib.request

import numpy as np
import uvicorn

from handwriting_jax.serving import app as app_lib
from handwriting_jax.writing import writer as writer_lib

TEXTS = (
  "the quick brown fox",
  "see you at noon",
  "a short line",
  "write this down for me",
  "hello there",
  "it rained all day",
  "thank you",
  "meet me at the station",
)


def _port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_load(url: str, clients: int, requests: int) -> dict:
  """Fire `clients` threads of `requests` sequential writes each; latency per request and total throughput."""

  def client(c: int) -> list[float]:
    out = []
    for r in range(requests):
      body = json.dumps({"text": TEXTS[(c + r) % len(TEXTS)], "seed": c * 100 + r, "style": None}).encode()
      req = urllib.request.Request(url + "/api/write", data=body, headers={"Content-Type": "application/json"})
      t = time.perf_counter()
      with urllib.request.urlopen(req, timeout=600) as resp:
        json.loads(resp.read())
      out.append(time.perf_counter() - t)
    return out

  start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    latencies = [x for xs in pool.map(client, range(clients)) for x in xs]
  wall = time.perf_counter() - start
  return {
    "lines_per_s": len(latencies) / wall,
    "p50_s": float(np.percentile(latencies, 50)),
    "p95_s": float(np.percentile(latencies, 95)),
    "requests": len(latencies),
    "wall_s": wall,
  }


def main() -> None:
  """Serve the writer twice (batching on / off), alternate the load runs, print a JSON summary."""
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", default=None)
  p.add_argument("--clients", type=int, default=8)
  p.add_argument("--requests", type=int, default=3)
  p.add_argument("--rounds", type=int, default=2, help="alternations of batched / unbatched")
  args = p.parse_args()
  writer = writer_lib.load_writer(args.workdir)
  results = {"batched": [], "unbatched": []}
  servers = {}
  for name, wait in (("batched", 0.02), ("unbatched", 0.0)):
    service = app_lib.Service(writer, wait_s=wait)
    if name == "unbatched":
      service.batched.batch_lines = app_lib.BATCH_LINES  # same padded call size: only the gathering differs
    port = _port()
    srv = uvicorn.Server(uvicorn.Config(app_lib.make_app(service), host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
      time.sleep(0.05)
    servers[name] = (f"http://127.0.0.1:{port}", service)
    run_load(servers[name][0], 1, 1)  # compile
  for _ in range(args.rounds):
    for name, (url, service) in servers.items():
      calls = service.batched.calls
      r = run_load(url, args.clients, args.requests)
      r["sampler_calls"] = service.batched.calls - calls
      results[name].append(r)
      print(name, json.dumps(r), flush=True)
  print(
    json.dumps(
      {
        k: {m: float(np.median([r[m] for r in v])) for m in ("lines_per_s", "p50_s", "p95_s")}
        for k, v in results.items()
      }
    )
  )


if __name__ == "__main__":
  main()
