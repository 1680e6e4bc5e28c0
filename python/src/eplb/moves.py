"""count_moves: what a rebalance from one placement to another transfers
(docs/spec.md section 13.3), through libeplb's eplb_count_moves."""
import ctypes
import dataclasses
from typing import Optional

import numpy as np

from . import _library
from .errors import EplbError
from .evaluation import _host_array
from .rebalance import _shape


@dataclasses.dataclass(frozen=True)
class Moves:
    """What eplb.count_moves reports (docs/python.md, "Counting moves")."""

    moved_slots: int        # slots whose expert their GPU did not hold before, over all layers
    max_moved_per_gpu: int  # the most slots one GPU receives, summed over the layers
    # (node, expert) copies a node must fetch from another; None when
    # num_gpus % num_nodes != 0
    cross_node_moves: Optional[int]


def _placement(value, name):
    """value as a C-contiguous int64 [layers, replicas] ndarray."""
    arr = _host_array(value)
    if arr.dtype.kind not in "iu":
        raise TypeError("eplb: %s must hold integers, got dtype %s" % (name, arr.dtype))
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError("eplb: %s must be a non-empty [layers, replicas] matrix, got shape %s"
                         % (name, tuple(arr.shape)))
    if arr.dtype == np.uint64 and arr.max() > np.iinfo(np.int64).max:
        raise ValueError("eplb: %s holds %d, not an expert" % (name, int(arr.max())))
    return np.ascontiguousarray(arr, dtype=np.int64)


def count_moves(previous, phy2log, num_gpus, num_nodes=1):
    """The moves from the placement previous to phy2log: per GPU, the experts
    of phy2log it does not already hold in previous (counted with
    multiplicity), summed over layers and GPUs.

    Args:
        previous, phy2log: [layers, replicas] integers (numpy arrays, torch
            tensors on any device, nested lists) of the same shape: the expert
            of each slot before and after. GPU g holds slots g*R/P .. (g+1)*R/P-1.
        num_gpus: GPUs (P), dividing the replicas.
        num_nodes: nodes, for cross_node_moves (default 1: none cross).

    Returns a Moves. Raises EplbError with the library's message for a bad
    shape or entry, TypeError or ValueError for arguments of the wrong kind."""
    before = _placement(previous, "previous")
    after = _placement(phy2log, "phy2log")
    if before.shape != after.shape:
        raise ValueError("eplb: previous %s and phy2log %s must have the same shape"
                         % (tuple(before.shape), tuple(after.shape)))
    layers, replicas = after.shape
    # The experts are those the placements name; the library checks every
    # entry against them (a negative one, or one beyond the slots, which no
    # valid plan holds: it has at most as many experts as slots).
    highest = max(int(before.max()), int(after.max()))
    experts = min(max(highest, 0), replicas - 1) + 1
    shape = _shape(layers, experts, replicas, 1, num_nodes, num_gpus)
    moves = _library.Moves()
    _library.eplb_moves_init(ctypes.byref(moves))
    status = _library.eplb_count_moves(ctypes.byref(shape), before.ctypes.data,
                                       after.ctypes.data, ctypes.byref(moves))
    if status != 0:
        raise EplbError(status, _library.text(_library.lib.eplb_last_error()))
    cross = moves.cross_node_moves
    return Moves(moved_slots=moves.moved_slots, max_moved_per_gpu=moves.max_moved_per_gpu,
                 cross_node_moves=None if cross < 0 else cross)


__all__ = ["count_moves", "Moves"]
