"""Where a train step's time goes, kernel by kernel, and what its matmuls alone would cost.

  python experiments/step_profile.py                  # paper-size synthesis, B=32, T=600 (3-4 min on 2 cores)
  python experiments/step_profile.py --peer=torch --mode=prediction    # and the PyTorch peer in every round
  python experiments/step_profile.py --hidden=128 --length=267 --chars=30 --mixtures=10 --gaussians=6   # iam_small

Two views of one compiled train step (`benchmark.compiled_train_step`, the benchmark's random batch):
1. a per-kernel trace (XLA's CPU runtime with `--xla_cpu_enable_xprof_traceme=true`, read from the profiler's
   Perfetto JSON): every kernel's time and calls per step, grouped as matmul kernels inside the time loops (the
   thin per-step ones), matmul kernels outside them (the hoisted ones) and everything else. Tracing every kernel
   slows the step (2-3x at the paper size, more for smaller networks), so read these as shares, not as times;
2. the **matmul floor**: every matmul kernel of the compiled step (shapes and dimension numbers read from its HLO)
   timed alone, untraced, as many times per step as the trace counted it (the per-step ones chained in a `lax.scan`
   of that length, as the step runs them), summed. The step cannot run faster than its own matmuls at these shapes
   on this machine, so step time / floor is the part that element-wise work and per-kernel overhead add. The step,
   the floor and a large matmul (the benchmark's reference) are timed alternately, --rounds times, untraced.

With `--peer=torch` every round also runs the PyTorch peer's step (`experiments/torch_peer.py`, as
`benchmark.py --peer=torch` does), so the speed-up over the peer that this machine's matmuls allow at all (peer /
floor) is measured in the same run.

CPU only (the trace's kernel names are XLA CPU's); absolute times swing on a shared machine, the ratios less.
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchmark

_SHAPE = r"f32\[([0-9,]*)\]"
# runtime events and loops (which contain kernels): not kernels
_NOT_KERNELS = (
  "$",
  "ThunkExecutor",
  "Slinky",
  "ThreadpoolListener",
  "end:",
  "Pjit",
  "PjRt",
  "CommonPjRt",
  "ParseArguments",
  "while",
)
_DIMS = ("lhs_batch_dims", "lhs_contracting_dims", "rhs_batch_dims", "rhs_contracting_dims")


def parse_args(argv=None) -> argparse.Namespace:
  """Command-line flags (see --help)."""
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--mode", default="synthesis", choices=["synthesis", "prediction"])
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--length", type=int, default=600)
  p.add_argument("--chars", type=int, default=40)
  p.add_argument("--hidden", type=int, default=400)
  p.add_argument("--mixtures", type=int, default=20)
  p.add_argument("--gaussians", type=int, default=10)
  p.add_argument("--rounds", type=int, default=5, help="untraced rounds of (step, its matmuls alone), alternated")
  p.add_argument("--traced", type=int, default=2, help="traced steps")
  p.add_argument("--top", type=int, default=25, help="kernels listed")
  p.add_argument("--matmul_size", type=int, default=2048, help="N of the N x N x N reference matmul")
  p.add_argument(
    "--peer",
    default="",
    choices=["", "torch"],
    help="also time the PyTorch peer (experiments/torch_peer.py) in every round, fp32",
  )
  return p.parse_args(argv)


def _shape(text: str) -> tuple[int, ...]:
  return tuple(int(d) for d in text.split(",") if d)


def _dims(line: str) -> tuple[tuple[int, ...], ...]:
  """The four dimension-number lists of an HLO `dot` line (missing ones empty)."""
  out = []
  for key in _DIMS:
    m = re.search(key + r"=\{([0-9,]*)\}", line)
    out.append(_shape(m.group(1)) if m else ())
  return tuple(out)


def dot_kernels(hlo: str) -> dict[str, tuple]:
  """Kernel name -> (lhs shape, rhs shape, dimension numbers) for every float32 matmul kernel of an optimised HLO
  module: top-level `dot`s and fusions with a `dot` inside (its operands' shapes as the dot sees them)."""
  computations = {}  # fused computation name -> (shapes of its parameters and instructions, its first dot line)
  for m in re.finditer(r"^%([\w.\-]+) \(([^)]*)\) -> [^{]*\{\n(.*?)\n\}", hlo, re.S | re.M):
    shapes = dict(re.findall(r"([\w.\-]+): " + _SHAPE, m.group(2)))
    shapes.update(re.findall(r"%([\w.\-]+) = " + _SHAPE, m.group(3)))
    dot = next((row for row in m.group(3).splitlines() if " dot(" in row), None)
    computations[m.group(1)] = (shapes, dot)
  shapes = dict(re.findall(r"%([\w.\-]+) = " + _SHAPE, hlo))
  fused = set(re.findall(r" fusion\(.*calls=%([\w.\-]+)", hlo))  # computations that are some kernel's inside
  kernels, inside = {}, False
  for line in hlo.splitlines():
    start = re.match(r"(?:ENTRY )?%([\w.\-]+) ", line)
    if start:
      inside = start.group(1) in fused
    m = None if inside else re.match(r"\s*(?:ROOT )?%([\w.\-]+) = f32\[[0-9,]*\]\S* (dot|fusion)\(", line)
    if not m:
      continue
    name, kind = m.groups()
    if kind == "dot":
      scope, dot = shapes, line
    else:
      called = re.search(r"calls=%([\w.\-]+)", line)
      scope, dot = computations.get(called.group(1), ({}, None)) if called else ({}, None)
    ops = re.search(r" dot\(%([\w.\-]+), %([\w.\-]+)\)", dot) if dot else None
    if ops and ops.group(1) in scope and ops.group(2) in scope:
      kernels[name] = (_shape(scope[ops.group(1)]), _shape(scope[ops.group(2)]), _dims(dot))
  return kernels


def trace_kernels(trace_dir: str, steps: int) -> dict[str, tuple[float, float]]:
  """Kernel name -> (microseconds per step, calls per step) from the profiler's Perfetto JSON in `trace_dir`."""
  path = glob.glob(os.path.join(trace_dir, "**", "*.json.gz"), recursive=True)[0]
  with gzip.open(path) as f:
    events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  total, calls = collections.Counter(), collections.Counter()
  for e in events:
    name = e.get("name", "")
    if e.get("ph") != "X" or name.startswith(_NOT_KERNELS):
      continue
    total[name] += e["dur"]
    calls[name] += 1
  return {k: (total[k] / steps, calls[k] / steps) for k in total}


def dot_runner(lhs, rhs, dims, calls: int, chained: bool):
  """A closure returning the seconds of `calls` runs of one matmul kernel alone: chained in a `lax.scan` of that
  length (each step a new left operand, as inside the step's time loop) when `chained`, else one call timed and
  multiplied. Compiled and warmed up here."""
  dn = ((dims[1], dims[3]), (dims[0], dims[2]))
  rng = np.random.default_rng(0)
  rhs_a = jnp.asarray(rng.standard_normal(rhs, np.float32))
  if chained:
    xs = jnp.asarray(rng.standard_normal((calls,) + lhs, np.float32))
    out = jax.eval_shape(lambda a, b: jax.lax.dot_general(a, b, dn), xs[0], rhs_a)
    fn = jax.jit(
      lambda xs, b: jax.lax.scan(
        lambda acc, x: (acc + jax.lax.dot_general(x, b, dn), None), jnp.zeros(out.shape, out.dtype), xs
      )[0]
    )
    args, times = (xs, rhs_a), 1
  else:
    fn, args, times = (
      jax.jit(lambda a, b: jax.lax.dot_general(a, b, dn)),
      (jnp.asarray(rng.standard_normal(lhs, np.float32)), rhs_a),
      calls,
    )
  jax.block_until_ready(fn(*args))

  def run() -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return (time.perf_counter() - t0) * times

  return run


def main(argv=None) -> None:
  """Profile one compiled train step and print the per-kernel table and the matmul floor."""
  args = parse_args(argv)
  # XLA reads its flags when the backend starts (the first computation), so setting them here still takes effect
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()
  cfg = benchmark.make_config(args, args.mode)
  cfg.model.num_mixtures, cfg.model.num_window_gaussians = args.mixtures, args.gaussians
  alphabet = len(benchmark.ALPHABET) + 2
  batch = benchmark.make_batch(args.batch, args.length, args.chars, alphabet)
  compiled, state, _, _ = benchmark.compiled_train_step(cfg, batch, alphabet)
  box = [state]

  def run():
    box[0], metrics = compiled(box[0], batch)
    jax.block_until_ready(metrics)

  run()
  with tempfile.TemporaryDirectory() as trace_dir:
    t0 = time.perf_counter()
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(args.traced):
        run()
    traced = (time.perf_counter() - t0) / args.traced
    kernels = trace_kernels(trace_dir, args.traced)
  dots = dot_kernels(compiled.as_text())

  chunk = cfg.model.remat_chunk if cfg.model.remat_chunk > 0 else args.length
  loop_calls = -(-args.length // chunk) + 1  # a kernel run more often than once per time chunk is inside a loop
  groups = collections.Counter()
  for name, (us, calls) in kernels.items():
    kind = "matmul" if name in dots else "other"
    groups[f"{kind}, {'inside' if calls >= loop_calls else 'outside'} the time loops"] += us
  traced_sum = sum(groups.values())
  print(
    f"{args.mode}, B={args.batch} T={args.length} H={args.hidden}: {traced:.3f} s/step traced "
    f"({traced_sum / 1e6:.3f} s in kernels)"
  )
  for g, us in sorted(groups.items(), key=lambda kv: -kv[1]):
    print(f"  {g:38s} {us / 1e6:7.3f} s/step traced  ({us / traced_sum:5.1%} of kernel time)")
  print(f"  top {args.top} kernels (traced ms/step, calls/step, us/call, matmul shapes):")
  for name, (us, calls) in sorted(kernels.items(), key=lambda kv: -kv[1][0])[: args.top]:
    shape = f"  {dots[name][0]} x {dots[name][1]}" if name in dots else ""
    print(f"    {us / 1e3:8.1f} {calls:7.0f} {us / calls:9.1f}  {name}{shape}")

  floors = []  # (runner, inside a time loop) per matmul kernel
  for name, (lhs, rhs, dims) in dots.items():
    calls = round(kernels.get(name, (0.0, 0.0))[1])
    if calls:
      floors.append((dot_runner(lhs, rhs, dims, calls, chained=calls >= loop_calls), calls >= loop_calls))
  if not floors:
    sys.exit(
      "error: no matmul kernel of the step appeared in the trace; step_profile reads XLA's CPU kernel trace, "
      "so run it on a CPU (JAX_PLATFORMS=cpu)"
    )
  peer = benchmark.make_peer_step(args, args.mode, cfg) if args.peer else None
  if peer:
    peer()  # warm-up
  ref = benchmark.ReferenceMatmul(args.matmul_size)
  fwd, _ = benchmark.flops_per_step(
    args.mode, args.hidden, cfg.model.num_layers, args.mixtures, args.gaussians, alphabet, args.chars
  )
  gflop = 3 * fwd * args.batch * args.length / 1e9  # the benchmark's analytic count of one train step
  rounds, refs = [], []  # (step, floor, floor inside the loops, peer step): alternated, untraced
  for _ in range(args.rounds):
    refs.append(ref.gflops())
    t0 = time.perf_counter()
    run()
    step = time.perf_counter() - t0
    alone = [(f(), inside) for f, inside in floors]
    t0 = time.perf_counter()
    if peer:
      peer()
    rounds.append((step, sum(t for t, _ in alone), sum(t for t, inside in alone if inside), time.perf_counter() - t0))
  rounds = np.array(rounds)
  step, floor, inside, peer_step = np.median(rounds, axis=0)
  ratios = rounds[:, 0] / rounds[:, 1]
  print(
    f"untraced, {args.rounds} rounds alternated: step {step:.3f} s, its matmul kernels alone (the floor) "
    f"{floor:.3f} s ({inside:.3f} s inside the time loops); step / floor median {np.median(ratios):.2f} (rounds "
    f"{ratios.min():.2f}-{ratios.max():.2f}): element-wise work and per-kernel overhead are about "
    f"{1 - 1 / np.median(ratios):.0%} of the step"
  )
  refs = np.array(refs)
  print(
    f"against the {args.matmul_size}^3 matmul timed in each round ({np.median(refs):.0f} GFLOP/s): the step runs "
    f"at {np.median(gflop / rounds[:, 0] / refs):.2f} of it, its matmul floor at "
    f"{np.median(gflop / rounds[:, 1] / refs):.2f} ({gflop:.1f} GFLOP per step, benchmark.py's count)"
  )
  if peer:
    print(
      f"PyTorch peer {peer_step:.3f} s/step: speed-up over it {np.median(rounds[:, 3] / rounds[:, 0]):.2f}x now, "
      f"{np.median(rounds[:, 3] / rounds[:, 1]):.2f}x at most with no work but the matmuls (peer / floor, "
      f"median of the rounds)"
    )


if __name__ == "__main__":
  main()
