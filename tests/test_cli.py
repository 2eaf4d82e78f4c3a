"""Command-line mistakes end in one line naming what is wrong (subprocesses: exactly what a user sees)."""

import os
import subprocess
import sys

import pytest

from handwriting_jax import cli

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args: str) -> subprocess.CompletedProcess:
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  return subprocess.run(
    [sys.executable, *args], cwd=_REPO, env=env, capture_output=True, text=True, timeout=120, check=False
  )


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
  assert proc.returncode == 1, proc.stdout + proc.stderr
  assert "Traceback" not in proc.stderr, proc.stderr
  lines = [x for x in proc.stderr.splitlines() if x.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  return lines[0]


@pytest.mark.parametrize(
  "override, expected",
  [
    (
      "--config.optim.learnig_rate=1",
      (
        "error: --config.optim.learnig_rate=1: config.optim has no field 'learnig_rate' "
        '(did you mean "learning_rate"?)'
      ),
    ),
    ("--config.optimm.learning_rate=1", "error: --config.optimm.learning_rate=1: config has no field 'optimm'"),
    ("--config.optim.learning_rate=fast", "could not convert string to float: 'fast'"),
  ],
)
def test_bad_config_override_is_one_line(tmp_path, override, expected):
  line = _one_error_line(
    _run("-m", "handwriting_jax.main", "--config=configs/synthesis.py:tiny", f"--workdir={tmp_path}", override)
  )
  assert expected in line, line


@pytest.mark.parametrize(
  "config, expected",
  [
    ("configs/nope.py", "error: --config: [Errno 2] No such file or directory: 'configs/nope.py'"),
    ("configs/synthesis.py:bogus", "unknown config variant 'bogus'; expected one of"),
  ],
)
def test_bad_config_file_is_one_line(tmp_path, config, expected):
  line = _one_error_line(_run("-m", "handwriting_jax.main", f"--config={config}", f"--workdir={tmp_path}"))
  assert expected in line, line


@pytest.mark.parametrize(
  "code, expected",
  [
    ("import no_such_module_here\n", ":1: ModuleNotFoundError: No module named 'no_such_module_here'"),
    ("def get_config(:\n  pass\n", ":1: SyntaxError: "),
    ("def get_config():\n  raise RuntimeError('boom')\n", ":2: RuntimeError: boom"),
  ],
)
def test_a_config_file_that_fails_to_load_is_one_line_naming_its_line(tmp_path, code, expected):
  path = tmp_path / "my_config.py"
  path.write_text(code)
  line = _one_error_line(_run("-m", "handwriting_jax.main", f"--config={path}", f"--workdir={tmp_path / 'w'}"))
  assert line.startswith(f"error: {path}") and expected in line, line


def test_bad_flag_value_of_write_is_one_line():
  assert "error: flag --bias=x: could not convert string to float" in _one_error_line(
    _run("-m", "handwriting_jax.write", "--bias=x")
  )


def test_keyboard_interrupt_reaching_the_top_is_one_line():
  code = "from handwriting_jax import cli\ndef main(argv):\n  raise KeyboardInterrupt\ncli.run(main)\n"
  proc = _run("-c", code)
  assert proc.returncode == 1 and proc.stderr.strip() == "interrupted", proc.stderr


def test_unknown_field_message_without_a_matching_flag():
  assert cli.unknown_field_message("'zz'", ["prog"]) == "config has no field 'zz'"


def _console_script(*args: str) -> subprocess.CompletedProcess:
  """Run the installed `handwriting-jax` script (pip install -e puts it beside the interpreter) with `args`."""
  path = os.path.join(os.path.dirname(sys.executable), "handwriting-jax")
  assert os.path.isfile(path), f"{path} is missing: reinstall the package (pip install -e '.[dev]')"
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  return subprocess.run([path, *args], cwd=_REPO, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_console_script_lists_its_commands_and_refuses_an_unknown_one():
  listed = _console_script("--help")
  assert listed.returncode == 0 and all(name in listed.stdout for name in cli.COMMANDS), listed.stdout
  unknown = _console_script("wrte")
  assert _one_error_line(unknown) == f"error: unknown command 'wrte'; the commands are {', '.join(cli.COMMANDS)}"


def test_console_script_runs_the_command_with_its_flags(tmp_path):
  """`handwriting-jax export-iam` is `python -m handwriting_jax.export_iam`: same flags, same file, same errors."""
  fixture = os.path.join(_REPO, "tests", "fixtures", "iam")
  out = tmp_path / "splits.npz"
  proc = _console_script("export-iam", f"--iam_path={fixture}", f"--out={out}")
  assert proc.returncode == 0 and out.is_file(), proc.stderr
  bad = _console_script("export-iam", f"--iam_path={fixture}", f"--out={tmp_path}")
  assert _one_error_line(bad) == f"error: --out={str(tmp_path)!r}: the splits file must end in .npz"


@pytest.mark.parametrize("module", sorted({m for m, _ in cli.COMMANDS.values()}))
def test_every_command_module_exists_and_runs_as_a_program(module):
  """Each console command names a top-level module with a `main` that `python -m` runs."""
  with open(os.path.join(_REPO, "handwriting_jax", f"{module}.py"), encoding="utf-8") as f:
    text = f.read()
  assert "def main(" in text and 'if __name__ == "__main__":' in text


def test_one_line_errors_turns_user_mistakes_into_one_line():
  with pytest.raises(SystemExit) as info, cli.one_line_errors(FileNotFoundError):
    raise FileNotFoundError("no such\n  file")
  assert str(info.value) == "error: no such file"
  with pytest.raises(KeyError), cli.one_line_errors():  # not a user mistake: a bug keeps its traceback
    raise KeyError("x")


def test_a_port_that_cannot_exist_is_one_line():
  """`serve --port=99999` used to print that URL and listen elsewhere."""
  line = _one_error_line(_run("-m", "handwriting_jax.serve", "--port=99999"))
  assert "--port" in line and "65535" in line, line
