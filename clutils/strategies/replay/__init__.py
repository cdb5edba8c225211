"""Replay strategies (the lecture's continual-learning part, section 4; Buzzega et al. 2020, Table 2).

* :mod:`.er`: experience replay with a reservoir buffer (Chaudhry et al. 2019);
* :mod:`.der`: dark experience replay, DER and DER++ (Buzzega et al. 2020);
* :mod:`.agem`: averaged gradient episodic memory (Chaudhry et al. 2019, ICLR);
* :mod:`.gem`: gradient episodic memory (Lopez-Paz and Ranzato 2017);
* :mod:`.icarl`: incremental classifier and representation learning (Rebuffi et al. 2017).

The memories are :mod:`clutils.buffers`: tensors on the device, filled in place.
"""
from . import agem, der, er, gem, icarl  # noqa: F401  (importing registers the strategies)
