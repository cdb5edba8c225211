"""Strategy hyperparameters are checked by type and range when the strategy is built."""
from __future__ import annotations

import math

import pytest

from clutils.strategies import REGISTRY, make, strategy_names
from clutils.strategies.hyperparameters import HyperparameterError

BAD = [
    ("ewc", {"lam": "abc"}, "lam must be a number"),
    ("si", {"c": math.nan}, "c must be a finite number"),
    ("ewc", {"lam": math.inf}, "lam must be a finite number"),
    ("ewc", {"lam": -100.0}, "lam must be zero or positive"),
    ("si", {"xi": 0.0}, "xi must be positive"),
    ("si", {"xi": -1e-3}, "xi must be positive"),
    ("alasso", {"xi": -0.1}, "xi must be zero or positive"),  # 0 is allowed: Eq. 7 undamped
    ("alasso", {"a": -1.0}, "a must be zero or positive"),
    ("si-sit", {"xi": 0.0}, "xi must be positive"),
    ("ar1", {"xi": 0.0}, "xi must be positive"),
    ("lwf", {"temperature": 0.0}, "temperature must be positive"),
    ("ewc", {"chunk_size": 2.5}, "chunk_size must be an integer"),
    ("ewc", {"seed": True}, "seed must be an integer"),
    ("joint", {"from_scratch": 1}, "from_scratch must be true or false"),
    ("ewc", {"fisher": 3}, "fisher must be a name"),
    ("cwr", {"init_std": -0.1}, "init_std must be zero or positive"),
    ("cwr", {"init_std": "wide"}, "init_std must be a number"),
    ("lwf-sit", {"map_from": [0.5]}, "map_from must be a list of 2 numbers"),
    ("lwf-sit", {"map_to": [0.5, math.nan]}, "map_to must hold finite numbers"),
]


@pytest.mark.parametrize("name, values, message", BAD, ids=[f"{n}-{v}" for n, v, _ in BAD])
def test_bad_values_are_refused_naming_the_strategy_and_the_hyperparameter(name, values, message):
    with pytest.raises(HyperparameterError, match=message) as info:
        make(name, **values)
    assert str(info.value).startswith(f"{name}: ")


def test_good_values_pass_ints_for_floats_included():
    assert make("ewc", lam=0, chunk_size=64, fisher_samples=None).hp["lam"] == 0
    assert make("si", c=1e40, xi=1).hp["xi"] == 1
    assert make("cwr", init_std=0.01).hp["init_std"] == 0.01
    assert make("lwf-sit", map_from=(0.5, 0.8)).hp["map_from"] == (0.5, 0.8)


@pytest.mark.parametrize("name", strategy_names())
def test_every_strategy_accepts_its_own_defaults(name):
    make(name, **REGISTRY[name].defaults)
