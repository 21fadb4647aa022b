"""`.keras` files: how tasks hand each other models, without paying for a reload in one process.

Tasks pass paths, not live models, so a retried task or a task on another worker reads the
model from its file. Within one process the model a task saved is kept, keyed by its path and
the file's size and modification time: the next task gets the very same object instead of
loading the file again and re-tracing its functions (seconds for a small model, against a
training run of a few). A file that changed since is read from disk.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

_SAVED: dict[Path, tuple[tuple[int, int], keras.Model]] = {}  # path -> (file stamp, the model saved there)


def save_model_file(model: keras.Model, path: Path) -> Path:
    """Save `model` to `path` (`.keras`) and remember it as that file's contents in this process."""
    path = Path(path).resolve()
    model.save(path)
    for saved_path in [key for key, (_, saved) in _SAVED.items() if saved is model]:
        del _SAVED[saved_path]  # the object has moved on: its older files no longer hold it
    _SAVED[path] = (_stamp(path), model)
    return path


def load_model_file(path: Path, *, to_change: bool = False) -> keras.Model:
    """The model saved at `path`: the object saved by this process if the file is unchanged, else read (safe mode).

    `to_change`: the caller will change the model (train it), so it no longer stands for the file:
    a retry of the same task then reads the file again instead of getting a half-trained model.
    """
    path = Path(path).resolve()
    kept = _SAVED.pop(path, None)
    model = kept[1] if kept is not None and kept[0] == _stamp(path) else keras.saving.load_model(path, compile=False)
    if not to_change:
        _SAVED[path] = (_stamp(path), model)
    return model


def _stamp(path: Path) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_size, status.st_mtime_ns
