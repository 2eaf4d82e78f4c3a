"""Data parallelism (parallel.py) on fake CPU devices and in two cooperating processes.

The JAX work runs in subprocesses (tests/parallel_worker.py), since the device count (XLA_FLAGS) and
`jax.distributed` must be set before JAX starts: 4 fake devices for the sharded and pmapped steps, 1 device to
restore their checkpoints, and 2 processes of 1 device each, started through `parallel.initialize_distributed`
from SLURM-like variables as `srun` sets them, for the multi-host step. Everything is compared with a plain
single-device step on the same global batches.
"""

import fcntl
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from handwriting_jax import errors
from handwriting_jax.config import defaults, validation
from handwriting_jax.training import parallel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "parallel_worker.py")
TIMEOUT_S = 240
NUM_DEVICES = 4
# Float32 sums in a different order (per-device partial sums, all-reduce) and nothing else.
RTOL, ATOL = 2e-4, 1e-6
_CLUSTER_VARS = (
  "JAX_COORDINATOR_ADDRESS",
  "JAX_COORDINATOR_PORT",
  "JAX_NUM_PROCESSES",
  "JAX_PROCESS_ID",
  "JAX_LOCAL_DEVICE_IDS",
  "JAX_PLATFORMS",
  "XLA_FLAGS",
  "CUDA_VISIBLE_DEVICES",
)


def _env(num_devices: int, **extra: str) -> dict[str, str]:
  """This environment without any cluster variables, on `num_devices` fake CPU devices."""
  env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in _CLUSTER_VARS}
  env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}", **extra)
  return env


def _tail(text: str | bytes | None, chars: int = 6000) -> str:
  if isinstance(text, bytes):
    text = text.decode(errors="replace")
  return (text or "")[-chars:]


def _worker(command: str, out: str, num_devices: int) -> None:
  """Run one worker command to completion; fail with its stderr."""
  try:
    proc = subprocess.run(
      [sys.executable, WORKER, command, out],
      env=_env(num_devices),
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=TIMEOUT_S,
      check=False,
    )
  except subprocess.TimeoutExpired as e:
    pytest.fail(
      f"`parallel_worker.py {command}` ({num_devices} devices) timed out after {TIMEOUT_S} s; "
      f"stderr:\n{_tail(e.stderr)}"
    )
  if proc.returncode:
    pytest.fail(
      f"`parallel_worker.py {command}` ({num_devices} devices) exited with {proc.returncode}; "
      f"stderr:\n{_tail(proc.stderr)}"
    )


def _read(path: str) -> str:
  with open(path, encoding="utf-8", errors="replace") as f:
    return f.read()


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _load(out: str, name: str) -> dict[str, np.ndarray]:
  path = os.path.join(out, f"{name}.npz")
  assert os.path.exists(path), f"{path} was not written"
  with np.load(path) as f:
    return dict(f)


def _assert_close(actual: dict, expected: dict, prefixes: tuple[str, ...] = ("state/", "metrics")) -> None:
  keys = [k for k in expected if k.startswith(prefixes)]
  assert keys and set(keys) <= set(actual), sorted(set(keys) - set(actual))
  for k in keys:
    np.testing.assert_allclose(actual[k], expected[k], rtol=RTOL, atol=ATOL, err_msg=k)


def _once(tmp_path_factory, stage: str, build):
  """(shared folder, `build(folder)`), built once per test session even under pytest-xdist, whose workers share the
  session's temporary root: the first to come builds (under a file lock), the others wait and read the result."""
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent
  folder, done = root / "parallel", root / f"parallel_{stage}.json"
  with open(root / "parallel.lock", "w", encoding="utf-8") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not done.exists():
      folder.mkdir(exist_ok=True)
      try:
        result = {"value": build(str(folder))}
      except pytest.fail.Exception as e:
        result = {"failure": str(e)}
      done.write_text(json.dumps(result), encoding="utf-8")
    result = json.loads(done.read_text(encoding="utf-8"))
  if "failure" in result:
    pytest.fail(result["failure"])
  return str(folder), result["value"]


