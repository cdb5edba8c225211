"""Type and range checks of strategy hyperparameters, from their declared defaults.

Every strategy declares ``defaults`` (name -> the paper's value); a value
given for a name is checked against its default's kind when the strategy is
built, before any data is loaded or any step is trained:

* a ``bool`` default takes ``True``/``False`` only; a ``None`` default, ``None`` or a number;
* an ``int`` default takes an integer; a ``float`` default any finite real number;
* a number whose default is zero or positive (or ``None``) must not be negative:
  strengths, damping terms, clipping bounds and counts are never negative;
* a name in the strategy's ``positive`` set must be strictly positive (it divides,
  as SI's ``xi`` in ``w / (Delta^2 + xi)``, or is a temperature);
* a ``str`` default takes a string (the strategy checks the choice itself);
* a list or tuple default takes a list or tuple of as many finite numbers;
* NaN and infinity are refused everywhere.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Collection, Mapping


class HyperparameterError(ValueError):
    """A hyperparameter value of the wrong type or outside its range."""


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_number(strategy: str, name: str, value: Any, default: Any, positive: bool) -> None:
    integer = isinstance(default, numbers.Integral) and not isinstance(default, bool)
    if integer and not (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
        raise HyperparameterError(f"{strategy}: {name} must be an integer, got {value!r}")
    if not _is_real(value):
        raise HyperparameterError(f"{strategy}: {name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise HyperparameterError(f"{strategy}: {name} must be a finite number, got {value}")
    if positive and not value > 0:
        raise HyperparameterError(f"{strategy}: {name} must be positive (it divides or scales), got {value}")
    if (default is None or default >= 0) and value < 0:
        raise HyperparameterError(f"{strategy}: {name} must be zero or positive, got {value}")


def check_hyperparameters(strategy: str, defaults: Mapping[str, Any], values: Mapping[str, Any],
                          positive: Collection[str] = ()) -> None:
    """Raise :class:`HyperparameterError` for the first value in ``values`` its default does not allow."""
    for name, value in values.items():
        default = defaults[name]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise HyperparameterError(f"{strategy}: {name} must be true or false, got {value!r}")
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise HyperparameterError(f"{strategy}: {name} must be a name such as {default!r}, got {value!r}")
        elif isinstance(default, (list, tuple)):
            if not isinstance(value, (list, tuple)) or len(value) != len(default):
                raise HyperparameterError(
                    f"{strategy}: {name} must be a list of {len(default)} numbers such as {list(default)}, "
                    f"got {value!r}")
            for item in value:
                if not _is_real(item) or not math.isfinite(item):
                    raise HyperparameterError(f"{strategy}: {name} must hold finite numbers, got {value!r}")
        elif _is_real(default) or (default is None and value is not None):
            _check_number(strategy, name, value, default, name in positive)
