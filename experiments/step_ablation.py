"""Where a paper-size synthesis train step spends its time: the step timed beside variants that shrink one part.

  python experiments/step_ablation.py            # B=32, T=600, U=40, H=400, fp32; ~5 minutes on 2 cores

Variants (each compiled once, all alternated step by step in one process, median of --repeats): the default step;
one mixture component (M=1: the MDN loss's share); one window Gaussian (K=1) and 8 characters (U=8: the window's
share); one layer (layer 1 and the window alone: each upper layer's share is the rest over two); the forward pass
and loss alone (no gradient, no update).
"""

import argparse
import os
import sys
import time

import jax
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchmark

from handwriting_jax.training import step as step_lib


def _runner(args, model_fields: dict, chars: int, forward_only: bool = False):
  """A closure running one compiled train step (or forward pass) of the paper config, `model_fields` overridden,
  on a fixed batch."""
  cfg = benchmark.make_config(args, "synthesis")
  cfg.model.update(model_fields)
  alphabet = len(benchmark.ALPHABET) + 2
  batch = benchmark.make_batch(args.batch, args.length, chars, alphabet)
  if forward_only:
    graphdef, params = nnx.split(benchmark.build_network(cfg, alphabet), nnx.Param)
    fwd = jax.jit(lambda p, b: step_lib.batch_loss(graphdef, p, b)[0]).lower(params, batch).compile()
    return lambda: jax.block_until_ready(fwd(params, batch))
  compiled, state, _, _ = benchmark.compiled_train_step(cfg, batch, alphabet)
  box = [state]

  def run():
    box[0], metrics = compiled(box[0], batch)
    jax.block_until_ready(metrics)

  return run


def main() -> None:
  """Time every variant alternately and print the medians with their share of the default step."""
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--length", type=int, default=600)
  p.add_argument("--chars", type=int, default=40)
  p.add_argument("--hidden", type=int, default=400)
  p.add_argument("--repeats", type=int, default=5)
  a = p.parse_args()
  a.matmul_size = 2048

  runs = {
    "default": _runner(a, {}, a.chars),
    "M=1": _runner(a, {"num_mixtures": 1}, a.chars),
    "K=1": _runner(a, {"num_window_gaussians": 1}, a.chars),
    "U=8": _runner(a, {}, 8),
    "1 layer": _runner(a, {"num_layers": 1}, a.chars),
    "forward only": _runner(a, {}, a.chars, forward_only=True),
  }
  for run in runs.values():
    run()  # warm-up
  times = {k: [] for k in runs}
  for _ in range(a.repeats):
    for k, run in runs.items():
      t0 = time.perf_counter()
      run()
      times[k].append(time.perf_counter() - t0)
  base = float(np.median(times["default"]))
  for k, v in times.items():
    print(f"{k:14s} {np.median(v):7.3f} s/step  ({np.median(v) / base:.2f} of the default)")


if __name__ == "__main__":
  main()
