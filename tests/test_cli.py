"""Command-line mistakes end in one line naming what is wrong (subprocesses: exactly what a user sees)."""

import os
import subprocess
import sys

import pytest

from handwriting_jax import cli

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args: str) -> subprocess.CompletedProcess:
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, *args], cwd=_REPO, env=env, capture_output=True, text=True, timeout=120,
                        check=False)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
  assert proc.returncode == 1, proc.stdout + proc.stderr
  assert "Traceback" not in proc.stderr, proc.stderr
  lines = [x for x in proc.stderr.splitlines() if x.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  return lines[0]


@pytest.mark.parametrize("override, expected", [
    ("--config.optim.learnig_rate=1",
     "error: --config.optim.learnig_rate=1: config.optim has no field 'learnig_rate' "
     "(did you mean \"learning_rate\"?)"),
    ("--config.optimm.learning_rate=1", "error: --config.optimm.learning_rate=1: config has no field 'optimm'"),
    ("--config.optim.learning_rate=fast", "could not convert string to float: 'fast'"),
])
def test_bad_config_override_is_one_line(tmp_path, override, expected):
  line = _one_error_line(_run("-m", "handwriting_jax.main", "--config=configs/synthesis.py:tiny",
                              f"--workdir={tmp_path}", override))
  assert expected in line, line


@pytest.mark.parametrize("config, expected", [
    ("configs/nope.py", "error: --config: [Errno 2] No such file or directory: 'configs/nope.py'"),
    ("configs/synthesis.py:bogus", "unknown config variant 'bogus'; expected one of"),
])
def test_bad_config_file_is_one_line(tmp_path, config, expected):
  line = _one_error_line(_run("-m", "handwriting_jax.main", f"--config={config}", f"--workdir={tmp_path}"))
  assert expected in line, line


def test_bad_flag_value_of_write_is_one_line():
  assert "error: flag --bias=x: could not convert string to float" in _one_error_line(
      _run("-m", "handwriting_jax.write", "--bias=x"))


def test_keyboard_interrupt_reaching_the_top_is_one_line():
  code = ("from handwriting_jax import cli\n"
          "def main(argv):\n  raise KeyboardInterrupt\n"
          "cli.run(main)\n")
  proc = _run("-c", code)
  assert proc.returncode == 1 and proc.stderr.strip() == "interrupted", proc.stderr


def test_unknown_field_message_without_a_matching_flag():
  assert cli.unknown_field_message("'zz'", ["prog"]) == "config has no field 'zz'"
