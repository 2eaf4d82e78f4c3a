"""Training and sampling speed of the paper-size networks, measured against a large matmul in the same run.

  python experiments/benchmark.py --out=benchmark.json            # paper size, B=32, T=600, U=40 (~5-10 min, CPU)
  python experiments/benchmark.py --quick                          # smoke run (< 1 min)
  python experiments/benchmark.py --peer=torch                     # and the PyTorch peer, alternated step by step
  python experiments/benchmark.py --peer=torch --variants=prediction:nopeep+normclip,nopeep+normclip  # like for like

For each network (prediction, synthesis) it reports the compile time of the jitted train step
(`handwriting_jax.training.step.train_step`: forward, backward, optimiser update), the median step time,
timestep-samples
per second, the achieved GFLOP/s from an analytic FLOP count (printed), the GFLOP/s of a large float32 matmul timed
right before each step, and the ratio of the two (the median of the per-step ratios, robust to a shared machine).
It also reports the peak memory of one training step at B=64, T=1200 with and without remat, each in a fresh
subprocess (peak RSS on CPU, the device's peak bytes in use on GPU), and the sampling throughput of 64 lines x 700
points in one compiled call (`handwriting_jax.model.sampling`). A table goes to stdout, everything to `--out` (JSON).

With `--peer=torch` (torch importable: `pip install torch==2.13.0`, never a project dependency) each timed row also
runs the PyTorch peer of the same network and sizes (`experiments/torch_peer.py`, fp32) in the same process, the two
alternated step by step (matmul, project step, peer step, ...), and reports the peer's median step time and the
speed-up: the median of the per-pair ratios peer time / project time.
"""

import argparse
import functools
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

ALPHABET = " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,'-"  # 57 characters + padding + unknown = 59


def parse_args(argv=None) -> argparse.Namespace:
  """Command-line flags (see --help)."""
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--modes", default="prediction,synthesis", help="networks to time (comma-separated)")
  p.add_argument("--batch", type=int, default=32, help="lines per training batch (B)")
  p.add_argument("--length", type=int, default=600, help="time steps per line (T)")
  p.add_argument("--chars", type=int, default=40, help="characters per line (U), synthesis")
  p.add_argument("--hidden", type=int, default=400, help="LSTM cells per layer (paper: 400)")
  p.add_argument("--repeats", type=int, default=5, help="timed training steps (after one warm-up step)")
  p.add_argument("--matmul_size", type=int, default=2048, help="N of the N x N x N float32 reference matmul")
  p.add_argument(
    "--variants",
    default="",
    help="extra variants to time, comma-separated, of the synthesis network unless prefixed `prediction:`: "
    "autodiff (plain grad of lax.scan: the reference scans of handwriting_jax/model/reference.py), "
    "remat, bf16, unroll2, unroll4, adaptive and fixed (weight noise), nopeep (no peephole weights) and normclip "
    "(global-norm clipping at 10 instead of Graves' clipping): nopeep+normclip is the peer's network; join with +",
  )
  p.add_argument("--memory_batch", type=int, default=64, help="B of the peak-memory step")
  p.add_argument("--memory_length", type=int, default=1200, help="T of the peak-memory step")
  p.add_argument("--memory_mode", default="synthesis", help="network of the peak-memory step")
  p.add_argument("--no_memory", action="store_true", help="skip the peak-memory subprocesses")
  p.add_argument("--sample_lines", type=int, default=64, help="lines sampled at once")
  p.add_argument("--sample_points", type=int, default=700, help="points sampled per line")
  p.add_argument("--no_sample", action="store_true", help="skip the sampling throughput")
  p.add_argument(
    "--peer",
    default="",
    choices=["", "torch"],
    help="also time the PyTorch peer (experiments/torch_peer.py) alternated with each row",
  )
  p.add_argument("--quick", action="store_true", help="smoke run: small sizes, one repeat (< 1 minute)")
  p.add_argument("--out", default="", help="write all figures to this JSON file")
  p.add_argument("--xla_flags", default=None, help="XLA_FLAGS for this run (set before JAX starts)")
  p.add_argument("--_memory_child", default="", help=argparse.SUPPRESS)  # "remat" | "plain": one step, print JSON
  args = p.parse_args(argv)
  if args.quick:
    args.batch, args.length, args.chars, args.hidden = 8, 64, 12, 64
    args.repeats, args.matmul_size = 2, 512
    args.memory_batch, args.memory_length = 16, 128
    args.sample_lines, args.sample_points = 8, 50
  return args


