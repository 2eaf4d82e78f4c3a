"""Time to legible: train a recipe, then judge every checkpoint it saved, by the minute of training it was saved at.

  python experiments/time_to_legible.py --workdir=runs/iam_t2l -- --config=configs/synthesis.py:iam_small \
      --config.data.iam_path=/data/iam-ondb
  python experiments/time_to_legible.py --workdir=runs/iam_long --no_train --iam_path=/data/iam-ondb   # a run made

Everything after `--` goes to `python -m handwriting_jax.main` (which checkpoints every `train.checkpoint_every`
steps; keep them all with `--config.train.keep_checkpoints`). Training runs alone; the checkpoints are judged after
it from what it saved, so the judging never slows the training it times. A checkpoint's minute is when its save
finished (its folder's time) after the training command started (with `--no_train`, after the workdir's
`config.json` was written, the run's start). For each: minutes, step, CER and WER at `--bias` (`evaluate`: the 16
everyday sentences unprimed, `--seeds` draws each; not the digit set), and the validation NLL in nats per
sequence. Then the first minute from which CER stays at or under `--target` for the rest of the run. A 2048³ float32
matmul is timed before and after, so the machine's speed that hour stands beside the minutes. Output: a table, JSON
with `--out`, and the curve (CER and NLL by step, the target as a line) as a PNG with `--plot`.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from handwriting_jax.evaluation import report as report_lib
from handwriting_jax.training import restore


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
  """The best GFLOP/s of an n³ float32 matmul here (XLA), the machine's speed in the hour of the run."""
  import jax
  import jax.numpy as jnp

  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = min(_timed(lambda: f(a).block_until_ready()) for _ in range(repeats))
  return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
  """Seconds `fn()` takes."""
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def saved_minutes(workdir: str, start: float) -> dict[int, float]:
  """{step: minutes after `start` (a time.time()) at which that checkpoint's save finished}."""
  folder = os.path.join(workdir, "checkpoints")
  return {s: (os.path.getmtime(os.path.join(folder, str(s))) - start) / 60 for s in restore.saved_steps(workdir)}


def first_legible(minutes: list[float], cers: list[float], target: float) -> float | None:
  """The first minute from which every later checkpoint's CER is at or under `target` (None: the run never
  stays there; rows in the order of `minutes`)."""
  first = None
  for m, cer in zip(minutes, cers):
    legible_here = cer <= target
    first = (first if first is not None else m) if legible_here else None
  return first


def judge(workdir: str, start: float, *, bias: float, seeds: int, iam_path: str | None, out_dir: str) -> list[dict]:
  """One row per saved checkpoint, in order: minutes, step, CER, WER and validation NLL."""
  rows = []
  for step, minute in sorted(saved_minutes(workdir, start).items()):
    r = report_lib.evaluate(
      workdir,
      step,
      biases=[bias],
      seeds=seeds,
      out_dir=os.path.join(out_dir, f"step_{step}"),
      iam_path=iam_path,
      fidelity=None,
      digit_sentences=(),  # the everyday sentences decide legibility here; the digit set would double the judging
    )
    leg = r["legibility"][0]
    nll = r.get("nll") or {}
    rows.append(
      {"minutes": minute, "step": step, "cer": leg["cer"], "wer": leg["wer"], "nll": nll.get("nats_per_sequence")}
    )
    print(_row(rows[-1]), flush=True)
  return rows


def plot_rows(rows: list[dict], target: float, bias: float, path: str) -> None:
  """Draw CER (left axis, with the target as a dashed line) and validation NLL (right axis) by step into a PNG."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  steps = [r["step"] for r in rows]
  fig, ax = plt.subplots(figsize=(7, 3.2), dpi=120)
  ax.plot(steps, [100 * r["cer"] for r in rows], "o-", color="tab:blue", label=f"CER at bias {bias:g}")
  ax.axhline(100 * target, color="tab:blue", linestyle="--", linewidth=0.8, label=f"target {target:.0%}")
  ax.set_xlabel(f"step (last checkpoint at minute {rows[-1]['minutes']:.0f})")
  ax.set_ylabel("CER (%)", color="tab:blue")
  ax.set_ylim(0, 125 * max([target] + [r["cer"] for r in rows if np.isfinite(r["cer"])]))
  nll = [(r["step"], r["nll"]) for r in rows if r["nll"] is not None]
  if nll:
    ax2 = ax.twinx()
    ax2.plot(*zip(*nll), "s:", color="tab:red", markersize=4)
    ax2.set_ylabel("validation NLL (nats / line)", color="tab:red")
  ax.legend(loc="lower left", fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def _row(r: dict) -> str:
  """One line of the table."""
  nll = "—" if r["nll"] is None else f"{r['nll']:.1f}"
  return f"{r['minutes']:7.1f} min  step {r['step']:6d}  CER {r['cer']:6.1%}  WER {r['wer']:6.1%}  NLL {nll}"


def main(argv=None) -> None:
  """Train (unless --no_train), judge every checkpoint, print the table and the time to legible."""
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", required=True, help="the run's workdir")
  p.add_argument("--no_train", action="store_true", help="judge a run already made in --workdir")
  p.add_argument("--bias", type=float, default=0.75)
  p.add_argument("--seeds", type=int, default=3, help="draws of each sentence")
  p.add_argument("--target", type=float, default=0.15, help="the CER that counts as legible")
  p.add_argument("--iam_path", default=None, help="IAM-OnDB, when not where the run's config says")
  p.add_argument("--out", default=None, help="JSON file of the results")
  p.add_argument("--plot", default=None, help="PNG file of the curve: CER and NLL by step")
  args, main_args = p.parse_known_args(argv)
  main_args = [a for a in main_args if a != "--"]
  before = matmul_gflops()
  if args.no_train:
    start = os.path.getmtime(os.path.join(args.workdir, "config.json"))
  else:
    start = time.time()
    cmd = [sys.executable, "-m", "handwriting_jax.main", f"--workdir={args.workdir}", *main_args]
    if subprocess.run(cmd, check=False).returncode != 0:
      raise SystemExit(f"error: training failed: {' '.join(cmd)}")
  after = matmul_gflops()
  rows = judge(
    args.workdir,
    start,
    bias=args.bias,
    seeds=args.seeds,
    iam_path=args.iam_path,
    out_dir=os.path.join(args.workdir, "time_to_legible"),
  )
  legible = first_legible([r["minutes"] for r in rows], [r["cer"] for r in rows], args.target)
  summary = (
    f"legible (CER <= {args.target:.0%} at bias {args.bias:g} from then on): "
    + ("never" if legible is None else f"from minute {legible:.1f}")
    + f"; 2048^3 fp32 matmul {before:.0f} GFLOP/s before, {after:.0f} after"
  )
  print(summary)
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      result = {"rows": rows, "legible_from_minute": legible, "target": args.target, "bias": args.bias}
      json.dump({**result, "matmul_gflops": [before, after], "workdir": args.workdir}, f, indent=1)
  if not rows or not np.isfinite(rows[-1]["cer"]):
    raise SystemExit("error: no checkpoint was judged")
  if args.plot:
    plot_rows(rows, args.target, args.bias, args.plot)
    print(f"curve: {args.plot}")


if __name__ == "__main__":
  main()
