"""Text pairs from a file: raw strings in, one shared encoder with its tokenisation inside.

Reads `[data]` as `TextFileDataConfig` (the file, its format, columns, split column, a threshold or
the regression task for graded scores, dropping invalid rows, fractions) and `[model]` as
`TextPairModelConfig` (encoder, head, loss, vocabulary, word vectors). The file is validated row
by row, then split so that a pair, its swapped twin and its duplicates share a split
(`siamese.data.text_pairs`). Vocabularies are adapted on the training split only and sit inside
the shared encoder, so the saved model scores raw text. The default encoder is `lexical`
(character and word n-gram bags; `siamese.models.text`), chosen by measurement against the
baselines logged beside it on the same test split: majority class, word and character TF-IDF
cosines and the Siamese-linear model. Graded scores (`data.task = "regression"`): the model's
0..1 output is put on the training split's score scale (`on_score_scale`) and trained with mean
squared error; baselines are TF-IDF cosines and a Ridge regression, by Pearson and Spearman
correlation. Shipped as `siamese-text` (graded: `siamese-text-graded`, one registered model per
contract), a pyfunc over the `.keras` file that takes a DataFrame of `left` and `right` strings.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np

from siamese.baselines import graded_text_baselines, text_baselines
from siamese.config import Config, ConfigError, Loss, ModelKind, Task, TextEncoder, TextPairModelConfig
from siamese.data.tables import PairFileError, ReadOptions
from siamese.data.text_pairs import TextPairs, WithRandomNegatives, load_text_pairs, split_by_column, split_text_pairs
from siamese.data.word_vectors import WordVectors, load_word_vectors
from siamese.families.base import BuiltModel, Family, ModelFormat, PreparedSplits, SourceFile
from siamese.models.layers import on_score_scale
from siamese.models.text import build_text_pair_model, build_tokenizer
from siamese.training import ContrastiveLoss

LOGGER = logging.getLogger(__name__)


class TextPairFile(Family):
    kind = ModelKind.TEXT
    experiment = "siamese-text"
    registered_name = "siamese-text"
    graded_registered_name = "siamese-text-graded"
    collection_registered_name = "siamese-text-collection"
    model_format = ModelFormat.RAW_TEXT

    def prepare_splits(self, config: Config, directory: Path) -> PreparedSplits:
        """Validate the pair file and split it, twins together; the splits are written as Parquet.

        With `data.split_column` the file's own (published) split is used instead, validation carved
        from train when the file has none (`split_by_column`).

        Raises:
            PairFileError: the file cannot be parsed (naming the line and the option to try) or read,
                fails validation (naming the column, the rows and the count), or has too few rows
                to give every split both labels.
        """
        data = config.data
        graded = data.task is Task.REGRESSION
        loaded = load_text_pairs(
            data.path,
            left_column=data.left_column or None,
            right_column=data.right_column or None,
            label_column=data.label_column or None,
            threshold=data.threshold,
            graded=graded,
            drop_invalid_rows=data.drop_invalid_rows,
            split_column=data.split_column or None,
            options=ReadOptions(data.format, data.quoting),
        )
        try:
            if loaded.splits is not None:
                splits = split_by_column(loaded.pairs, loaded.splits, data.validation_fraction, config.seed, graded)
            else:
                splits = split_text_pairs(loaded.pairs, data.validation_fraction, data.test_fraction, config.seed, graded)
        except ValueError as error:  # too few pairs for a split to hold both labels
            raise PairFileError(f"{Path(data.path).name}: {error}") from None
        columns = loaded.columns
        source = SourceFile(
            loaded.source, loaded.content_hash, loaded.total_rows, loaded.dropped, (columns.left, columns.right, columns.label)
        )
        return self.write_splits(splits, directory, config.task, source)

    def load_split(self, config: Config, path: Path) -> TextPairs:
        return TextPairs.load(path)

    def build(self, config: Config, train: TextPairs, dtype_policy: str) -> keras.Model:
        return self.build_with_params(config, train, dtype_policy).model

    def build_with_params(self, config: Config, train: TextPairs, dtype_policy: str) -> BuiltModel:
        """The vocabularies are learnt from the training split's texts (both sides), never from test.

        The scoring unit's L2 penalty is `0.5 / training pairs`: the objective of a logistic
        regression with C = 1 (the Siamese-linear baseline's), which needs no tuning per data set.
        With word vectors, the params say how much of the vocabulary they cover
        (`model.embeddings_found`, `model.embeddings_coverage`, `model.embeddings_missing`).
        """
        model = config.model
        texts = np.concatenate([train.left, train.right])
        tokenizer = None  # the lexical encoder has its own vocabularies, and no word sequence
        if model.encoder is not TextEncoder.LEXICAL:
            tokenizer = build_tokenizer(texts, vocabulary_size=model.vocabulary_size, sequence_length=model.sequence_length)
        vectors = self._word_vectors(model, tokenizer, config.seed)
        pair_model = build_text_pair_model(
            tokenizer,
            encoder=model.encoder,
            train_texts=texts,
            vocabulary_size=model.vocabulary_size,
            embedding_dim=model.embedding_dim,
            units=model.units,
            head=model.head,
            dropout=model.dropout,
            l2=0.5 / len(train),
            word_vectors=None if vectors is None else vectors.matrix,
            fine_tune_embeddings=model.fine_tune_embeddings,
            dtype_policy=dtype_policy,
        )
        if config.task is Task.REGRESSION:  # graded scores: 0..1 inside, the training split's scale out
            pair_model = on_score_scale(pair_model, float(train.labels.min()), float(train.labels.max()))
        return BuiltModel(pair_model, {} if vectors is None else _coverage_params(vectors))

    def trainer(self, config: Config, model: keras.Model, train: TextPairs) -> tuple[keras.Model, TextPairs | WithRandomNegatives]:
        """Training sees random pairs of unrelated texts beside the file's (`model.random_negatives`).

        Unrelated is 0, or a graded file's lowest score in training: the bottom of the scale the model outputs.
        """
        if config.model.random_negatives <= 0:
            return model, train
        unrelated = float(train.labels.min()) if config.task is Task.REGRESSION else 0.0
        return model, WithRandomNegatives(train, config.model.random_negatives, unrelated)

    def search_space(self, config: Config) -> dict[str, dict[str, object]]:
        """The rate and batch size, the head, the loss and the vocabulary; a learned encoder's units and dropout too.

        The vocabulary (terms kept per n-gram bag) is the lexical encoder's capacity: how much of a
        data set's wording it can tell apart. The heads are those over `[|a-b|, a*b]`: the cosine
        head lost to them by 0.02-0.07 validation AUC in every trial of the first Quora sweep
        (BENCHMARKS.md, "Sweeps"). The encoder itself is not searched: without word vectors the
        lexical encoder beat the learned ones on every development set ("Model quality"), and a
        BiLSTM trial costs many lexical ones. A config that chose a learned encoder gets its size searched.
        """
        space = super().search_space(config) | {
            "model.head": {"choices": ["symmetric", "monotone"]},
            "model.vocabulary_size": {"choices": [10_000, 20_000, 40_000]},
        }
        if config.task is Task.SIMILARITY:
            space["model.loss"] = {"choices": ["binary_crossentropy", "contrastive"]}
        if config.model.encoder is not TextEncoder.LEXICAL:
            space |= {"model.units": {"low": 16, "high": 128, "step": 16}, "model.dropout": {"low": 0.0, "high": 0.5}}
        return space

    def registered_model_name(self, config: Config) -> str:
        """Graded models return scores on their file's scale (0-5), not 0..1 similarities: another contract.

        A gate comparing one with a 0/1 champion, or `siamese score` deciding at a 0..1 threshold,
        would be meaningless, so graded runs get their own registered model. So do models trained
        with random unrelated pairs (`model.random_negatives`): made for whole collections, they
        give up some AUC on labelled pairs, by which a pair champion would always beat them.
        """
        if config.task is Task.REGRESSION:
            return self.graded_registered_name
        return self.collection_registered_name if config.model.random_negatives > 0 else self.registered_name

    def loss(self, config: Config) -> str | keras.losses.Loss:
        if config.task is Task.SIMILARITY and config.model.loss is Loss.CONTRASTIVE:
            return ContrastiveLoss(config.model.margin)
        return super().loss(config)

    @staticmethod
    def _word_vectors(model: TextPairModelConfig, tokenizer: keras.layers.TextVectorization | None, seed: int) -> WordVectors | None:
        """The user's word vectors aligned to the vocabulary, with their coverage (also logged), or None; never downloaded."""
        if not model.embeddings or tokenizer is None:  # the config allows vectors only with a tokenised encoder
            return None
        vectors = load_word_vectors(model.embeddings, tokenizer.get_vocabulary(), seed=seed)
        if vectors.dimension != model.embedding_dim:
            raise ConfigError(
                f"model.embedding_dim is {model.embedding_dim} but {Path(model.embeddings).name} holds "
                f"{vectors.dimension}-dimensional vectors: set model.embedding_dim = {vectors.dimension}"
            )
        LOGGER.info(
            "word vectors from %s cover %.1f%% of the vocabulary (%d words); most frequent missing: %s",
            vectors.path, 100 * vectors.coverage, vectors.found, ", ".join(vectors.missing) or "none",
        )
        return vectors

    def baselines(self, config: Config, train: TextPairs, validation: TextPairs, test: TextPairs) -> dict[str, float]:
        compare = graded_text_baselines if config.task is Task.REGRESSION else text_baselines
        return compare(train.left, train.right, train.labels, test.left, test.right, test.labels)

    def data_name(self, config: Config) -> str:
        return Path(config.data.path).name


def _coverage_params(vectors: WordVectors) -> dict[str, object]:
    """How far the word vectors reach, for the run: low coverage means mostly random, frozen embeddings."""
    return {
        "model.embeddings_found": vectors.found,
        "model.embeddings_coverage": round(vectors.coverage, 4),
        "model.embeddings_missing": ", ".join(vectors.missing) or "none",  # the most frequent vocabulary words without one
    }
