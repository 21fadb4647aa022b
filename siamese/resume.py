"""Which interrupted training a new run may resume: the same config on the same data.

A run's key is a digest of its whole config and of the data it reads: a pair file's bytes, or
an image folder's listing (each file's path, size and modification time: reading every image
would cost as much as a short training). Generated data is fixed by the config and its seed.
Any change (one hyperparameter, one row, one image replaced) gives another key, so a rerun never
resumes training of something else.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from siamese.config import Config

READ_CHUNK = 2**20


def resume_key(config: Config) -> str:
    """A short hex digest of `config` and of the data at `config.data.path` (if any)."""
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    path = getattr(config.data, "path", "")
    if path:
        digest.update(_data_digest(Path(path)).encode())
    return digest.hexdigest()[:24]


def _data_digest(path: Path) -> str:
    if path.is_file():
        content = hashlib.sha256()
        with open(path, "rb") as file:
            while chunk := file.read(READ_CHUNK):
                content.update(chunk)
        return content.hexdigest()
    if path.is_dir():
        listing = hashlib.sha256()
        for root, folders, files in os.walk(path):
            folders.sort()
            for name in sorted(files):
                stat = (Path(root) / name).stat()
                listing.update(f"{Path(root, name).relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return listing.hexdigest()
    return "missing"
