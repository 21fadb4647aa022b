"""Model families: one recipe module per kind of pair, and the one place that picks it.

A family is everything that differs between kinds of pairs. Each module answers the same
questions (the methods of `Family`): which config sections it reads (`siamese.config.KIND_SECTIONS`),
how it prepares and reads back its splits, how it builds the shared model, its loss, its
baselines and evaluation extras, and how it is shipped (MLflow experiment, registered model name
for a config, model format). The flows and tasks ask `family_of(config.kind)` and never switch on a config or data
type themselves, so a new family is one new module here plus its entry in `FAMILIES`.

| kind | module | registered model | takes |
| --- | --- | --- | --- |
| `sequences` | `siamese.families.sequences` | `siamese-text-sequences` | float32 sequences `(n, None, features)` |
| `text` | `siamese.families.text` | `siamese-text` (0..1 similarity) | raw strings `left`, `right` |
| `text`, `data.task = "regression"` | `siamese.families.text` | `siamese-text-graded` (scores on the file's scale) | raw strings `left`, `right` |
| `vision` | `siamese.families.vision` | `siamese-vision` | raw pixels `(n, size, size, channels)` |
"""

from __future__ import annotations

from siamese.config import ModelKind
from siamese.families.base import BuiltModel, Family, ModelFormat, PreparedSplits, SourceFile
from siamese.families.sequences import GeneratedSequences
from siamese.families.text import TextPairFile
from siamese.families.vision import ImagePairFamily

FAMILIES: dict[ModelKind, Family] = {
    family.kind: family for family in (GeneratedSequences(), TextPairFile(), ImagePairFamily())
}

__all__ = ["FAMILIES", "BuiltModel", "Family", "ModelFormat", "PreparedSplits", "SourceFile", "family_of"]


def family_of(kind: ModelKind | str) -> Family:
    """The recipe of a kind: `family_of(config.kind)`."""
    return FAMILIES[ModelKind(kind)]