def flops_per_step(
  mode: str, hidden: int, layers: int, mixtures: int, gaussians: int, alphabet: int, chars: int
) -> tuple[int, str]:
  """Analytic matmul FLOPs of one forward time step of one line, and the formula as text.

  LSTM layer n: 2 (I_n + H) 4H (input and recurrent matmuls, I_n the layer input width); output layer 2 (N H) Y
  with Y = 6M + 1; synthesis window: 2 H 3K (its projection) + 2 U A (w_t = Σ_u φ(t, u) c_u). Element-wise work
  (gates, exp, the MDN loss) is not counted. Training = 3 x forward (forward, then two matmuls per matmul backward).
  """
  h, y = hidden, 6 * mixtures + 1
  a = alphabet if mode == "synthesis" else 0
  ins = [3 + a] + [3 + h + a] * (layers - 1)
  lstm = sum(2 * (i + h) * 4 * h for i in ins)
  out = 2 * layers * h * y
  win = (2 * h * 3 * gaussians + 2 * chars * a) if mode == "synthesis" else 0
  text = (
    "fwd/line/step = sum_n 2*(I_n+H)*4H + 2*N*H*Y"
    + (" + 2*H*3K + 2*U*A" if win else "")
    + f" = {' + '.join(f'2*({i}+{h})*{4 * h}' for i in ins)} + 2*{layers}*{h}*{y}"
    + (f" + 2*{h}*{3 * gaussians} + 2*{chars}*{a}" if win else "")
    + f" = {lstm + out + win:,}; train = 3 x fwd x B x T"
  )
  return lstm + out + win, text


def make_config(args, mode: str, variant: str = ""):
  """Paper configuration of `mode`, at the benchmark's hidden size, with a variant applied."""
  from handwriting_jax.config import defaults

  cfg = defaults.base_config(mode)
  cfg.model.hidden_size = args.hidden
  cfg.model.scan_unroll = 1
  for v in filter(None, variant.split("+")):
    if v == "autodiff":
      continue  # not a config field: build_network picks the reference network
    elif v == "remat":
      cfg.model.remat = True
    elif v == "bf16":
      cfg.model.compute_dtype = "bfloat16"
    elif v in ("adaptive", "fixed"):  # weight noise (weight_noise.py): one draw per batch, L_C for adaptive
      cfg.optim.weight_noise = v
    elif v == "nopeep":
      cfg.model.peepholes = False
    elif v == "normclip":  # as the peer: the gradient rescaled to norm 10, no clipping inside backprop
      cfg.optim.clip_mode, cfg.optim.max_grad_norm = "global_norm", 10.0
    elif v.startswith("unroll"):
      cfg.model.scan_unroll = int(v[len("unroll") :])
    else:
      raise ValueError(f"--variants: unknown variant {v!r}")
  return cfg


def make_batch(batch: int, length: int, chars: int, alphabet: int, seed: int = 0) -> dict:
  """A random, fully unmasked training batch of the fixed shapes."""
  rng = np.random.default_rng(seed)
  inputs = rng.normal(size=(batch, length, 3)).astype(np.float32)
  inputs[..., 2] = rng.random((batch, length)) < 0.05
  targets = np.concatenate([inputs[:, 1:], inputs[:, :1]], axis=1)
  return {
    "inputs": inputs,
    "targets": targets,
    "mask": np.ones((batch, length), np.float32),
    "chars": rng.integers(2, alphabet, size=(batch, chars)).astype(np.int32),
    "char_mask": np.ones((batch, chars), np.float32),
  }


def build_network(cfg, alphabet: int, variant: str = ""):
  """The network of `cfg`; with the `autodiff` variant the plain-autodiff reference (model/reference.py)."""
  from handwriting_jax.model import networks, reference

  lib = reference if "autodiff" in variant.split("+") else networks
  return lib.build_network(cfg.model, alphabet, cfg.seed)


