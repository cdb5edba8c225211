"""clutils: the code behind an executable tutorial book on continual learning.

Benchmarks and datasets (:mod:`clutils.data`), models (:mod:`clutils.models`),
strategies (:mod:`clutils.strategies`), the one training loop
(:mod:`clutils.train`), metrics (:mod:`clutils.metrics`), results
(:mod:`clutils.result`) and per-experiment presets (:mod:`clutils.presets`).
From a shell: ``python -m clutils list`` and ``python -m clutils run --help``.

Importing the package itself is cheap (no torch): import the submodules you need.
"""

__version__ = "0.1.0"
