"""Character alphabet: text <-> integer ids for the synthesis network's window (paper section 5.1).

Ids: `PAD_ID = 0` is padding (never a real character; `decode` skips it), `UNKNOWN_ID = 1` stands for any
character outside the alphabet (only with `encode(..., on_unknown="map")`, the training-time choice: the
caller counts them and reports the count), and the alphabet's characters take ids 2, 3, ... in order.
`Alphabet.size` (= len(chars) + 2) is the width of the one-hot vectors `c_u` of eq. 47.

The alphabet is kept with a checkpoint as its plain string (`Alphabet.chars`, in the checkpoint's JSON metadata).
"""

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from handwriting_jax.errors import UserError

PAD_ID = 0  # padding id: `chars_BxU` beyond a text's length; `char_mask_BxU` is 0 there.
UNKNOWN_ID = 1  # id of every character outside the alphabet (on_unknown="map").
FIRST_CHAR_ID = 2  # id of `chars[0]`.
# What `decode` writes for UNKNOWN_ID by default (U+FFFD REPLACEMENT CHARACTER).
UNKNOWN_SYMBOL = "\N{REPLACEMENT CHARACTER}"

_ON_UNKNOWN = ("error", "map")


class UnknownCharactersError(UserError, ValueError):
  """A text holds characters outside the alphabet (raised by `check_known`, the one unknown-character policy)."""


class Alphabet:
  """An ordered set of characters with ids from 2 (0 = padding, 1 = unknown)."""

  def __init__(self, chars: str):
    """Use exactly `chars`, in this order; each character at most once."""
    if not isinstance(chars, str):
      raise TypeError(f"Alphabet(chars) takes a str, got {type(chars).__name__}")
    if not chars:
      raise ValueError("the alphabet is empty: give at least one character")
    repeated = sorted({c for c in chars if chars.count(c) > 1})
    if repeated:
      raise ValueError(f"the alphabet lists characters more than once: {_format_chars(repeated)}")
    self._chars = chars
    self._index = {c: i + FIRST_CHAR_ID for i, c in enumerate(chars)}

  @property
  def chars(self) -> str:
    """The characters, in id order (id 2 first)."""
    return self._chars

  @property
  def size(self) -> int:
    """Number of ids including padding and unknown: the one-hot width."""
    return len(self._chars) + FIRST_CHAR_ID

  @classmethod
  def from_texts(cls, texts: Iterable[str]) -> "Alphabet":
    """Every character occurring in `texts`, sorted by code point (deterministic for a given corpus)."""
    seen: set[str] = set()
    for text in texts:
      seen.update(text)
    if not seen:
      raise ValueError("cannot build an alphabet from texts without any character")
    return cls("".join(sorted(seen)))

  @classmethod
  def from_config(cls, data_cfg: Any, texts: Iterable[str]) -> "Alphabet":
    """`config.data.alphabet` when non-empty (exactly those characters), else `from_texts(texts)`."""
    return cls(data_cfg.alphabet) if data_cfg.alphabet else cls.from_texts(texts)

  def unknown_chars(self, text: str) -> list[str]:
    """The distinct characters of `text` outside the alphabet, sorted."""
    return sorted({c for c in text if c not in self._index})

  def count_unknown(self, text: str) -> int:
    """How many characters of `text` (with repeats) are outside the alphabet: those "map" turns into 1."""
    return sum(c not in self._index for c in text)

  def check_known(self, texts: Sequence[str], what: str = "the text") -> None:
    """The one unknown-character policy: UnknownCharactersError naming every character of `texts` (`what` they
    are) outside the alphabet (each once, sorted) and the characters there are."""
    unknown = sorted({c for text in texts for c in self.unknown_chars(text)})
    if unknown:
      raise UnknownCharactersError(
        f"{what} holds characters this model cannot write: {_format_chars(unknown)}; its alphabet is {self._chars!r}"
      )

  def encode(self, text: str, on_unknown: str = "error") -> np.ndarray:
    """Ids of `text` as int32 [len(text)]; unknown characters raise ("error": `check_known`) or become UNKNOWN_ID
    ("map")."""
    if on_unknown not in _ON_UNKNOWN:
      raise ValueError(f"on_unknown must be one of {_ON_UNKNOWN}, got {on_unknown!r}")
    if on_unknown == "error":
      self.check_known([text])
    return np.fromiter((self._index.get(c, UNKNOWN_ID) for c in text), dtype=np.int32, count=len(text))

  def encode_all(self, texts: Sequence[str], on_unknown: str = "error") -> tuple[list[np.ndarray], int]:
    """Encode many texts; returns (ids per text, number of unknown characters mapped to UNKNOWN_ID).

    With "error" the exception lists the unknown characters of all the texts at once.
    """
    if on_unknown not in _ON_UNKNOWN:
      raise ValueError(f"on_unknown must be one of {_ON_UNKNOWN}, got {on_unknown!r}")
    if on_unknown == "error":
      self.check_known(texts)
    ids = [self.encode(text, on_unknown="map") for text in texts]
    num_unknown = sum(int(np.count_nonzero(x == UNKNOWN_ID)) for x in ids)
    return ids, num_unknown

  def decode(self, ids: Iterable[int], unknown: str = UNKNOWN_SYMBOL) -> str:
    """The text of `ids` (padding skipped, UNKNOWN_ID written as `unknown`)."""
    out = []
    for i in np.asarray(ids).reshape(-1).tolist():
      if i == PAD_ID:
        continue
      if i == UNKNOWN_ID:
        out.append(unknown)
      elif FIRST_CHAR_ID <= i < self.size:
        out.append(self._chars[i - FIRST_CHAR_ID])
      else:
        raise ValueError(f"id {i} is outside this alphabet (valid ids 0..{self.size - 1})")
    return "".join(out)

  def __eq__(self, other: object) -> bool:
    """Equal when the characters and their order are equal."""
    return isinstance(other, Alphabet) and other._chars == self._chars

  def __hash__(self) -> int:
    """Hash of the characters."""
    return hash(self._chars)

  def __repr__(self) -> str:
    """`Alphabet('...')`."""
    return f"Alphabet({self._chars!r})"


def _format_chars(chars: Iterable[str]) -> str:
  """`'a', 'é', '\\n'`: each character's repr, comma separated."""
  return ", ".join(repr(c) for c in chars)
