"""Shared command-line plumbing: flag errors and Ctrl-C as one line, never a traceback."""

import re
import sys
from collections.abc import Callable

from absl import app, flags


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad flag value or an unknown `--config.group.field` as one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    raise SystemExit(f"error: {one_line(str(e))}") from None
  except (AttributeError, KeyError) as e:  # ml-collections, while it looks up an overridden config field
    raise SystemExit(f"error: {unknown_field_message(str(e.args[0]) if e.args else str(e), argv)}") from None


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
      return f"{arg}: {'.'.join(parts[:parts.index(name, 1)])} has no field {name!r}{hint}"
  return f"config has no field {name!r}{hint}"


def run(main: Callable[[list[str]], None]) -> None:
  """`absl.app.run(main)` with one-line flag errors; a KeyboardInterrupt that reaches here ends in one line."""
  try:
    app.run(main, flags_parser=parse_flags)
  except KeyboardInterrupt:
    sys.exit("interrupted")
