"""An end-of-text symbol (`config.data.end_of_text`): teach the synthesis network what comes after the last character.

Trained on lines that end where the ink ends, the network never sees a step past its last point, so at sampling time
the steps between the last character and the window moving past the text are free, and it often spends them on a
stray mark (a second dot after a final full stop). With this option every text the network reads ends in `END_CHAR`
(ASCII ETX, "end of text": never typed and in no transcription), one more character of the alphabet, and every line's
ink in one pen-up move to the right by the line's mean advance per character (where a next word would begin). The
network so learns to lift the pen and move its window onto the end symbol once the text is written; the sampler
appends the symbol to what it writes and ends the line as the window moves onto it (the paper's rule, with the end
symbol at position U+1), and the move itself is not drawn (`sampling.line_end` leaves out a point that would start a
new stroke at the step a line stops).

Whether a writer has the symbol is read from its alphabet (`has_end`), so checkpoints carry it with their alphabet.
"""

from collections.abc import Sequence

import numpy as np

from handwriting_jax.data import strokes as strokes_lib
from handwriting_jax.data.alphabet import Alphabet

END_CHAR = "\x03"


def with_end(alphabet: Alphabet) -> Alphabet:
  """`alphabet` with the end symbol as its last character (the ids of its other characters unchanged)."""
  return alphabet if has_end(alphabet) else Alphabet(alphabet.chars + END_CHAR)


def has_end(alphabet: Alphabet) -> bool:
  """True when the writer of this alphabet was trained with the end symbol (and texts it reads must end in it)."""
  return END_CHAR in alphabet.chars


def conditioned(text: str, alphabet: Alphabet) -> str:
  """What the window reads for `text`: the text with the end symbol appended when the alphabet has it."""
  return text + END_CHAR if has_end(alphabet) else text


def written_chars(alphabet: Alphabet) -> str:
  """The characters a user can ask for: the alphabet without the end symbol."""
  return alphabet.chars.replace(END_CHAR, "")


def end_move(raw_Tx3: np.ndarray, num_chars: int) -> np.ndarray:
  """The row [1, 3] after a raw line of `num_chars` characters: a pen-up move right by its mean advance per character
  (its ink's width over its characters), level, lifting the pen again."""
  points = strokes_lib.offsets_to_points(np.asarray(raw_Tx3, np.float32))
  width = float(np.ptp(points[:, 0])) if len(points) else 0.0
  return np.array([[width / max(num_chars, 1), 0.0, 1.0]], np.float32)


def appended(
  lines_Tx3: Sequence[np.ndarray], texts: Sequence[str], alphabet: Alphabet, stats: strokes_lib.NormStats
) -> tuple[list[np.ndarray], list[str]]:
  """(lines, texts) as a writer of `alphabet` is trained on them: with the end move and the end symbol appended to
  each when the alphabet has the symbol, else as given. Lines are normalised by `stats` (the move is measured in raw
  units, then normalised as the line is)."""
  if not has_end(alphabet):
    return list(lines_Tx3), list(texts)
  out_lines, out_texts = [], []
  for line, text in zip(lines_Tx3, texts):
    line = np.asarray(line, np.float32)
    row = stats.normalise(end_move(stats.denormalise(line), len(text)))
    out_lines.append(np.concatenate([line, row], axis=0))
    out_texts.append(text + END_CHAR)
  return out_lines, out_texts
