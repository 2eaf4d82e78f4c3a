"""Handwriting prediction network (Graves 2013, section 4).

Usage: --config=configs/prediction.py (the paper: 3 x 400 LSTM, 20 mixtures, batch 32),
--config=configs/prediction.py:small (CPU demo), --config=configs/prediction.py:tiny (tests).
"""

from handwriting_jax.config import defaults


def get_config(arg: str = ""):
  """Return the prediction config, variant `arg`."""
  return defaults.apply_variant(defaults.base_config("prediction"), arg)
