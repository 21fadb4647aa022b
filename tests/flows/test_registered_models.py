"""Every family's registered model loads where users load it: a fresh Python process, outside the repository.

The process imports MLflow only and finds the store through `MLFLOW_TRACKING_URI`, as the README
says; nothing of this project may be imported by loading or by predicting.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import mlflow
import numpy as np

# Run by the fresh interpreter: load each model both ways, predict on its own input example, read its threshold.
LOAD_AND_PREDICT = """
import json, os, sys
import keras
import mlflow
import numpy as np

results = {}
for name, (store, uri, keras_flavour) in json.loads(sys.argv[1]).items():
    os.environ["MLFLOW_TRACKING_URI"] = store
    mlflow.set_tracking_uri(store)
    model = mlflow.pyfunc.load_model(uri)
    example = model.input_example
    output = model.predict(example)
    scores = output["similarity"] if hasattr(output, "columns") else output
    results[name] = {
        "pyfunc": np.asarray(scores, dtype=float).reshape(-1).tolist(),
        "threshold": mlflow.models.get_model_info(uri).metadata["threshold"],
        "is_similar": output["is_similar"].tolist() if hasattr(output, "columns") else None,
    }
    if keras_flavour:
        keras_model = mlflow.keras.load_model(uri)
        results[name]["keras"] = keras_model.predict(dict(example), verbose=0).reshape(-1).tolist()
project = sorted(m for m in sys.modules if m.split(".")[0] in ("siamese", "tasks", "flows"))
print(json.dumps({"results": results, "project_modules": project}))
"""


def test_every_family_loads_in_a_fresh_process_with_nothing_of_the_project(sequences_run, stereo_run, text_run, tmp_path):
    runs = {"sequences": sequences_run, "vision": stereo_run, "text": text_run}
    models = {
        name: (run.uri, f"models:/{run.result['registered']['name']}/{run.result['registered']['version']}", name != "text")
        for name, run in runs.items()
    }
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    completed = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, json.dumps(models)],
        cwd=tmp_path,  # outside the repository: its packages are not on the path by accident
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["project_modules"] == []
    for name, (store, uri, keras_flavour) in models.items():
        scores = report["results"][name]
        mlflow.set_tracking_uri(store)
        example = mlflow.pyfunc.load_model(uri).input_example  # what the fresh process scored
        inputs = {side: np.asarray(example[side]) for side in ("left", "right")}
        trained = keras.saving.load_model(runs[name].work_dir / "trained.keras")
        expected = trained.predict(inputs, verbose=0).reshape(-1)
        np.testing.assert_allclose(scores["pyfunc"], expected, atol=1e-5, err_msg=name)
        assert scores["threshold"] == runs[name].result["threshold"], name
        if not keras_flavour:  # the raw-text pyfunc decides itself
            assert scores["is_similar"] == [score >= scores["threshold"] for score in scores["pyfunc"]]
        if keras_flavour:
            np.testing.assert_allclose(scores["keras"], expected, atol=1e-5, err_msg=name)
