"""Search spaces for hyperparameter sweeps (`siamese tune`): what may vary, and the config of one trial.

A config file's `[tune]` table declares the space, one entry per config field:

    [tune]
    "training.learning_rate" = { low = 1e-4, high = 3e-2, log = true }
    "training.batch_size" = { choices = [64, 128, 256] }
    "model.units" = { low = 16, high = 128, step = 16 }

(`[tune.training]` tables with `learning_rate = {...}` say the same.) Without a `[tune]` table the
model family's own space is searched (`Family.search_space`). Every dimension is checked before any
work: its key must name a field of the run's config, its range must hold more than one value, a
log range must stay above zero, and each end of a range and each choice must make a valid config,
so that no trial fails on a value the space itself allowed. Sampling is asked of an Optuna-like
`trial` (`suggest_float`, `suggest_int`, `suggest_categorical`), so this module imports no tuner.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Mapping, Protocol

from siamese.config import Config, ConfigError, SearchSpaceError, config_from_dict
from siamese.families import family_of

MAX_TRIALS = 10_000  # a sweep that long runs for weeks: a typo, not a plan
MAX_PARALLEL = 1_024  # trials at once: a local cluster starts this many worker processes
RANGE_KEYS = frozenset({"low", "high", "log", "step"})
SPEC_KEYS = RANGE_KEYS | {"choices"}


class Trial(Protocol):
    """What sampling needs of a tuner's trial (Optuna's `Trial` has these methods)."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...
    def suggest_categorical(self, name: str, choices: list[Any]) -> Any: ...


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False  # sample the exponent evenly: rates from 1e-4 to 1e-1 each get a quarter of the trials

    def sample(self, trial: Trial, key: str) -> float:
        return trial.suggest_float(key, self.low, self.high, log=self.log)

    def ends(self) -> tuple[float, ...]:
        return (self.low, self.high)


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    step: int = 1
    log: bool = False

    def sample(self, trial: Trial, key: str) -> int:
        return trial.suggest_int(key, self.low, self.high, step=self.step, log=self.log)

    def ends(self) -> tuple[int, ...]:
        return (self.low, self.high)


@dataclass(frozen=True)
class Choice:
    options: tuple[Any, ...]

    def sample(self, trial: Trial, key: str) -> Any:
        return trial.suggest_categorical(key, list(self.options))

    def ends(self) -> tuple[Any, ...]:
        return self.options


Dimension = FloatRange | IntRange | Choice


@dataclass(frozen=True)
class SearchSpace:
    """Config keys (`section.field`) and the values each may take; checked against a base config when built."""

    dimensions: tuple[tuple[str, Dimension], ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self.dimensions)

    def sample(self, trial: Trial) -> dict[str, Any]:
        """One trial's values, asked of the tuner dimension by dimension."""
        return {key: dimension.sample(trial, key) for key, dimension in self.dimensions}

    def values_of(self, config: Config) -> dict[str, Any] | None:
        """`config`'s own value of every key, when each lies in the space (a tuner's first trial); else None."""
        values = {key: _plain(_value_at(config, key)) for key in self.keys}
        for key, dimension in self.dimensions:
            value = values[key]
            if isinstance(dimension, Choice):
                if value not in dimension.options:
                    return None
            elif not isinstance(value, (int, float)) or not dimension.low <= value <= dimension.high:
                return None
        return values

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The shape of a `[tune]` table: what `search_space_from` reads back, and what a run's params show."""
        return {key: _spec_of(dimension) for key, dimension in self.dimensions}


def check_sweep_size(trials: int, parallel: int | None) -> None:
    """Refuse a sweep size that cannot be meant, before any work (`parallel` None: decided by the cluster).

    Raises:
        ConfigError: naming `trials` or `parallel`, with its bounds.
    """
    for name, value, maximum in (("trials", trials, MAX_TRIALS), ("parallel", parallel, MAX_PARALLEL)):
        if value is None and name == "parallel":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
            raise ConfigError(f"{name} must be an integer from 1 to {maximum:,}, got {value!r}")


def check_judgeable(validation_pairs: int) -> None:
    """A sweep judges its trials on the validation split only: without one there is nothing to judge by.

    Raises:
        ConfigError: naming data.validation_fraction.
    """
    if validation_pairs == 0:
        raise ConfigError(
            "a sweep judges each trial on the validation split, and this data leaves it empty: "
            "set data.validation_fraction above 0 (or give the file's split column validation rows)"
        )


def search_space_for(config: Config, table: Mapping[str, Any] | None = None, source: str = "[tune]") -> SearchSpace:
    """The space a sweep of `config` searches: `table` (a `[tune]` table), else the family's own (`Family.search_space`)."""
    if table is not None:
        return search_space_from(table, config, source)
    return search_space_from(family_of(config.kind).search_space(config), config, f"the {config.kind} family's search space")


