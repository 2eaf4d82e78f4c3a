"""Shared command-line plumbing: flag errors, user mistakes and Ctrl-C as one line, never a traceback; the
`handwriting-jax COMMAND` console script."""

import contextlib
import re
import runpy
import sys
import traceback
from collections.abc import Callable, Iterator

from absl import app, flags

from handwriting_jax.errors import UserError

# `handwriting-jax COMMAND [flags]` runs `python -m handwriting_jax.MODULE [flags]`.
COMMANDS = {
  "train": ("main", "train a network (--config=configs/synthesis.py --workdir=DIR)"),
  "write": ("write", "write text in handwriting (--text=... --out=page.svg)"),
  "evaluate": ("evaluate", "validation NLL, legibility by OCR, style fidelity of a writer"),
  "serve": ("serve", "the local web page and JSON API"),
  "export-web": ("export_web", "a static site that writes in the browser, no server (--out=site/)"),
  "adapt": ("adapt", "learn a hand from a few of its lines (--style_file=...)"),
  "preview": ("preview", "draw lines of the training data (--out=lines.png)"),
  "export-iam": ("export_iam", "IAM-OnDB as one compressed splits file"),
  "train-hand-encoder": ("train_hand_encoder", "train the style-fidelity hand encoder on IAM-OnDB"),
}


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad flag value or an unknown `--config.group.field` as one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    raise SystemExit(f"error: {one_line(str(e))}") from None
  except (AttributeError, KeyError) as e:  # ml-collections, while it looks up an overridden config field
    raise SystemExit(f"error: {unknown_field_message(str(e.args[0]) if e.args else str(e), argv)}") from None
  except Exception as e:  # noqa: BLE001  code run while parsing: a config file that fails to import or raises
    raise SystemExit(f"error: {raised_at(e)}{type(e).__name__}: {one_line(str(e))}") from None


def raised_at(e: BaseException) -> str:
  """'FILE:LINE: ' where `e` was raised (for a SyntaxError, the line it points at), or '' when unknown."""
  if isinstance(e, SyntaxError) and e.filename:
    return f"{e.filename}:{e.lineno}: "
  frames = traceback.extract_tb(e.__traceback__)
  return f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""


def one_line(message: str) -> str:
  """A flag error that embeds a traceback (ml-collections, when a config file raises) as its first and last lines."""
  if "Traceback (most recent call last)" not in message:
    return message
  lines = [x.strip() for x in message.splitlines() if x.strip()]
  last = re.sub(r"^[\w.]+(Error|Exception|Warning): ", "", lines[-1])
  return f"{lines[0].rstrip(':')}: {last}"


def config_value(holder: flags.FlagHolder):
  """The value of a `config_flags` flag; a config file that cannot be loaded is one line."""
  try:
    value = holder.value
    value.keys()  # a file that failed to load is a stand-in that raises on first use
    return value
  except OSError as e:
    reason = re.search(r"\[Errno \d+\].*", str(e))
    raise SystemExit(f"error: --{holder.name}: {reason[0] if reason else ' '.join(str(e).split())}") from None


def unknown_field_message(detail: str, argv: list[str]) -> str:
  """'--config.optim.learnig_rate=1: config.optim has no field 'learnig_rate' (did you mean "learning_rate"?)'."""
  m = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', detail)
  name = m[2] if m else (re.findall(r"\w+", detail) or ["?"])[0]
  hint = f' (did you mean "{m[1]}"?)' if m else ""
  for arg in argv[1:]:
    parts = arg[2:].split("=")[0].split(".") if arg.startswith("--config.") else []
    if name in parts[1:]:
      return f"{arg}: {'.'.join(parts[: parts.index(name, 1)])} has no field {name!r}{hint}"
  return f"config has no field {name!r}{hint}"


def run(main: Callable[[list[str]], None]) -> None:
  """`absl.app.run(main)` with one-line flag errors; a KeyboardInterrupt that reaches here ends in one line."""
  try:
    app.run(main, flags_parser=parse_flags)
  except KeyboardInterrupt:
    sys.exit("interrupted")


def define_stop_rule_flag(rules: tuple[str, ...]) -> None:
  """--stop_rule, the override of config.sample.stop_rule that `write` and `evaluate` share (`rules`: its values)."""
  flags.DEFINE_enum(
    "stop_rule",
    None,
    list(rules),
    "When a written line ends (default: the checkpoint's config.sample.stop_rule): paper = the window has passed the "
    "text, lift = then the next pen lift, finish = then also the last word's late strokes (t bars, i dots) until a "
    "stroke begins clear right of the ink.",
  )


def define_writer_flags(shipped: tuple[str, ...], default: str) -> None:
  """--workdir and --shipped, the two ways every writing command names its writer (`shipped`: the package's writers)."""
  flags.DEFINE_string(
    "workdir",
    None,
    "The writer: a training workdir or an export holding checkpoints/ (default: "
    "a writer shipped in the package, chosen by --shipped).",
  )
  flags.DEFINE_string(
    "shipped", None, f"Without --workdir: the shipped writer, one of {', '.join(shipped)} (default {default})."
  )


def fail(message: object) -> None:
  """End the command with `error: MESSAGE` on one line (whitespace folded) and exit status 1."""
  raise SystemExit(f"error: {' '.join(str(message).split())}")


@contextlib.contextmanager
def one_line_errors(*also: type[BaseException]) -> Iterator[None]:
  """A user mistake raised inside (`UserError`, or one of `also`) ends the command in one `error:` line."""
  try:
    yield
  except (UserError, *also) as e:
    fail(e)


def usage() -> str:
  """The console script's help: its commands and what each does."""
  width = max(map(len, COMMANDS))
  rows = "\n".join(f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items())
  return f"usage: handwriting-jax COMMAND [--flags]   (COMMAND --help lists its flags)\n\ncommands:\n{rows}"


def dispatch(argv: list[str] | None = None) -> None:
  """The `handwriting-jax` console script: run the command's module as `python -m` would, with the flags after it."""
  args = sys.argv[1:] if argv is None else argv
  if not args or args[0] in ("-h", "--help", "help"):
    print(usage())
    sys.exit(0 if args else 2)
  if args[0] not in COMMANDS:
    fail(f"unknown command {args[0]!r}; the commands are {', '.join(COMMANDS)}")
  sys.argv = [f"handwriting-jax {args[0]}", *args[1:]]
  runpy.run_module(f"handwriting_jax.{COMMANDS[args[0]][0]}", run_name="__main__", alter_sys=True)
