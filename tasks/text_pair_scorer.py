"""The MLflow model of a text pair run: raw `left` and `right` strings in, one similarity per row out.

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
    """Scores a DataFrame with string columns `left` and `right` with the run's Keras model."""

    def load_context(self, context) -> None:
        self._model = keras.saving.load_model(context.artifacts["keras_model"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """A `similarity` column in 0..1, one row per input row, in order.

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
            return pd.DataFrame({"similarity": pd.Series([], dtype="float64")})
        scores = self._model.predict(
            {side: model_input[side].to_numpy(dtype=object) for side in ("left", "right")},
            batch_size=PREDICT_BATCH_SIZE,
            verbose=0,
        )
        return pd.DataFrame({"similarity": scores[:, 0].astype("float64")}, index=model_input.index)


def _blank(values: pd.Series) -> np.ndarray:
    """Missing, or only whitespace: what training dropped and `siamese score` reports (`siamese.data.text_pairs`)."""
    return (values.isna() | values.astype(str).str.strip().eq("")).to_numpy(dtype=bool)


set_model(TextPairScorer())
