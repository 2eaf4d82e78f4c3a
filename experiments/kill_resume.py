"""Fault injection: `kill -9` a tiny training run at random moments (saves included), resume it, many times over, and
check that it always ends bitwise equal to an uninterrupted run.

  python experiments/kill_resume.py --trials=20      # a few minutes on 2 cores

Each trial starts `handwriting_jax.main` on configs/synthesis.py:tiny with a checkpoint every few steps, kills it
with SIGKILL after a random delay, and starts the same command again until one run ends on its own; then the final
train state (every array, and the data-iterator state) is compared with the reference run's. A kill that lands
while a checkpoint is being written is counted (a `*.orbax-checkpoint-tmp` folder is there just after the kill).
"""

import argparse
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from flax import nnx

from configs import synthesis as synthesis_config
from handwriting_jax.data.alphabet import Alphabet
from handwriting_jax.model import networks
from handwriting_jax.training import checkpoint as ckpt_lib
from handwriting_jax.training import optim
from handwriting_jax.training import step as step_lib


def command(workdir: str, steps: int, every: int, data_cache: str) -> list[str]:
  """The training command of every run (tiny network, embedded corpus, no samples)."""
  return [
    sys.executable,
    "-m",
    "handwriting_jax.main",
    "--config=configs/synthesis.py:tiny",
    f"--workdir={workdir}",
    f"--config.train.num_steps={steps}",
    f"--config.train.checkpoint_every={every}",
    f"--config.train.eval_every={steps}",
    "--config.train.log_every=5",
    "--config.train.sample_every=0",
    f"--config.data.cache_dir={data_cache}",
  ]


def final_state(workdir: str, steps: int) -> tuple[list[np.ndarray], dict]:
  """Every array of the newest checkpoint of `workdir`, and its data-iterator state."""
  cfg = synthesis_config.get_config("tiny")
  cfg.train.num_steps = steps
  ckpt = ckpt_lib.Checkpointer(workdir, read_only=True)
  try:
    meta = ckpt.restore_metadata()
    alphabet = Alphabet(meta["alphabet"])
    tx = optim.make_optimizer(cfg.optim, cfg.train.num_steps)
    _, abstract = nnx.eval_shape(lambda: step_lib.create_train_state(networks.create_model(cfg, alphabet.size), tx))
    state, meta = ckpt.restore(abstract)
    return [np.asarray(x) for x in jax.tree.leaves(state)], meta["data_iter"]
  finally:
    ckpt.close()


def main(argv=None) -> None:
  """Run the trials and print one line each, then a summary; exit status 1 if any run differs."""
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--trials", type=int, default=10)
  p.add_argument("--steps", type=int, default=150)
  p.add_argument("--every", type=int, default=5, help="checkpoint every this many steps")
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  rng = random.Random(args.seed)
  root = tempfile.mkdtemp(prefix="kill_resume-")
  env = {
    **os.environ,
    "JAX_COMPILATION_CACHE_DIR": os.path.join(root, "xla"),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
  }
  cache = os.path.join(root, "data")
  ref = os.path.join(root, "reference")
  start = time.time()
  subprocess.run(command(ref, args.steps, args.every, cache), cwd=REPO, env=env, check=True, capture_output=True)
  timed = time.time()  # a second run, with the compilation cache warm: how long a run really takes
  subprocess.run(
    command(os.path.join(root, "timing"), args.steps, args.every, cache),
    cwd=REPO,
    env=env,
    check=True,
    capture_output=True,
  )
  run_seconds = time.time() - timed
  ref_arrays, ref_iter = final_state(ref, args.steps)
  kills = during_save = 0
  failures = []
  for trial in range(args.trials):
    workdir = os.path.join(root, f"trial{trial}")
    runs = 0
    while True:
      runs += 1
      proc = subprocess.Popen(
        command(workdir, args.steps, args.every, cache),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
      )
      if runs <= 3:  # at most three kills per trial, then let it finish
        time.sleep(rng.uniform(0.3, 0.95 * run_seconds))
        if proc.poll() is None:
          proc.send_signal(signal.SIGKILL)
          kills += 1
          proc.wait()
          during_save += bool(glob.glob(os.path.join(workdir, "checkpoints", "*orbax-checkpoint-tmp*")))
          continue
      if proc.wait() != 0:
        failures.append(f"trial {trial}: a resumed run exited with status {proc.returncode}")
      break
    arrays, data_iter = final_state(workdir, args.steps)
    same = (
      data_iter == ref_iter
      and len(arrays) == len(ref_arrays)
      and all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(arrays, ref_arrays))
    )
    if not same:
      failures.append(f"trial {trial}: final state differs from the uninterrupted run")
    print(f"trial {trial}: {runs} runs, final state {'bitwise equal' if same else 'DIFFERENT'}", flush=True)
    shutil.rmtree(workdir)
  print(
    json.dumps(
      {
        "trials": args.trials,
        "kills": kills,
        "kills_during_a_save": during_save,
        "failures": failures,
        "seconds": round(time.time() - start, 1),
      }
    )
  )
  shutil.rmtree(root, ignore_errors=True)
  sys.exit(1 if failures else 0)


if __name__ == "__main__":
  main()