def _run_multihost(out: str) -> list[tuple[int | None, str]]:
  """(exit status or None on timeout, stderr) of each of two processes that train together, started as srun starts
  them: SLURM_* variables (JAX_COORDINATOR_PORT picks a free port), one CPU device each."""
  port = _free_port()
  procs, logs = [], [os.path.join(out, f"multihost_{rank}.log") for rank in range(2)]
  for rank, log in enumerate(logs):
    env = _env(
      1,
      SLURM_JOB_ID="4242",
      SLURM_STEP_NODELIST="127.0.0.1",
      SLURM_NTASKS="2",
      SLURM_PROCID=str(rank),
      SLURM_LOCALID=str(rank),
      JAX_COORDINATOR_PORT=str(port),
    )
    with open(log, "w", encoding="utf-8") as err:  # files, not pipes: a chatty process cannot block on a full pipe
      procs.append(
        subprocess.Popen(
          [sys.executable, WORKER, "multihost", out], env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err
        )
      )
  deadline = time.monotonic() + TIMEOUT_S
  codes = []
  for proc in procs:
    try:
      codes.append(proc.wait(timeout=max(deadline - time.monotonic(), 1.0)))
    except subprocess.TimeoutExpired:
      proc.kill()  # its peer, left waiting, times out in turn
      proc.wait()
      codes.append(None)
  return [(code, _tail(_read(log))) for code, log in zip(codes, logs)]


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> str:
  """Single-device, sharded (jit) and pmapped runs with 4 devices, and their checkpoints."""
  return _once(tmp_path_factory, "steps", lambda folder: _worker("steps", folder, NUM_DEVICES))[0]


@pytest.fixture(scope="module")
def multihost(tmp_path_factory, out) -> list[tuple[int | None, str]]:
  """The two-process run (`_run_multihost`), writing next to the 4-device results."""
  del out  # only the folder
  return _once(tmp_path_factory, "multihost", _run_multihost)[1]


@pytest.fixture(scope="module")
def restored(tmp_path_factory, out, multihost) -> str:
  """The checkpoints written above (4 devices; 2 processes when that run got so far) restored on 1 device."""
  del multihost  # only ordering: restore its checkpoint too
  return _once(tmp_path_factory, "restore", lambda folder: _worker("restore", folder, 1))[0]


def test_sharded_step_equals_single_device_step(out):
  single, sharded = _load(out, "single"), _load(out, "jit")
  assert int(sharded["devices"]) == NUM_DEVICES
  _assert_close(sharded, single)


def test_pmap_equals_jit(out):
  sharded, pmapped = _load(out, "jit"), _load(out, "pmap")
  _assert_close(pmapped, sharded, prefixes=("state/", "metrics", "sums/"))
  assert float(pmapped["sums/['lines']"]) == float(sharded["sums/['lines']"]) == 8.0


def test_checkpoint_from_four_devices_restores_on_one(restored):
  for path in ("jit", "pmap"):
    saved, back = _load(restored, path), _load(restored, f"restored_{path}")
    assert int(back["devices"]) == 1
    keys = [k for k in saved if k.startswith("state/")]
    assert sorted(keys) == sorted(k for k in back if k.startswith("state/"))
    for k in keys:
      np.testing.assert_array_equal(back[k], saved[k], err_msg=f"{path}: {k}")


def test_two_processes_equal_single_process(out, multihost):
  for rank, (code, _err) in enumerate(multihost):
    if code != 0:
      status = f"timed out after {TIMEOUT_S} s" if code is None else f"exited with {code}"
      pytest.fail(
        f"multi-process worker {rank} {status}; stderr of each process:\n"
        + "\n".join(f"--- process {r} ---\n{_tail(e)}" for r, (_, e) in enumerate(multihost))
      )
  single = _load(out, "single")
  for path in ("jit", "pmap"):
    result = _load(out, f"multihost_{path}")
    assert int(result["devices"]) == 2
    _assert_close(result, single)
  _assert_close(_load(out, "multihost_jit"), _load(out, "jit"), prefixes=("sums/",))


def test_multihost_checkpoint_restores_on_one_device(restored, multihost):
  if any(code != 0 for code, _ in multihost):
    pytest.fail("the multi-process run failed (see test_two_processes_equal_single_process)")
  saved, back = _load(restored, "multihost_jit"), _load(restored, "restored_multihost")
  for k in (k for k in saved if k.startswith("state/")):
    np.testing.assert_array_equal(back[k], saved[k], err_msg=k)


