"""Parameter checks shared by every package: one ConfigError message per kind of mistake.

Loss hyper-parameters (margins on cosine similarities), choices among names, lower bounds,
fractions and counts. Each returns the checked value, so ``self.x = check_…(x, "x")`` reads as one
line.
"""

from __future__ import annotations

from radsearch.errors import ConfigError


def check_epsilon(value: float, name: str = "epsilon") -> float:
    value = float(value)
    if not 0.0 <= value < 2.0:
        raise ConfigError(f"{name}={value} is out of range: the triplet margin on cosine "
                          "similarities must lie in [0, 2).")
    return value


def check_beta(value: float, name: str = "beta") -> float:
    value = float(value)
    if not -1.0 <= value <= 1.0:
        raise ConfigError(f"{name}={value} is out of range: the negative-pair threshold is a cosine "
                          "similarity and must lie in [-1, 1].")
    return value


def check_choice(value: str, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}.")
    return value


def check_at_least(value: float, minimum: float, name: str) -> float:
    value = float(value)
    if not value >= minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}.")
    return value


def check_fraction(value: float, name: str, upper_open: bool = False) -> float:
    """A share in [0, 1] (or [0, 1) with ``upper_open``)."""
    value = float(value)
    if not (0.0 <= value < 1.0 if upper_open else 0.0 <= value <= 1.0):
        raise ConfigError(f"{name} {value} must be in [0, {'1)' if upper_open else '1]'}.")
    return value


def check_count(value: int, minimum: int, name: str) -> int:
    """A whole number of at least ``minimum`` (workers, k, batch sizes)."""
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ConfigError(f"{name}={value}: need a whole number >= {minimum}.")
    return int(value)
