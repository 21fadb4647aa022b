"""`.keras` files between tasks: one object per unchanged file in a process, a fresh read when it changed."""

from __future__ import annotations

import keras
import numpy as np

from siamese.models.text import build_text_model
from tasks.model_files import load_model_file, save_model_file


def small_model() -> keras.Model:
    return build_text_model(features=3, units=2)


def test_a_saved_model_is_handed_on_as_the_same_object(tmp_path):
    model = small_model()
    path = save_model_file(model, tmp_path / "initial.keras")
    assert path == (tmp_path / "initial.keras").resolve() and path.exists()
    assert load_model_file(path) is model
    assert load_model_file(tmp_path / "initial.keras") is model, "relative and resolved paths are one file"


def test_a_model_taken_to_change_stands_no_longer_for_its_file(tmp_path):
    model = small_model()
    path = save_model_file(model, tmp_path / "initial.keras")
    assert load_model_file(path, to_change=True) is model
    reread = load_model_file(path)
    assert reread is not model, "a retried task must read the file, not a half-trained object"
    for saved, loaded in zip(model.get_weights(), reread.get_weights()):
        np.testing.assert_array_equal(saved, loaded)


def test_a_file_changed_since_is_read_from_disk(tmp_path):
    first, second = small_model(), small_model()
    path = save_model_file(first, tmp_path / "model.keras")
    second.save(path)  # another writer: the file no longer holds `first`
    loaded = load_model_file(path)
    assert loaded is not first
    for expected, actual in zip(second.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(expected, actual)


def test_saving_an_object_elsewhere_forgets_its_older_file(tmp_path):
    model = small_model()
    initial = save_model_file(model, tmp_path / "initial.keras")
    save_model_file(model, tmp_path / "trained.keras")
    assert load_model_file(tmp_path / "trained.keras") is model
    assert load_model_file(initial) is not model, "the object has moved on: the older file is read from disk"