def test_batch_not_divisible_by_devices_is_a_config_error():
  cfg = defaults.apply_variant(defaults.base_config("synthesis"), "tiny")
  cfg.data.batch_size = 6
  with pytest.raises(validation.ConfigError, match=r"config\.data\.batch_size.*6.*4 devices"):
    validation.validate(cfg, device_count=4)
  cfg.data.batch_size = 8
  validation.validate(cfg, device_count=4)


def test_main_imports_without_starting_jax():
  """`jax.distributed.initialize` must come before any JAX computation, so importing main may not start a backend;
  a half-given cluster is a one-line error."""
  code = (
    "import sys\n"
    "import handwriting_jax.main as m\n"
    "from jax._src import xla_bridge\n"
    "assert not xla_bridge.backends_are_initialized(), 'importing handwriting_jax.main started a JAX backend'\n"
    "from absl import app\n"
    "sys.argv = ['main', '--config=configs/synthesis.py:tiny', '--workdir=unused', '--num_processes=2']\n"
    "app.run(m.main)\n"
  )
  proc = subprocess.run(
    [sys.executable, "-c", code], env=_env(1), cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
  )
  assert proc.returncode == 1, proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and "JAX_COORDINATOR_ADDRESS" in last and "JAX_PROCESS_ID" in last, proc.stderr
  assert "Traceback" not in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------------------------------------------
# distributed_args: what `jax.distributed.initialize` is given.

SLURM_STEP = {
  "SLURM_JOB_ID": "123",
  "SLURM_STEP_NODELIST": "gpu[01-02]",
  "SLURM_NTASKS": "2",
  "SLURM_PROCID": "1",
  "SLURM_LOCALID": "0",
}


def test_no_cluster_is_single_process():
  assert parallel.distributed_args({}) is None
  assert parallel.distributed_args({"SLURM_JOB_ID": "9", "SLURM_NTASKS": "1"}) is None  # sbatch/srun, one task
  assert parallel.distributed_args({}, num_processes=1) is None
  assert parallel.distributed_args({"JAX_NUM_PROCESSES": "1", "JAX_PROCESS_ID": "0"}) is None


def test_slurm_step_is_detected():
  assert parallel.distributed_args(SLURM_STEP) == {"cluster_detection_method": "slurm"}
  # --gpus-per-task=1: the one visible GPU is device 0 of every task, whatever SLURM_LOCALID says.
  one_gpu = {**SLURM_STEP, "CUDA_VISIBLE_DEVICES": "3"}
  assert parallel.distributed_args(one_gpu) == {"cluster_detection_method": "slurm", "local_device_ids": [0]}
  four_gpus = {**SLURM_STEP, "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
  assert parallel.distributed_args(four_gpus) == {"cluster_detection_method": "slurm"}


def test_explicit_arguments_win():
  env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
  assert parallel.distributed_args(env) == {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}
  assert parallel.distributed_args(env, "host:9", 2, 0) == {
    "coordinator_address": "host:9",
    "num_processes": 2,
    "process_id": 0,
  }
  # Under srun, a coordinator alone is enough: SLURM gives the count and the id.
  assert parallel.distributed_args(SLURM_STEP, coordinator_address="gpu01:5555") == {
    "coordinator_address": "gpu01:5555",
    "num_processes": None,
    "process_id": None,
    "cluster_detection_method": "slurm",
  }


def test_partial_arguments_name_what_is_missing():
  with pytest.raises(parallel.ClusterConfigError, match=r"missing the coordinator address.*JAX_PROCESS_ID") as e:
    parallel.distributed_args({}, num_processes=2)
  assert "JAX_NUM_PROCESSES" not in str(e.value)
  with pytest.raises(parallel.ClusterConfigError, match=r"missing the number of processes \(JAX_NUM_PROCESSES"):
    parallel.distributed_args({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_PROCESS_ID": "0"})
  with pytest.raises(parallel.ClusterConfigError, match=r"SLURM_STEP_NODELIST.*srun"):
    parallel.distributed_args({"SLURM_JOB_ID": "9", "SLURM_NTASKS": "4"})  # sbatch script without srun
  with pytest.raises(parallel.ClusterConfigError, match=r"JAX_PROCESS_ID.*\[0, 2\), got 2"):
    parallel.distributed_args({}, "h:1", 2, 2)
  with pytest.raises(parallel.ClusterConfigError, match="JAX_NUM_PROCESSES='two' is not an integer"):
    parallel.distributed_args({"JAX_NUM_PROCESSES": "two"})
  assert issubclass(parallel.ClusterConfigError, errors.UserError)
