"""A tokenised text pair model learns duplicate questions, and beats the lexical baseline on them.

sample question file -> the text family's splits -> its model (tokenizer adapted on the training
split) -> fit -> predict, as the flow does, on the 2,000 sample pairs, with the defaults. Trains
for about 10 s on two CPU cores.
"""

from __future__ import annotations

import keras
import numpy as np

from siamese.config import ModelKind, load_config
from siamese.data.sample_questions import sample_question_pairs
from siamese.data.text_pairs import TextPairs
from siamese.evaluation import roc_auc
from siamese.families import family_of
from siamese.training import compile_for_training, fit, predict


def test_text_pair_model_beats_tfidf_on_sample_questions(tmp_path):
    sample_question_pairs(2000).to_csv(tmp_path / "questions.csv", index=False)
    config = load_config(
        None, {"data.path": str(tmp_path / "questions.csv")}
    )
    assert config.kind is ModelKind.TEXT
    family = family_of(config.kind)
    paths = family.prepare_splits(config, tmp_path).paths
    train, validation, test = (family.load_split(config, paths[name]) for name in ("train", "validation", "test"))
    keras.utils.set_random_seed(config.seed)
    model = family.build(config, train, "float32")
    compile_for_training(model, config.training, config.task, family.loss(config))
    fit(model, train, validation, config.training, verbose=0, seed=config.seed)

    auc = roc_auc(test.labels, predict(model, test)[:, 0])
    baseline = family.baselines(config, train, validation, test)
    assert auc >= 0.9, f"test AUC {auc:.3f}"
    assert auc >= baseline["tfidf_cosine_auc"] + 0.1, f"test AUC {auc:.3f} vs TF-IDF {baseline['tfidf_cosine_auc']:.3f}"


def test_random_unrelated_pairs_in_training_teach_the_model_to_reject_them(tmp_path):
    """The file's pairs are all on one topic each; unrelated texts are what a collection is full of.

    Trained on the file alone, the model has never seen two unrelated questions; with
    `model.random_negatives`, it scores them lower, judged on pairs of test questions drawn at
    random (never seen in training).
    """
    sample_question_pairs(1000).to_csv(tmp_path / "questions.csv", index=False)
    unrelated_scores = {}
    for random_negatives in (0.0, 1.0):
        config = load_config(None, {"data.path": str(tmp_path / "questions.csv"), "model.random_negatives": random_negatives, "training.epochs": 5})
        family = family_of(config.kind)
        paths = family.prepare_splits(config, tmp_path / str(random_negatives)).paths
        train, validation, test = (family.load_split(config, paths[name]) for name in ("train", "validation", "test"))
        keras.utils.set_random_seed(config.seed)
        model = family.build(config, train, "float32")
        trainer, train_data = family.trainer(config, model, train)
        compile_for_training(trainer, config.training, config.task, family.loss(config))
        fit(trainer, train_data, validation, config.training, verbose=0, seed=config.seed)
        shuffled = test.take(np.random.default_rng(0).permutation(len(test)))
        unrelated = TextPairs(test.left, shuffled.right, np.zeros(len(test)), test.rows)
        unrelated_scores[random_negatives] = float(np.median(predict(model, unrelated)))
    assert unrelated_scores[1.0] < unrelated_scores[0.0] - 0.1, unrelated_scores
