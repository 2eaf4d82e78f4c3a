"""Handwriting synthesis network (Graves 2013, section 5).

Usage: --config=configs/synthesis.py (the paper: 3 x 400 LSTM, 20 mixtures, 10 window Gaussians, batch 32),
--config=configs/synthesis.py:small (CPU demo on the embedded corpus), --config=configs/synthesis.py:iam_small (the
CPU recipe for IAM-OnDB; add --config.data.iam_path=DIR), --config=configs/synthesis.py:iam_fast (a legible IAM
writer in 14 minutes on 2 cores), --config=configs/synthesis.py:tiny (tests).
"""

from handwriting_jax.config import defaults


def get_config(arg: str = ""):
  """Return the synthesis config, variant `arg`."""
  return defaults.apply_variant(defaults.base_config("synthesis"), arg)
