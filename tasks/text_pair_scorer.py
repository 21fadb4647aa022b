"""The MLflow model of a text pair run: raw `left` and `right` strings in, a similarity (and decision) per row out.

A similarity model's `similarity` lies in 0..1; a model of graded scores (0-5, 1-5, ...) returns
the score on its file's scale there (the Keras model itself ends on that scale), with no decision.
On request (`params={"output": "embedding"}`) it returns each side's embedding instead
(`left_embedding`, `right_embedding`: what `siamese.embedding.Embedder.embed` gives the text).

Logged as code (MLflow's "models from code"): MLflow copies this file into the model and runs it
on loading. Loading it and scoring similarity import nothing of this project, and the Keras model
it wraps holds built-in layers only, so the registered model loads in any Python process with
TensorFlow, Keras, MLflow and pandas installed (`mlflow.pyfunc.load_model("models:/siamese-text@champion")`).
Embeddings need `siamese.embedding`: the model carries its own copy of the `siamese` package
(`code_paths`, which MLflow puts on `sys.path` when it loads the model), imported on the first
request for them, so they too work in a fresh process and from `mlflow models serve`.
"""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

PREDICT_BATCH_SIZE = 512
SHOWN_PROBLEMS = 5
OUTPUT_PARAM = "output"  # the params key (the model signature's params schema) choosing what comes out
SIMILARITY, EMBEDDING = "similarity", "embedding"
OUTPUTS = (SIMILARITY, EMBEDDING)  # SIMILARITY is the default


class TextPairRequestError(MlflowException, ValueError):
    """Rows or params the model cannot answer.

    A ValueError to Python callers; an MlflowException so that `mlflow models serve` answers HTTP
    400 with this message (any other exception becomes a generic "unexpected error").
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


class TextPairScorer(PythonModel):
    """Scores a DataFrame with string columns `left` and `right` with the run's Keras model.

    The model config's `threshold` (the one calibrated in training, unless the loader passes
    another) decides `is_similar`; without one, only similarities come out.
    """

    def load_context(self, context) -> None:
        self._model = keras.saving.load_model(context.artifacts["keras_model"])
        threshold = (context.model_config or {}).get("threshold")
        self._threshold = None if threshold is None else float(threshold)
        self._embedder = None  # built on the first request for embeddings

    @property
    def keras_model(self) -> keras.Model:
        """The wrapped model: `siamese dedupe` uses its encoder and head directly, on whole collections."""
        return self._model

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """A `similarity` column (0..1, or a graded score on its file's scale) and, given a threshold, `is_similar`.

        One row per input row, in order; `is_similar` is similarity >= the threshold. With
        `params={"output": "embedding"}`, columns `left_embedding` and `right_embedding` instead:
        each side's embedding (a list of floats, unit length), the same for the same text on
        either side.

        Raises:
            ValueError (`TextPairRequestError`): some rows have missing or blank text (names the
                first few by position); an `output` other than "similarity" or "embedding"; or
                embeddings asked of a model whose encodings cannot be searched (the `concat` head).
        """
        output = (params or {}).get(OUTPUT_PARAM, SIMILARITY)
        if output not in OUTPUTS:
            allowed = ", ".join(map(repr, OUTPUTS))
            raise TextPairRequestError(f"unknown {OUTPUT_PARAM} {output!r}: params {OUTPUT_PARAM!r} is one of {allowed}")
        blank_left, blank_right = _blank(model_input["left"]), _blank(model_input["right"])
        positions = np.flatnonzero(blank_left | blank_right)
        if len(positions):
            shown = "; ".join(
                f"row {position}: empty or missing {'left' if blank_left[position] else 'right'} text"
                for position in positions[:SHOWN_PROBLEMS]
            )
            raise TextPairRequestError(f"{len(positions)} of {len(model_input)} rows cannot be scored ({shown})")
        if output == EMBEDDING:
            return self._embeddings(model_input)
        if model_input.empty:
            return self._output(np.zeros(0), model_input.index)
        scores = self._model.predict(
            {side: model_input[side].to_numpy(dtype=object) for side in ("left", "right")},
            batch_size=PREDICT_BATCH_SIZE,
            verbose=0,
        )
        return self._output(scores[:, 0].astype("float64"), model_input.index)

    def _output(self, scores: np.ndarray, index: pd.Index) -> pd.DataFrame:
        output = pd.DataFrame({"similarity": scores}, index=index)
        if self._threshold is not None:
            output["is_similar"] = scores >= self._threshold
        return output

    def _embeddings(self, model_input: pd.DataFrame) -> pd.DataFrame:
        """Both sides encoded in one pass (the encoder is per text: a text's vector does not depend on its batch)."""
        rows = len(model_input)
        texts = np.concatenate([model_input[side].to_numpy(dtype=object) for side in ("left", "right")])
        vectors = self._searchable().embed(texts)
        return pd.DataFrame(
            {
                "left_embedding": [vector.tolist() for vector in vectors[:rows]],
                "right_embedding": [vector.tolist() for vector in vectors[rows:]],
            },
            index=model_input.index,
        )

    def _searchable(self):
        if self._embedder is None:
            from siamese.embedding import Embedder, EmbeddingError  # the model's own copy (`code_paths`)

            try:
                self._embedder = Embedder(self._model)
            except EmbeddingError as error:
                raise TextPairRequestError(f"this model gives no embeddings: {error}") from error
        return self._embedder


def _blank(values: pd.Series) -> np.ndarray:
    """Missing, or only whitespace: what training dropped and `siamese score` reports (`siamese.data.text_pairs`)."""
    return (values.isna() | values.astype(str).str.strip().eq("")).to_numpy(dtype=bool)


set_model(TextPairScorer())
