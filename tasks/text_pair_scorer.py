"""The MLflow model of a text pair run: raw `left` and `right` strings in, one similarity per row out.

Logged as code (MLflow's "models from code"): MLflow copies this file into the model and runs it
on loading, beside the copy of the `siamese` package logged with it (`code_paths`). The
registered model therefore loads anywhere TensorFlow is installed, without this repository.
"""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

import siamese.models.layers  # noqa: F401  (registers the custom layers the saved Keras model uses)
from siamese.data.text_pairs import unscorable_rows

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
        problems = unscorable_rows(model_input["left"], model_input["right"])
        positions = np.flatnonzero(problems.notna().to_numpy())
        if len(positions):
            shown = "; ".join(f"row {position}: {problems.iloc[position]}" for position in positions[:SHOWN_PROBLEMS])
            raise ValueError(f"{len(positions)} of {len(model_input)} rows cannot be scored ({shown})")
        if model_input.empty:
            return pd.DataFrame({"similarity": pd.Series([], dtype="float64")})
        scores = self._model.predict(
            {side: model_input[side].to_numpy(dtype=object) for side in ("left", "right")},
            batch_size=PREDICT_BATCH_SIZE,
            verbose=0,
        )
        return pd.DataFrame({"similarity": scores[:, 0].astype("float64")}, index=model_input.index)


set_model(TextPairScorer())
