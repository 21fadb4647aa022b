"""The MLflow model of a text pair run: raw `left` and `right` strings in, a similarity (and decision) per row out.

A similarity model's `similarity` lies in 0..1; a model of graded scores (0-5, 1-5, ...) returns
the score on its file's scale there (the Keras model itself ends on that scale), with no decision.

Logged as code (MLflow's "models from code"): MLflow copies this file into the model and runs it
on loading. It imports nothing of this project, and the Keras model it wraps holds built-in
layers only, so the registered model loads in any Python process with TensorFlow, Keras, MLflow
and pandas installed (`mlflow.pyfunc.load_model("models:/siamese-text@champion")`).
"""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

PREDICT_BATCH_SIZE = 512
SHOWN_PROBLEMS = 5


class TextPairScorer(PythonModel):
    """Scores a DataFrame with string columns `left` and `right` with the run's Keras model.

    The model config's `threshold` (the one calibrated in training, unless the loader passes
    another) decides `is_similar`; without one, only similarities come out.
    """

    def load_context(self, context) -> None:
        self._model = keras.saving.load_model(context.artifacts["keras_model"])
        threshold = (context.model_config or {}).get("threshold")
        self._threshold = None if threshold is None else float(threshold)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """A `similarity` column (0..1, or a graded score on its file's scale) and, given a threshold, `is_similar`.

        One row per input row, in order; `is_similar` is similarity >= the threshold.

        Raises:
            ValueError: some rows have missing or blank text; names the first few by position.
        """
        blank_left, blank_right = _blank(model_input["left"]), _blank(model_input["right"])
        positions = np.flatnonzero(blank_left | blank_right)
        if len(positions):
            shown = "; ".join(
                f"row {position}: empty or missing {'left' if blank_left[position] else 'right'} text"
                for position in positions[:SHOWN_PROBLEMS]
            )
            raise ValueError(f"{len(positions)} of {len(model_input)} rows cannot be scored ({shown})")
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


def _blank(values: pd.Series) -> np.ndarray:
    """Missing, or only whitespace: what training dropped and `siamese score` reports (`siamese.data.text_pairs`)."""
    return (values.isna() | values.astype(str).str.strip().eq("")).to_numpy(dtype=bool)


set_model(TextPairScorer())
