"""Put the loss curves of two or more training runs side by side (e.g. float32 against bfloat16 matmuls).

  python -m handwriting_jax.main --config=configs/synthesis.py:small --workdir=runs/f32 --config.train.num_steps=1000
  python -m handwriting_jax.main --config=configs/synthesis.py:small --workdir=runs/bf16 --config.train.num_steps=1000 \
      --config.model.compute_dtype=bfloat16
  python experiments/compare_runs.py runs/f32 runs/bf16 --every=100

Reads each workdir's `train.log` (the training loss is the mean over each `train.log_every` window, in nats per
sequence) and prints the loss and validation NLL of every run at the steps they share, the difference of each run
from the first, and the mean absolute difference over the shared steps (whole run and its last half).
"""

import argparse
import os
import re
import sys

import numpy as np

_STEP = re.compile(r"^step (\d+)/\d+ loss=(\S+) ")
_VALID = re.compile(r"^step (\d+) validation[^:]*: (\S+) nats/sequence")


def read_log(workdir: str) -> tuple[dict[int, float], dict[int, float]]:
  """({step: training loss}, {step: validation NLL}) from WORKDIR/train.log; the last entry wins on a resume."""
  path = os.path.join(workdir, "train.log")
  if not os.path.exists(path):
    raise SystemExit(f"error: {path}: no train.log (is {workdir!r} a training workdir?)")
  train, valid = {}, {}
  with open(path, encoding="utf-8") as f:
    for line in f:
      if m := _STEP.match(line):
        train[int(m.group(1))] = float(m.group(2))
      elif m := _VALID.match(line):
        valid[int(m.group(1))] = float(m.group(2))
  if not train:
    raise SystemExit(f"error: {path}: no training steps logged yet")
  return train, valid


def main(argv=None) -> None:
  """Print the runs' shared logged steps side by side and their mean differences from the first run."""
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("workdirs", nargs="+", help="two or more training workdirs; differences are from the first")
  p.add_argument("--every", type=int, default=100, help="print every N-th shared logged step")
  args = p.parse_args(argv)
  if len(args.workdirs) < 2:
    raise SystemExit("error: give at least two workdirs to compare")
  logs = [read_log(w) for w in args.workdirs]
  names = [os.path.basename(os.path.normpath(w)) for w in args.workdirs]
  shared = sorted(set.intersection(*(set(t) for t, _ in logs)))
  if not shared:
    raise SystemExit("error: the runs share no logged step")
  print("step  " + "  ".join(f"{n:>12s}" for n in names) + "  " + "  ".join(f"{'Δ ' + n:>12s}" for n in names[1:]))
  for s in shared:
    if s % args.every == 0 or s == shared[-1]:
      losses = [t[s] for t, _ in logs]
      print(
        f"{s:5d} "
        + "  ".join(f"{v:12.2f}" for v in losses)
        + "  "
        + "  ".join(f"{v - losses[0]:+12.2f}" for v in losses[1:])
      )
  base = np.array([logs[0][0][s] for s in shared])
  half = np.array(shared) > shared[-1] / 2
  for name, (train, valid) in zip(names[1:], logs[1:]):
    d = np.array([train[s] for s in shared]) - base
    print(
      f"{name} - {names[0]}: training loss mean |Δ| {np.abs(d).mean():.2f} nats/sequence over {len(shared)} "
      f"logged steps, {np.abs(d[half]).mean():.2f} over the last half (mean Δ {d[half].mean():+.2f}; "
      f"{names[0]}'s mean loss there {base[half].mean():.2f})"
    )
    for s in sorted(set(valid) & set(logs[0][1])):
      print(
        f"  validation at step {s}: {names[0]} {logs[0][1][s]:.2f}, {name} {valid[s]:.2f} "
        f"(Δ {valid[s] - logs[0][1][s]:+.2f})"
      )


if __name__ == "__main__":
  sys.exit(main())
