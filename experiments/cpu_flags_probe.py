"""Which XLA CPU settings train fastest here: batch split over host "devices", other matmul libraries, fast math.

  python experiments/cpu_flags_probe.py                      # the iam_small network, B=32, T=267, 2 rounds
  python experiments/cpu_flags_probe.py --hidden=400 --length=600 --mixtures=20 --gaussians=10   # paper size
  python experiments/cpu_flags_probe.py --configs="default;xnnpack" --extra="mine=--xla_cpu_foo=1"

On a CPU, one XLA device runs each op of a time step on the shared intra-op thread pool, and the per-step matmuls of
a small network ([32, 128] x [128, 512]) are too thin to split well over the cores. `2 devices`
(`--xla_force_host_platform_device_count=2`) runs the data-parallel train step (`parallel.DataParallel`, the jit
path) with B/2 lines per device, the devices' programs side by side, meeting only for the gradient all-reduce; the
other configurations change XLA's matmul library or math. Each configuration runs in its own subprocess (XLA reads
its flags at start-up); the configurations are alternated round by round, and each run prints the median step time
of the same synthesis train step (forward, backward, update) and a 1024^3 matmul rate measured in the same process.
Only the ratio of step times within a round means anything on a shared machine.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

CONFIGS = {  # name -> XLA_FLAGS
  "default": "",
  "2 devices": "--xla_force_host_platform_device_count=2",
  "2 devices + 1-thread Eigen": "--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false",
  "xnnpack": "--xla_cpu_use_xnnpack=true",
  "onednn": "--xla_cpu_use_onednn=true",
  "fast math": "--xla_cpu_enable_fast_math=true",
  "concurrency scheduler": "--xla_cpu_enable_concurrency_optimized_scheduler=true",
}


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--length", type=int, default=267, help="time steps per line (iam_small: 800 raw points / 3)")
  p.add_argument("--chars", type=int, default=30)
  p.add_argument("--hidden", type=int, default=128)
  p.add_argument("--mixtures", type=int, default=10)
  p.add_argument("--gaussians", type=int, default=6)
  p.add_argument("--repeats", type=int, default=8)
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--configs", default=";".join(CONFIGS), help="names of CONFIGS, separated by ;")
  p.add_argument("--extra", action="append", default=[], help="NAME=XLA_FLAGS: one more configuration to time")
  p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  return p.parse_args(argv)


def child(args) -> None:
  """Time the data-parallel train step over every device of this process; print one JSON line."""
  import jax

  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import benchmark

  from handwriting_jax.config import defaults
  from handwriting_jax.model import networks
  from handwriting_jax.training import (
    optim,
    parallel,
  )
  from handwriting_jax.training import step as step_lib

  cfg = defaults.apply_variant(defaults.base_config("synthesis"), "small")
  cfg.model.hidden_size, cfg.model.num_mixtures = args.hidden, args.mixtures
  cfg.model.num_window_gaussians, cfg.data.batch_size = args.gaussians, args.batch
  alphabet = len(benchmark.ALPHABET) + 2
  net = networks.build_network(cfg.model, alphabet, cfg.seed)
  tx = optim.make_optimizer(cfg.optim, 1000)
  graphdef, state = step_lib.create_train_state(net, tx)
  dp = parallel.DataParallel(cfg, graphdef, tx)
  state = dp.put_state(state)
  batch = benchmark.make_batch(args.batch, args.length, args.chars, alphabet)
  for _ in range(2):  # compile and warm up
    state, metrics = dp.train_step(state, batch)
    jax.block_until_ready(metrics)
  ref = benchmark.ReferenceMatmul(1024)
  times, rates = [], []
  for _ in range(args.repeats):
    rates.append(ref.gflops())
    t0 = time.perf_counter()
    state, metrics = dp.train_step(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  print(
    json.dumps(
      {
        "devices": jax.device_count(),
        "step_s": float(np.median(times)),
        "matmul_gflops": float(np.median(rates)),
        "loss": float(metrics["loss"]),
      }
    )
  )


def main(argv=None) -> None:
  args = parse_args(argv)
  if args.child:
    child(args)
    return
  configs = dict(CONFIGS)
  for extra in args.extra:
    name, sep, flags = extra.partition("=")
    if not sep:
      sys.exit(f"error: --extra={extra!r}: expected NAME=XLA_FLAGS")
    configs[name] = flags
  names = [n.strip() for n in args.configs.split(";") if n.strip()] + [e.partition("=")[0] for e in args.extra]
  unknown = [n for n in names if n not in configs]
  if unknown:
    sys.exit(f"error: --configs: unknown {unknown}; expected some of {list(CONFIGS)}")
  passthrough = [a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith(("--configs", "--extra"))]
  print(
    f"synthesis train step, B={args.batch} T={args.length} U={args.chars} H={args.hidden} "
    f"M={args.mixtures} K={args.gaussians}; median of {args.repeats} steps per run"
  )
  for r in range(args.rounds):
    base = None
    for name in names:
      env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + configs[name]).strip())
      out = subprocess.run(
        [sys.executable, __file__, "--child", *passthrough], env=env, capture_output=True, text=True, check=False
      )
      if out.returncode:
        print(f"round {r}: {name}: failed\n{out.stderr[-2000:]}")
        continue
      res = json.loads(out.stdout.strip().splitlines()[-1])
      base = base or res["step_s"]
      print(
        f"round {r}: {name:28s} {res['step_s']:.3f} s/step  speed-up {base / res['step_s']:.2f}x  "
        f"(1024^3 matmul {res['matmul_gflops']:.0f} GFLOP/s, loss {res['loss']:.2f})",
        flush=True,
      )


if __name__ == "__main__":
  main()
