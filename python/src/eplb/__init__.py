"""eplb: expert-placement planning for Mixture-of-Experts inference.

Python binding of libeplb (ctypes). Drop-in for DeepSeek eplb.py:

    from eplb import rebalance_experts
    phy2log, log2phy, logcnt = rebalance_experts(weight, num_replicas, num_groups,
                                                 num_nodes, num_gpus)

Engine hooks: eplb.vllm.EplbPolicy and eplb.sglang.rebalance_experts (imported
on demand, never by `import eplb`). Command line: python -m eplb plan --help.
See docs/python.md in the eplb repository.
"""
import ctypes as _ctypes

from . import _library
from ._version import __version__
from .contexts import clear as clear_contexts
from .errors import EplbError, Status
from .evaluation import Evaluation, evaluate
from .moves import Moves, count_moves
from .rebalance import rebalance_experts, synchronize

#: Path of the libeplb shared library in use.
library_path = _library.path
#: Version string of that library (eplb_version_string()).
library_version = _library.version


def backends():
    """Backends libeplb knows, as (name, available, detail) tuples.

    detail describes the device when available, or says why not. The first
    call opens (and self-tests) each backend once per process."""
    lib = _library.lib
    result = []
    for index in range(lib.eplb_backend_count()):
        reason = _ctypes.c_char_p()
        available = bool(lib.eplb_backend_available(index, _ctypes.byref(reason)))
        result.append((_library.text(lib.eplb_backend_name(index)), available,
                       _library.text(reason.value)))
    return result


__all__ = ["rebalance_experts", "synchronize", "evaluate", "Evaluation", "count_moves", "Moves",
           "backends", "clear_contexts", "EplbError", "Status", "__version__", "library_path",
           "library_version"]
