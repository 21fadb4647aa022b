"""A tokenised text pair model learns duplicate questions, and beats the lexical baseline on them.

sample question file -> split_text_file -> build_tokenizer (training split) -> build_siamese_model
-> fit -> predict, as the flow does, on the 2,000 sample pairs. Trains for about 20 s on two CPU
cores.
"""

from __future__ import annotations

import keras

from siamese.baselines import text_baselines
from siamese.config import load_config
from siamese.data.sample_questions import sample_question_pairs
from siamese.data.sources import split_text_file
from siamese.evaluation import roc_auc
from siamese.models import build_siamese_model
from siamese.models.text import build_tokenizer
from siamese.training import compile_for_training, fit, predict


def test_text_pair_model_beats_tfidf_on_sample_questions(tmp_path):
    sample_question_pairs(2000).to_csv(tmp_path / "questions.csv", index=False)
    config = load_config(
        None, {"data.path": str(tmp_path / "questions.csv"), "training.epochs": 20, "training.learning_rate": 0.002}
    )
    keras.utils.set_random_seed(config.seed)
    splits, _ = split_text_file(config.data, config.seed)
    train, test = splits.train, splits.test
    tokenizer = build_tokenizer(
        [*train.left, *train.right], vocabulary_size=config.model.vocabulary_size, sequence_length=config.model.sequence_length
    )
    model = build_siamese_model(config, tokenizer=tokenizer)
    compile_for_training(model, config.training)
    fit(model, train, splits.validation, config.training, verbose=0, seed=config.seed)

    auc = roc_auc(test.labels, predict(model, test)[:, 0])
    baseline = text_baselines(train.left, train.right, train.labels, test.left, test.right, test.labels)
    assert auc >= 0.9, f"test AUC {auc:.3f}"
    assert auc >= baseline["tfidf_cosine_auc"] + 0.1, f"test AUC {auc:.3f} vs TF-IDF {baseline['tfidf_cosine_auc']:.3f}"
