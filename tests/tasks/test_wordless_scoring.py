"""`siamese score`'s scoring step with a real registered text model: emoji and punctuation rows are refused like blank ones."""

from __future__ import annotations

import pandas as pd
from task_helpers import register_untrained, text_config

from siamese.data.text_pairs import PairColumns
from tasks.registry import load_text_pair_scorer
from tasks.scoring import DecisionThreshold, score_file


def test_rows_without_words_get_no_score_and_say_why(module_store, tmp_path):
    registered = register_untrained(text_config(tmp_path), tmp_path / "work")[0]
    model = load_text_pair_scorer.fn(f"models:/{registered['name']}/{registered['version']}")
    source, output = tmp_path / "new_pairs.csv", tmp_path / "scores.csv"
    pairs = pd.DataFrame(
        {
            "left": ["how do I learn python", "😀😀😀", "?!?", "what is a good book", ""],
            "right": ["how can I learn python", "how do I cook rice", "what is love", "🎉👍", "a text"],
        }
    )
    pairs.to_csv(source, index=False)

    summary = score_file.fn(model.predict, source, output, PairColumns("left", "right", None), DecisionThreshold(0.5, "given"))

    scores = pd.read_csv(output)
    assert scores.similarity.notna().tolist() == [True, False, False, False, False]
    assert scores.error.tolist()[1:] == [
        "no words in left text (only punctuation, symbols or emoji)",
        "no words in left text (only punctuation, symbols or emoji)",
        "no words in right text (only punctuation, symbols or emoji)",
        "empty or missing left text",
    ]
    assert summary.scored == 1 and summary.unscorable == {
        "no words in left text (only punctuation, symbols or emoji)": 2,
        "no words in right text (only punctuation, symbols or emoji)": 1,
        "empty or missing left text": 1,
    }
