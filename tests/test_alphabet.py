"""Tests of handwriting_jax.data.alphabet: ids, unknown characters, round trips."""

import chex
import ml_collections
import numpy as np
import pytest

from handwriting_jax.data import alphabet as alphabet_lib
from handwriting_jax.data.alphabet import Alphabet, UnknownCharactersError


def test_ids_and_size():
  """Padding is 0, unknown is 1, characters start at 2 in the given order."""
  a = Alphabet("ba c")
  assert a.size == 6
  assert a.chars == "ba c"
  ids = a.encode("abc ")
  chex.assert_shape(ids, (4,))
  chex.assert_type(ids, np.int32)
  np.testing.assert_array_equal(ids, [3, 2, 5, 4])
  assert alphabet_lib.PAD_ID == 0 and alphabet_lib.UNKNOWN_ID == 1


def test_from_texts_sorted_unique():
  """from_texts keeps every character once, sorted by code point."""
  a = Alphabet.from_texts(["hello", "world!", ""])
  assert a.chars == "!dehlorw"


def test_encode_decode_round_trip():
  """decode(encode(text)) == text, and padding is skipped."""
  a = Alphabet.from_texts(["The quick brown fox, 42."])
  text = "brown fox 42"
  assert a.decode(a.encode(text)) == text
  padded = np.concatenate([a.encode(text), np.zeros(5, np.int32)])
  assert a.decode(padded) == text
  assert a.encode("").shape == (0,)


def test_unknown_error_lists_every_character():
  """on_unknown='error' raises a ValueError naming each unknown character once, sorted, and the allowed set."""
  a = Alphabet("abc")
  with pytest.raises(UnknownCharactersError) as info:
    a.encode("abzxz\n")
  assert isinstance(info.value, ValueError)
  msg = str(info.value)
  assert "'\\n', 'x', 'z'" in msg
  assert "'abc'" in msg
  assert msg.count("'z'") == 1


def test_encode_all_error_lists_characters_of_all_texts():
  """encode_all names the unknown characters across every text."""
  a = Alphabet("ab")
  with pytest.raises(UnknownCharactersError, match="'c', 'd'"):
    a.encode_all(["ac", "bd"])


def test_map_mode_counts_unknown():
  """on_unknown='map' turns unknown characters into id 1 and they are counted."""
  a = Alphabet("ab")
  ids = a.encode("axbyx", on_unknown="map")
  np.testing.assert_array_equal(ids, [2, 1, 3, 1, 1])
  assert a.count_unknown("axbyx") == 3
  assert a.unknown_chars("axbyx") == ["x", "y"]
  encoded, count = a.encode_all(["axb", "yy", "ab"], on_unknown="map")
  assert count == 3
  np.testing.assert_array_equal(encoded[1], [1, 1])
  assert a.decode(ids, unknown="?") == "a?b??"


def test_bad_arguments():
  """Duplicate characters, empty alphabets, bad modes and out-of-range ids are errors."""
  with pytest.raises(ValueError, match="more than once"):
    Alphabet("abca")
  with pytest.raises(ValueError, match="empty"):
    Alphabet("")
  with pytest.raises(ValueError, match="on_unknown"):
    Alphabet("a").encode("a", on_unknown="drop")
  with pytest.raises(ValueError, match="outside"):
    Alphabet("a").decode([3])


def test_chars_round_trip_and_equality():
  """`Alphabet(a.chars)` (how a checkpoint's alphabet is restored) gives an equal alphabet, order kept."""
  a = Alphabet("zé a\"'\n")
  b = Alphabet(a.chars)
  assert b == a and b.chars == a.chars and b.encode("a z").tolist() == a.encode("a z").tolist()
  assert Alphabet("ab") != Alphabet("ba")


def test_from_config():
  """A non-empty config.data.alphabet is used as is; an empty one means every character of the texts."""
  cfg = ml_collections.ConfigDict({"alphabet": "xyz"})
  assert Alphabet.from_config(cfg, ["abc"]).chars == "xyz"
  cfg.alphabet = ""
  assert Alphabet.from_config(cfg, ["cab"]).chars == "abc"
  cfg.alphabet = "xx"
  with pytest.raises(ValueError, match="more than once"):
    Alphabet.from_config(cfg, ["abc"])
