"""Texts without a word (only punctuation, symbols or emoji) cannot be scored, like blank ones."""

from __future__ import annotations

import pandas as pd

from siamese.data.text_pairs import unscorable_rows


def test_a_text_without_a_letter_or_digit_is_unscorable_and_blank_is_named_first():
    left = pd.Series(["😀🎉", "?!...", "ok", "Ünïcode", "", "---", "42", "¿qué?", None])
    right = pd.Series(["fine", "fine", "👍", "ñ", "🎉", "", "#", "ok", "…"])
    assert unscorable_rows(left, right).tolist() == [
        "no words in left text (only punctuation, symbols or emoji)",
        "no words in left text (only punctuation, symbols or emoji)",
        "no words in right text (only punctuation, symbols or emoji)",
        None,
        "empty or missing left text",
        "empty or missing right text",  # blank before wordless, whichever side
        "no words in right text (only punctuation, symbols or emoji)",
        None,
        "empty or missing left text",
    ]
