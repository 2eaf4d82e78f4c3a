"""Vocabulary and random sentences for the embedded (Hershey-font) corpus.

The words are common English words plus a few chosen so that every letter (rare ones such as j, q, x, z and
every capital) appears many times in a corpus of a few thousand lines; numbers, contractions and punctuation
make the remaining characters of `ALPHABET` frequent too. Sentences are drawn from a numpy `Generator`, so a
corpus is a pure function of its seed.
"""

import numpy as np

# Every character a generated sentence may contain (the space included).
ALPHABET = (" !\"'(),-.0123456789:;?"
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            "abcdefghijklmnopqrstuvwxyz")

_WORDS = """
a about above across act add after again against age ago air all almost alone along already also always am
among an and animal another answer any anything appear are area arm around art as ask at away back bad ball
bank base be bear beat beautiful because bed been before began begin behind being believe below best better
between big bird black blue board boat body book both box boy bread break bring brother brown build built
busy but buy by call came can car care carry case cat catch cause center certain chair chance change check
child children city class clean clear close cloud cold color come common complete could country course cover
cross cry cut dance dark day dead deal dear decide deep did different do doctor does dog done door down draw
dream dress drink drive dry during each early earth east easy eat edge egg eight either else end enjoy
enough equal even evening ever every exact example excellent except expect explain extra eye face fact fall
family far farm fast father fear feel feet few field fight fill final find fine finger fire first fish five
fix floor fly follow food foot for force forest form found four free fresh friend from front fruit full fun
game garden gave get girl give glad glass go gold gone good got great green ground group grow had half hand
happen happy hard has have he head hear heart heavy held help her here high hill him his hold home hope horse
hot hour house how huge hundred hunt idea if important in inside into is island it its job join joke journey
joy judge juice jump jungle just keep kept key kind king kitchen knew know lady lake land language large last
late laugh lay lazy lead learn least leave left leg less let letter life light like line list listen little
live long look lost lot love low made main major make man many map mark market matter may maze me mean meet
men middle might mile milk mind minute miss mix money month moon more morning most mother mountain move much
music must my name near need never new next nice night nine no north not note nothing now number object
ocean of off often oil old on once one only open or order other our out over own page paper part party pass
past pay people perhaps person picture piece place plain plan plant play please point poor possible power
prize problem produce pull put puzzle quarter queen question quick quickly quiet quite quiz race rain ran
reach read ready real reason red remember rest rich ride right river road rock room round rule run said same
sat saw say school sea second see seem sell send sentence seven several shall she ship short should show
side sign simple since sing sister sit six size sky sleep slow small snow so soft some something son song
soon sound south space speak special spring square stand star start state stay step still stone stop story
street strong study such sudden summer sun sure swim table tail take talk tall taxi teach tell ten test text
than that the their them then there these they thing think this those though thought three through time
tiny to today together told too took top toward town tree true try turn two under until up upon us use
usual valley very view village visit voice vote wait walk wall want warm was watch water wave way we wear
weather week well went were west what wheel when where which while white who whole why wide wild will win
wind window winter wish with without woman wonder wood word work world would write wrong yard year yellow
yes yet you young your zebra zero zone zoo
""".split()

# Capitalised words (names, places, months, days) so that every capital letter is frequent.
_NAMES = """
Alice Anna Boston Bella Carl Clara Dublin David Emma Edward Frank Fiona George Grace Harry Helen Ivan Iris
Jack Julia June July Kate Kevin Lisa London Mark Mary Nancy Nick Oscar Olga Paris Peter Quinn Queenie Rome
Rachel Sam Sarah Tom Tuesday Ursula Uncle Victor Vera Walter Wendy Xavier Xena Yvonne York Zoe Zurich
Monday Friday Sunday August October Quebec Utah Oxford Ireland Egypt
""".split()

_CONTRACTIONS = """
don't can't it's I'm we'll they're you've she's isn't won't I'd he's that's let's
""".split()

_END_MARKS = (".", ".", ".", "!", "?")
_INNER_MARKS = (",", ",", ",", ";", ":")


def vocabulary() -> list[str]:
  """All plain word forms the sentence generator draws from (for inspection and tests)."""
  return list(_WORDS) + list(_NAMES) + list(_CONTRACTIONS)


def _number(rng: np.random.Generator) -> str:
  """A number as people write them: small integers, years, clock times, decimals."""
  kind = rng.integers(5)
  if kind == 0:
    return str(int(rng.integers(0, 100)))
  if kind == 1:
    return str(int(rng.integers(100, 10000)))
  if kind == 2:
    return str(int(rng.integers(1900, 2031)))
  if kind == 3:
    return f"{int(rng.integers(1, 13))}:{int(rng.integers(0, 60)):02d}"
  return f"{int(rng.integers(0, 100))}.{int(rng.integers(0, 10))}"


def _word(rng: np.random.Generator) -> str:
  """One token: mostly common words, sometimes a name, number, contraction or capitalised word."""
  u = rng.random()
  if u < 0.72:
    return str(_WORDS[rng.integers(len(_WORDS))])
  if u < 0.82:
    return str(_NAMES[rng.integers(len(_NAMES))])
  if u < 0.88:
    return _number(rng)
  if u < 0.93:
    return str(_CONTRACTIONS[rng.integers(len(_CONTRACTIONS))])
  return str(_WORDS[rng.integers(len(_WORDS))]).capitalize()


def random_sentence(rng: np.random.Generator, min_words: int, max_words: int) -> str:
  """A random sentence of min_words..max_words tokens with English-like punctuation."""
  if not 1 <= min_words <= max_words:
    raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
  n = int(rng.integers(min_words, max_words + 1))
  words = [_word(rng) for _ in range(n)]
  if rng.random() < 0.5:
    words[0] = words[0][:1].upper() + words[0][1:]
  for i in range(n):
    u = rng.random()
    if u < 0.04:
      words[i] = f'"{words[i]}"'
    elif u < 0.08:
      words[i] = f"({words[i]})"
    elif u < 0.11:
      words[i] = f"{words[i]}-{_WORDS[rng.integers(len(_WORDS))]}"
    elif u < 0.13 and words[i][-1].isalpha():
      words[i] += "'s"
    if i < n - 1 and rng.random() < 0.12:
      words[i] += _INNER_MARKS[rng.integers(len(_INNER_MARKS))]
  if rng.random() < 0.45:
    words[-1] += _END_MARKS[rng.integers(len(_END_MARKS))]
  return " ".join(words)
