"""Base class of the errors a user can cause (bad config, data, workdir, text): reported in one line, no traceback."""


class UserError(Exception):
  """A mistake in the user's input; command-line entry points print its message and exit with status 1."""


class ConfigError(UserError, ValueError):
  """A config field that makes no sense; the message names the field."""
