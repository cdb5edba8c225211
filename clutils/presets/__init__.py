"""Profiles and the experiment presets defined once for the CLI and the notebooks.

Every experiment has three profiles:

* ``smoke``: seconds, used by the tests;
* ``quick``: minutes on a laptop CPU, still showing the paper's effect;
* ``paper``: the paper's own scale, meant for a GPU.

``get(experiment, profile)`` returns a fresh dict of settings (sizes, epochs,
hyperparameters); modules in this package define them with ``define``.
"""
from __future__ import annotations

import copy
from typing import Any

PROFILES = ("smoke", "quick", "paper")
_PRESETS: dict[str, dict[str, dict[str, Any]]] = {}


class UnknownProfileError(ValueError):
    pass


class UnknownExperimentError(ValueError):
    pass


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise UnknownProfileError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    return profile


def define(experiment: str, *, smoke: dict[str, Any], quick: dict[str, Any], paper: dict[str, Any]) -> None:
    """Register the three profiles of ``experiment`` (each a dict of settings)."""
    if experiment in _PRESETS:
        raise ValueError(f"experiment {experiment!r} is defined twice")
    _PRESETS[experiment] = {"smoke": smoke, "quick": quick, "paper": paper}


def experiments() -> list[str]:
    return sorted(_PRESETS)


def get(experiment: str, profile: str) -> dict[str, Any]:
    """The settings of ``experiment`` under ``profile`` (a copy: change it freely)."""
    check_profile(profile)
    if experiment not in _PRESETS:
        raise UnknownExperimentError(f"unknown experiment {experiment!r}; choose one of: {', '.join(experiments())}")
    return copy.deepcopy(_PRESETS[experiment][profile])


# Importing a module defines its presets.
from . import benchmarks  # noqa: E402,F401  (first: the others build on it)
from . import alasso, intro, ar1  # noqa: E402,F401
from . import spp  # noqa: E402,F401
from . import hat  # noqa: E402,F401  (HAT chapter)
from . import replay  # noqa: E402,F401  (the replay chapter)
from . import generative  # noqa: E402,F401  (the replay chapter's deep generative replay)
from . import expansion  # noqa: E402,F401  (the expansion chapter: PNN and the families compared)
from . import transfer  # noqa: E402,F401  (the opening chapter: transfer and multi-task learning)
from . import den  # noqa: E402,F401  (the expansion chapter: DEN)