def compiled_train_step(cfg, batch: dict, alphabet: int, variant: str = ""):
  """(compiled jitted train step, initial state, compile seconds, parameters) for `cfg` (and the network of
  `variant`) on batches shaped like `batch`."""
  import jax

  from handwriting_jax.model import networks
  from handwriting_jax.training import optim
  from handwriting_jax.training import step as step_lib

  net = build_network(cfg, alphabet, variant)
  tx = optim.make_optimizer(cfg.optim, 1000)
  noise = step_lib.noise_settings(cfg, 10_000)
  graphdef, state = step_lib.create_train_state(net, tx, noise)
  fn = jax.jit(functools.partial(step_lib.train_step, graphdef, tx, noise=noise), donate_argnums=0)
  t0 = time.perf_counter()
  compiled = fn.lower(state, batch).compile()
  return compiled, state, time.perf_counter() - t0, networks.count_params(net)


class ReferenceMatmul:
  """A large float32 matmul, timed on demand: the machine's attainable matmul GFLOP/s right now."""

  def __init__(self, n: int):
    import jax
    import jax.numpy as jnp

    self.n = n
    key_a, key_b = jax.random.split(jax.random.key(0))
    self.a = jax.random.normal(key_a, (n, n), jnp.float32)
    self.b = jax.random.normal(key_b, (n, n), jnp.float32)
    self.fn = jax.jit(jnp.matmul)
    self.fn(self.a, self.b).block_until_ready()

  def gflops(self) -> float:
    """GFLOP/s of one run (best of two, to skip a one-off stall)."""
    best = np.inf
    for _ in range(2):
      t0 = time.perf_counter()
      self.fn(self.a, self.b).block_until_ready()
      best = min(best, time.perf_counter() - t0)
    return 2 * self.n**3 / best / 1e9


def time_training(args, mode: str, variant: str, ref: ReferenceMatmul) -> dict:
  """Compile and time the train step of `mode`/`variant`; per step, time the reference matmul right before it."""
  import jax

  cfg = make_config(args, mode, variant)
  alphabet = len(ALPHABET) + 2
  batch = make_batch(args.batch, args.length, args.chars, alphabet)
  compiled, state, compile_s, params = compiled_train_step(cfg, batch, alphabet, variant)
  state, metrics = compiled(state, batch)  # warm-up
  jax.block_until_ready(metrics)
  fwd, formula = flops_per_step(
    mode,
    cfg.model.hidden_size,
    cfg.model.num_layers,
    cfg.model.num_mixtures,
    cfg.model.num_window_gaussians,
    alphabet,
    args.chars,
  )
  train_flops = 3 * fwd * args.batch * args.length
  peer_step = make_peer_step(args, mode, cfg) if args.peer else None
  if peer_step is not None:
    peer_step()  # warm-up
  times, refs, peer_times = [], [], []
  for _ in range(args.repeats):
    refs.append(ref.gflops())
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
    if peer_step is not None:
      t0 = time.perf_counter()
      peer_step()
      peer_times.append(time.perf_counter() - t0)
  times, refs = np.array(times), np.array(refs)
  achieved = train_flops / times / 1e9
  out = {
    "mode": mode,
    "variant": variant or "default",
    "params": params,
    "compile_s": compile_s,
    "step_s": float(np.median(times)),
    "step_s_all": times.tolist(),
    "samples_per_s": args.batch * args.length / float(np.median(times)),
    "train_gflop": train_flops / 1e9,
    "gflops": float(np.median(achieved)),
    "matmul_gflops": float(np.median(refs)),
    "ratio": float(np.median(achieved / refs)),
    "loss": float(metrics["loss"]),
    "flop_formula": formula,
  }
  if peer_times:
    peer_times = np.array(peer_times)
    out.update(
      peer=args.peer,
      peer_step_s=float(np.median(peer_times)),
      peer_step_s_all=peer_times.tolist(),
      speedup_vs_peer=float(np.median(peer_times / times)),
    )
  return out


def make_peer_step(args, mode: str, cfg):
  """The PyTorch peer's training step (experiments/torch_peer.py) at the benchmark's sizes, fp32, all cores."""
  try:
    import torch
  except ImportError:
    sys.exit("--peer=torch needs PyTorch: pip install torch==2.13.0 (never a project dependency)")
  here = os.path.dirname(os.path.abspath(__file__))
  if here not in sys.path:
    sys.path.insert(0, here)
  import torch_peer

  torch.set_num_threads(os.cpu_count() or 1)
  m = cfg.model
  return torch_peer.make_train_step(
    mode,
    args.batch,
    args.length,
    args.chars,
    m.hidden_size,
    m.num_layers,
    m.num_mixtures,
    m.num_window_gaussians,
    len(ALPHABET) + 2,
  )


