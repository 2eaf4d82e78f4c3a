"""Samples written during training: WORKDIR/samples/step_N.png (and attention_N.png for synthesis), process 0 only.

Called by the train loop every `config.train.sample_every` steps with the live (possibly sharded) parameters; a fixed
seed, so successive files show the same random draws as training goes on.
"""

import os

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from handwriting_jax.data import draw
from handwriting_jax.data.alphabet import Alphabet
from handwriting_jax.data.strokes import NormStats
from handwriting_jax.errors import UserError
from handwriting_jax.model import networks
from handwriting_jax.model import sampling as sample_lib


def write_training_samples(
  graphdef: nnx.GraphDef, params: nnx.State, metadata: dict, config: ml_collections.ConfigDict, workdir: str, step: int
) -> list[str]:
  """Write WORKDIR/samples/step_{step}.png (config.sample.texts at config.sample.bias, or unconditional lines for a
  prediction network) and, for synthesis, attention_{step}.png of the first text; process 0 only.

  `params` may be sharded or replicated over many devices (one local replica is used); the seed is fixed
  (config.seed), so successive files show the same random draws as training goes on. Returns the paths written.
  """
  if jax.process_index() != 0:
    return []
  local = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else x, params)
  model = nnx.merge(graphdef, local)
  alphabet = Alphabet(metadata["alphabet"])
  stats = NormStats.from_arrays(metadata["norm"])
  out_dir = os.path.join(workdir, "samples")
  os.makedirs(out_dir, exist_ok=True)
  key = jax.random.key(config.seed)
  texts = list(config.sample.texts)
  paths = []
  if isinstance(model, networks.SynthesisNetwork):
    usable = []
    for text in texts:
      try:  # sample.check_texts (unknown characters: Alphabet.check_known); a text it refuses is skipped, loudly
        sample_lib.check_texts([text], alphabet)
        usable.append(text)
      except UserError as e:
        logging.warning("config.sample.texts: not writing %r: %s", text, e)
    if not usable:
      logging.warning("config.sample.texts: nothing to write with this alphabet; no samples at step %d", step)
      return []
    samples = sample_lib.sample(
      model,
      key,
      texts=usable,
      alphabet=alphabet,
      bias=config.sample.bias,
      max_steps_per_char=config.sample.max_steps_per_char,
      stats=stats,
      stop_rule=config.sample.stop_rule,
    )
    captions = [f"{t} (bias {config.sample.bias}, step {step})" for t in usable]
    path = os.path.join(out_dir, f"attention_{step:07d}.png")
    draw.plot_attention(samples.line_phi(0), samples.texts[0], path, line_Tx3=samples.lines[0], title=f"step {step}")
    paths.append(path)
  else:
    samples = sample_lib.sample(
      model, key, num_lines=max(len(texts), 1), bias=config.sample.bias, max_steps=config.sample.max_steps, stats=stats
    )
    captions = [f"unconditional (bias {config.sample.bias}, step {step})"] * len(samples.lines)
  path = os.path.join(out_dir, f"step_{step:07d}.png")
  draw.save_lines_png(sample_lib.display_lines(samples.lines, config), captions, path)
  return [path] + paths
