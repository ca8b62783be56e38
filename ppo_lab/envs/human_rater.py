"""The hidden "human" taste that chapter 8's preferences come from.

The notebook never shows this rule: like real annotators, it is only observed through the
choices it makes between two responses. A student may of course read this file, but the
chapter works best if they first guess the rule from the reward model's behaviour.

The rule, for one review:
* sentiment: +1 per positive word, -1 per negative word, squashed by ``tanh`` so that a
  clearly positive review is about as good as it gets (more praise adds almost nothing);
* repetition: -0.5 for every noun or adjective the review already used;
* fluency: -0.5 for every pair of neighbouring words whose grammatical categories never follow
  each other in the corpus ("great great", "the the", "and ." ...);
* -1 if the review never ends (no ``<eos>`` within the length limit).
"""
from __future__ import annotations

import math
from functools import lru_cache

from ..models import tiny_lm

_POLARITY = {w: 1 for w in tiny_lm.POSITIVE} | {w: -1 for w in tiny_lm.NEGATIVE}
# Closers carry sentiment too; one word of each closer is enough to count it once.
_POLARITY |= {"loved": 1, "recommended": 1, "five": 1, "back": 1,
              "avoid": -1, "one": -1, "never": -1, "waste": -1}

_CATEGORY = {w: "adj" for w in tiny_lm.POSITIVE + tiny_lm.NEGATIVE + tiny_lm.NEUTRAL}
_CATEGORY |= {w: "noun" for nouns in tiny_lm.TOPICS.values() for w in nouns}
_CATEGORY |= {w: "verb" for w in tiny_lm.VERBS} | {w: "adverb" for w in tiny_lm.ADVERBS}
_CONTENT = {"adj", "noun"}

SENTIMENT_SCALE = 0.7
REPEAT_PENALTY = 0.5
DISFLUENCY_PENALTY = 0.5
UNFINISHED_PENALTY = 1.0


def _category(word: str) -> str:
    return _CATEGORY.get(word, word)


@lru_cache(maxsize=1)
def _fluent_bigrams() -> frozenset:
    """Category bigrams that occur in the grammar (enough samples to see every one)."""
    pairs = set()
    for review in tiny_lm.generate_corpus(20000, seed=12345):
        cats = [tiny_lm.BOS] + [_category(w) for w in review] + [tiny_lm.EOS]
        pairs.update(zip(cats, cats[1:]))
    return frozenset(pairs)


def _judge(words: list[str], finished: bool) -> tuple[float, int, int]:
    """``(sentiment term, repeated content words, disfluent word pairs)`` of one review."""
    sentiment = math.tanh(SENTIMENT_SCALE * sum(_POLARITY.get(w, 0) for w in words))
    seen, repeats = set(), 0
    for w in words:
        if _category(w) in _CONTENT:
            repeats += w in seen
            seen.add(w)
    cats = [tiny_lm.BOS] + [_category(w) for w in words] + ([tiny_lm.EOS] if finished else [])
    fluent = _fluent_bigrams()
    disfluent = sum(pair not in fluent for pair in zip(cats, cats[1:]))
    return sentiment, repeats, disfluent


def score_words(words: list[str], finished: bool) -> float:
    """The hidden score of one review given as words (no special tokens).

    ``finished``: whether the review ended with ``<eos>``.
    """
    sentiment, repeats, disfluent = _judge(words, finished)
    return (sentiment - REPEAT_PENALTY * repeats - DISFLUENCY_PENALTY * disfluent
            - UNFINISHED_PENALTY * (not finished))


def is_well_formed(words: list[str], finished: bool) -> bool:
    """Finished, no repeated noun/adjective, every word pair grammatical: the grammar's own
    reviews always are (a language-model quality measure that ignores sentiment)."""
    _, repeats, disfluent = _judge(words, finished)
    return finished and repeats == 0 and disfluent == 0
