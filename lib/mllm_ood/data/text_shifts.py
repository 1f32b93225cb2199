"""Text shifts of prompts (paper B's text axis): synonym replacement (2 levels), keyboard typos
(2 levels, nlpaug offline), and the same question written in several languages.
"""

from __future__ import annotations

import json
import random
import re
from functools import lru_cache

import numpy as np

from ..paths import RESOURCES
from ..seeding import derive_seed, rng
from ..validation import check_choice

TEXT_CONDITIONS = ["clean", "synonym-1", "synonym-2", "typo-1", "typo-2"]
# Fraction of replaceable words replaced (synonyms) / of words hit by typos, per level.
SYNONYM_RATE = {1: 0.3, 2: 0.8}
TYPO_WORD_RATE = {1: 0.2, 2: 0.5}

# "What is in this image?" in the seven languages of paper B's natural-shift grid (our translations).
QUESTION_BY_LANGUAGE = {
    "english": "What is in this image?",
    "german": "Was ist auf diesem Bild?",
    "chinese": "这张图片里有什么？",
    "korean": "이 이미지에는 무엇이 있습니까?",
    "greek": "Τι υπάρχει σε αυτή την εικόνα;",
    "arabic": "ماذا يوجد في هذه الصورة؟",
    "hindi": "इस चित्र में क्या है?",
}
LANGUAGES = list(QUESTION_BY_LANGUAGE)


@lru_cache(maxsize=1)
def synonym_table() -> dict[str, list[str]]:
    """The project's synonym table (resources/synonyms.json), lower-case word -> replacements."""
    table = json.loads((RESOURCES / "synonyms.json").read_text())
    table.pop("_comment", None)
    return table


def synonym_replace(text: str, level: int, seed: int) -> str:
    """Replace a level-dependent fraction of the words found in the synonym table (case kept on first letter)."""
    check_choice("synonym level", level, SYNONYM_RATE)
    table = synonym_table()
    r = rng(seed, "synonym", level, text)

    def swap(m: re.Match) -> str:
        word = m.group(0)
        options = table.get(word.lower())
        if not options or r.random() >= SYNONYM_RATE[level]:
            return word
        new = options[int(r.integers(len(options)))]
        return new[0].upper() + new[1:] if word[0].isupper() else new

    return re.sub(r"[A-Za-z]+", swap, text)


def keyboard_typos(text: str, level: int, seed: int) -> str:
    """Keyboard-neighbour character swaps (nlpaug KeyboardAug, offline); deterministic given ``seed``."""
    check_choice("typo level", level, TYPO_WORD_RATE)
    import nlpaug.augmenter.char as nac

    aug = nac.KeyboardAug(aug_char_p=0.3, aug_word_p=TYPO_WORD_RATE[level], min_char=3,
                          include_special_char=False, include_numeric=False, include_upper_case=False)
    # nlpaug draws from the global generators; seed them, then restore the caller's state.
    state, np_state = random.getstate(), np.random.get_state()
    try:
        s = derive_seed(seed, "typo", level, text)
        random.seed(s)
        np.random.seed(s)
        out = aug.augment(text)
    finally:
        random.setstate(state)
        np.random.set_state(np_state)
    return out[0] if isinstance(out, list) else out


def apply_text_shift(text: str, condition: str, seed: int) -> str:
    """Apply one of TEXT_CONDITIONS ('clean', 'synonym-1/2', 'typo-1/2') to ``text``."""
    check_choice("text condition", condition, TEXT_CONDITIONS)
    if condition == "clean":
        return text
    kind, level = condition.split("-")
    return (synonym_replace if kind == "synonym" else keyboard_typos)(text, int(level), seed)


def question_in(language: str) -> str:
    """The zero-shot question in one of LANGUAGES."""
    check_choice("language", language, LANGUAGES)
    return QUESTION_BY_LANGUAGE[language]