def memory_child(args) -> None:
  """One training step at the memory size in this (fresh) process; print its peak memory as JSON."""
  import jax

  mode = args.memory_mode
  cfg = make_config(args, mode, "remat" if args._memory_child == "remat" else "")
  alphabet = len(ALPHABET) + 2
  batch = make_batch(args.memory_batch, args.memory_length, args.chars, alphabet)
  rss_before = _peak_rss_bytes()
  compiled, state, _, _ = compiled_train_step(cfg, batch, alphabet)
  analysis = compiled.memory_analysis()
  rss_compiled = _current_rss_bytes()
  t0 = time.perf_counter()
  state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  out = {
    "remat": args._memory_child == "remat",
    "mode": mode,
    "batch": args.memory_batch,
    "length": args.memory_length,
    "step_s": time.perf_counter() - t0,
    "peak_rss_bytes": _peak_rss_bytes(),
    "rss_after_import_bytes": rss_before,
    "rss_before_step_bytes": rss_compiled,
    "backend": jax.default_backend(),
  }
  if analysis is not None:
    out["xla_temp_bytes"] = int(analysis.temp_size_in_bytes)
    out["xla_argument_bytes"] = int(analysis.argument_size_in_bytes)
  stats = jax.local_devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    out["device_peak_bytes"] = int(stats["peak_bytes_in_use"])
  print("MEMORY_JSON " + json.dumps(out), flush=True)


def _proc_status_bytes(key: str) -> int | None:
  """A `kB` field of /proc/self/status (VmHWM, VmRSS) in bytes; None where /proc is missing."""
  try:
    with open("/proc/self/status", encoding="ascii") as f:
      for line in f:
        if line.startswith(key + ":"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def _peak_rss_bytes() -> int:
  """Peak resident set size of this process (VmHWM; ru_maxrss where /proc is missing)."""
  peak = _proc_status_bytes("VmHWM")
  if peak is not None:
    return peak
  scale = 1 if platform.system() == "Darwin" else 1024
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _current_rss_bytes() -> int:
  """Current resident set size (VmRSS), 0 where /proc is missing."""
  return _proc_status_bytes("VmRSS") or 0


def measure_memory(args, which: str) -> dict:
  """Run `memory_child` in a fresh interpreter (so the peak belongs to that one step) and parse its JSON."""
  cmd = [
    sys.executable,
    os.path.abspath(__file__),
    f"--_memory_child={which}",
    f"--hidden={args.hidden}",
    f"--chars={args.chars}",
    f"--memory_batch={args.memory_batch}",
    f"--memory_length={args.memory_length}",
    f"--memory_mode={args.memory_mode}",
  ]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=os.environ.copy())
  for line in proc.stdout.splitlines():
    if line.startswith("MEMORY_JSON "):
      return json.loads(line[len("MEMORY_JSON ") :])
  raise RuntimeError(f"memory subprocess ({which}) failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def time_sampling(args, mode: str) -> dict:
  """Sample `sample_lines` x `sample_points` in one compiled call (`model.sampling`); points per second."""
  import jax

  from handwriting_jax.data.alphabet import Alphabet
  from handwriting_jax.model import sampling as sample_lib

  cfg = make_config(args, mode)
  alphabet = Alphabet(ALPHABET)
  net = build_network(cfg, alphabet.size)
  words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "writing"]
  words += ["handwriting", "in", "jax"]
  texts = [" ".join(words[(i + j) % len(words)] for j in range(6))[: args.chars] for i in range(args.sample_lines)]
  kwargs = {"num_steps": args.sample_points, "bias": 0.5}
  if mode == "synthesis":
    kwargs.update(texts=texts, alphabet=alphabet, max_steps_per_char=1e6)
  else:
    kwargs.update(num_lines=args.sample_lines, max_steps=args.sample_points)
  t0 = time.perf_counter()
  sample_lib.sample(net, jax.random.key(0), **kwargs)
  first = time.perf_counter() - t0
  runs = []
  for seed in (1, 2):
    t0 = time.perf_counter()
    out = sample_lib.sample(net, jax.random.key(seed), **kwargs)
    runs.append(time.perf_counter() - t0)
  points = args.sample_lines * args.sample_points
  return {
    "mode": mode,
    "lines": args.sample_lines,
    "points_per_line": args.sample_points,
    "first_call_s": first,
    "call_s": float(np.median(runs)),
    "points_per_s": points / float(np.median(runs)),
    "valid_points": int(out.lengths_B.sum()),
    "compiled_calls": 1,
  }