def search_space_from(table: Mapping[str, Any], base: Config, source: str = "[tune]") -> SearchSpace:
    """Read and check a `[tune]` table against the config it will vary.

    Raises:
        SearchSpaceError: naming the key: not a field of `base`'s kind, an empty or one-value range, a log
            range that reaches zero, no choices, or an end or choice that makes an invalid config.
    """
    flat = _flattened(table, source)
    if not flat:
        raise SearchSpaceError(f"{source} declares no dimension: give at least one config key with a range or choices")
    fields = _tunable_fields(base)
    dimensions = []
    for key, spec in flat.items():
        if key not in fields:
            raise SearchSpaceError(f"{source}: unknown key {key!r} for a {base.kind} run; tunable keys: {', '.join(sorted(fields))}")
        dimension = _dimension(key, spec, source)
        for value in dimension.ends():
            try:
                trial_config(base, {key: value})
            except ConfigError as error:
                raise SearchSpaceError(f"{source}: {key} = {value!r} does not make a valid config: {error}") from None
        dimensions.append((key, dimension))
    return SearchSpace(tuple(dimensions))


def trial_config(base: Config, values: Mapping[str, Any]) -> Config:
    """`base` with `values` (`section.field` -> value) set, validated as any config.

    Raises:
        ConfigError: a combination of values the config refuses (e.g. a contrastive loss with a concat head).
    """
    merged = base.to_dict()
    for key, value in values.items():
        section, _, name = key.partition(".")
        merged[section] = {**merged[section], name: value}
    return config_from_dict(merged, "a trial's values")


def _tunable_fields(base: Config) -> set[str]:
    """`section.field` of every field of `base`'s sections that takes a number, a choice or a switch."""
    keys = [f"{section}.{field.name}" for section in ("model", "training") for field in dataclasses.fields(getattr(base, section))]
    keys += [f"data.{name}" for name in TRAINING_TIME_DATA_FIELDS if hasattr(base.data, name)]
    return {key for key in keys if key not in UNTUNABLE and _tunable(_value_at(base, key))}


# Of `[data]`, only what acts while training (image augmentation, how image pairs are drawn) may
# vary: the rest decides which pairs are in the splits, and every trial and the final training
# must be judged on the same pairs.
TRAINING_TIME_DATA_FIELDS = ("augment", "translation", "rotation", "zoom", "contrast", "training_pairs")
UNTUNABLE = frozenset({"training.devices", "training.precision"})  # where a trial runs, not what it learns


def _tunable(value: Any) -> bool:
    """Numbers, switches and choices (enums) are; free text (a path, a column name) is not."""
    return isinstance(value, StrEnum) or not isinstance(value, str)


def _value_at(config: Config, key: str) -> Any:
    section, _, name = key.partition(".")
    return getattr(getattr(config, section), name)


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, StrEnum) else value


def _flattened(table: Mapping[str, Any], source: str, prefix: str = "") -> dict[str, Any]:
    """`{"training": {"learning_rate": {...}}}` and `{"training.learning_rate": {...}}` alike, as dotted keys."""
    flat: dict[str, Any] = {}
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping) and value and not set(value) <= SPEC_KEYS:
            flat |= _flattened(value, source, f"{key}.")
        else:
            flat[key] = value
    return flat


def _dimension(key: str, spec: Any, source: str) -> Dimension:
    where = f"{source}: {key}"
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, Mapping) or not spec:
        raise SearchSpaceError(f"{where} must be a range {{ low = ..., high = ... }} or {{ choices = [...] }}, got {spec!r}")
    if "choices" in spec:
        extra = sorted(set(spec) - {"choices"})
        if extra:
            raise SearchSpaceError(f"{where}: choices take no {', '.join(extra)}")
        choices = spec["choices"]
        if not isinstance(choices, list) or len(choices) < 2:
            raise SearchSpaceError(f"{where}: choices must list at least two values, got {choices!r}")
        return Choice(tuple(choices))
    missing = sorted({"low", "high"} - set(spec))
    if missing:
        raise SearchSpaceError(f"{where}: a range needs low and high (missing {' and '.join(missing)})")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SearchSpaceError(f"{where}: {name} must be a finite number, got {value!r}")
    if not isinstance(log, bool):
        raise SearchSpaceError(f"{where}: log must be true or false, got {log!r}")
    if not low < high:
        raise SearchSpaceError(f"{where}: empty range, low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise SearchSpaceError(f"{where}: a log range must stay above zero, got low = {low}")
    if isinstance(low, int) and isinstance(high, int):
        step = 1 if step is None else step
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise SearchSpaceError(f"{where}: step must be an integer >= 1, got {step!r}")
        if log and step != 1:
            raise SearchSpaceError(f"{where}: a log range takes no step")
        return IntRange(low, high, step, log)
    if step is not None:
        raise SearchSpaceError(f"{where}: step is for integer ranges (write low and high as integers)")
    return FloatRange(float(low), float(high), log)


def _spec_of(dimension: Dimension) -> dict[str, Any]:
    if isinstance(dimension, Choice):
        return {"choices": list(dimension.options)}
    spec: dict[str, Any] = {"low": dimension.low, "high": dimension.high}
    if dimension.log:
        spec["log"] = True
    if isinstance(dimension, IntRange) and dimension.step != 1:
        spec["step"] = dimension.step
    return spec
