"""Range checks for loss hyper-parameters, shared by the losses, AutoMargin and the method registry."""

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