def print_table(results: dict) -> None:
  """Human-readable summary."""
  print("\n== training step (" + results["config"] + ")")
  peer = any("peer_step_s" in r for r in results["training"])
  print(
    f"{'network':12s} {'variant':16s} {'compile s':>9s} {'step s':>8s} {'samples/s':>10s} {'GFLOP/s':>8s} "
    f"{'matmul GFLOP/s':>14s} {'ratio':>6s}" + (f" {'peer step s':>11s} {'speed-up':>8s}" if peer else "")
  )
  for r in results["training"]:
    print(
      f"{r['mode']:12s} {r['variant']:16s} {r['compile_s']:9.1f} {r['step_s']:8.3f} {r['samples_per_s']:10.0f} "
      f"{r['gflops']:8.1f} {r['matmul_gflops']:14.1f} {r['ratio']:6.2f}"
      + (f" {r['peer_step_s']:11.3f} {r['speedup_vs_peer']:7.2f}x" if "peer_step_s" in r else "")
    )
  if peer:
    print(
      "  peer: experiments/torch_peer.py (PyTorch, fp32), alternated step by step with each row; speed-up = "
      "median of peer time / project time"
    )
  for r in results["training"]:
    if r["variant"] == "default":
      print(f"  {r['mode']}: {r['flop_formula']}")
  if results.get("memory"):
    print("\n== peak memory of one training step")
    for m in results["memory"]:
      extra = f", device peak {m['device_peak_bytes'] / 2**30:.2f} GiB" if "device_peak_bytes" in m else ""
      print(
        f"{m['mode']:12s} B={m['batch']} T={m['length']} remat={m['remat']!s:5s} peak RSS "
        f"{m['peak_rss_bytes'] / 2**30:.2f} GiB (after imports {m['rss_after_import_bytes'] / 2**30:.2f} GiB; "
        f"XLA temp {m.get('xla_temp_bytes', 0) / 2**30:.2f} GiB){extra}"
      )
  for s in results.get("sampling", []):
    print(
      f"\n== sampling {s['mode']}: {s['lines']} lines x {s['points_per_line']} points in one compiled call: "
      f"{s['call_s']:.2f} s ({s['points_per_s']:.0f} points/s; first call with compile {s['first_call_s']:.1f} s)"
    )


def main(argv=None) -> None:
  """Run every measurement of the flags; print the table; write --out."""
  args = parse_args(argv)
  if args.xla_flags is not None:
    os.environ["XLA_FLAGS"] = args.xla_flags
  if args._memory_child:
    memory_child(args)
    return
  import jax

  results = {
    "config": f"B={args.batch} T={args.length} U={args.chars} H={args.hidden}, float32",
    "backend": jax.default_backend(),
    "devices": [str(d) for d in jax.devices()],
    "cpu_count": os.cpu_count(),
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    "jax": jax.__version__,
    "args": vars(args),
    "training": [],
  }
  ref = ReferenceMatmul(args.matmul_size)
  modes = [m for m in args.modes.split(",") if m]
  for mode in modes:
    results["training"].append(time_training(args, mode, "", ref))
    print(json.dumps({k: v for k, v in results["training"][-1].items() if k != "flop_formula"}), flush=True)
  for variant in filter(None, args.variants.split(",")):
    mode, _, variant = variant.rpartition(":")
    results["training"].append(time_training(args, mode or "synthesis", variant, ref))
    print(json.dumps({k: v for k, v in results["training"][-1].items() if k != "flop_formula"}), flush=True)
  if not args.no_memory:
    results["memory"] = [measure_memory(args, "plain"), measure_memory(args, "remat")]
  if not args.no_sample:
    results["sampling"] = [time_sampling(args, mode) for mode in modes]
  print_table(results)
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
  main()
