"""evaluate: the quality of any placement on any loads, through libeplb's
eplb_evaluate (docs/api.md, "Evaluating a plan"): balancedness, per-layer
loads, duplicates and the best balancedness any plan of the policy reaches."""
import ctypes
import dataclasses

import numpy as np

from . import _library
from .errors import EplbError
from .rebalance import _POLICIES, _host_weight, _shape, _torch_of

_POLICY_NAMES = {value: name for name, value in _POLICIES.items()}
_double_p = ctypes.POINTER(ctypes.c_double)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What eplb.evaluate reports (docs/python.md, "Evaluating a plan").

    Loads are in the weights' unit; per-layer arrays are float64 [layers]."""

    policy: str                 # the policy of the bound: "hierarchical" or "global"
    balancedness: float         # sum_l mean GPU load / sum_l max GPU load (1 = perfect)
    balancedness_min_layer: float
    min_layer: int              # the worst layer (lowest index on ties)
    mean_load_sum: float
    max_load_sum: float
    bound: float                # sum_l floor: no plan of the policy has a smaller max_load_sum
    balancedness_bound: float   # the best balancedness any plan of the policy reaches
    bound_gap: float            # max_load_sum / bound - 1
    bound_exact: bool           # False where the floor is a relaxation (more than 16 groups)
    global_balancedness_bound: float  # the same bound for the global policy
    duplicates: int             # slots whose expert already has a replica on the same GPU
    max_load: np.ndarray        # per layer, the largest GPU load
    mean_load: np.ndarray       # per layer, the mean GPU load
    layer_floor: np.ndarray     # per layer, the floor on the largest GPU load


def _host_array(value):
    """A torch tensor (any device) or array-like as a host ndarray, not yet converted."""
    torch = _torch_of(value)
    if torch is not None:
        value = value.detach().cpu()
        if value.is_floating_point() and value.dtype not in (torch.float32, torch.float64):
            value = value.double()  # numpy has no bfloat16
        value = value.numpy()
    return np.asarray(value)


def evaluate(weight, phy2log, num_groups, num_nodes, num_gpus, *, policy="auto"):
    """The figures of a placement on given loads, e.g. the running plan on new
    loads beside a fresh plan, to decide whether a rebalance pays.

    Args:
        weight: [layers, experts] loads (numpy array, torch tensor on any device,
            nested lists), or a window [T, layers, experts] summed over T.
        phy2log: [layers, replicas] integers: the expert of each slot (an eplb or
            DeepSeek plan, SGLang's physical_to_logical_map); every expert on at
            least one slot of each layer. GPU g holds slots g*R/P .. (g+1)*R/P-1.
        num_groups, num_nodes, num_gpus: the shape, as for rebalance_experts.
        policy: the policy whose bound is reported: "auto" (hierarchical when
            num_groups % num_nodes == 0), "hierarchical" or "global".

    Returns an Evaluation. Raises EplbError with the library's message for a
    bad shape, weight or entry (e.g. "phy2log[3][17] = 300 is not an expert
    (0..255)"), TypeError or ValueError for arguments of the wrong kind."""
    if policy not in _POLICIES:
        raise ValueError("eplb: policy must be 'auto', 'hierarchical' or 'global', got %r"
                         % (policy,))
    weight32 = _host_weight(_host_array(weight))
    placement = _host_array(phy2log)
    if placement.dtype.kind not in "iu":
        raise TypeError("eplb: phy2log must hold integers, got dtype %s" % placement.dtype)
    if placement.ndim != 2 or placement.shape[0] != weight32.shape[0]:
        raise ValueError("eplb: phy2log must be [layers, replicas] with the weight's %d layers, "
                         "got shape %s" % (weight32.shape[0], tuple(placement.shape)))
    if placement.dtype == np.uint64 and placement.size and placement.max() > np.iinfo(np.int64).max:
        raise ValueError("eplb: phy2log holds %d, not an expert" % int(placement.max()))
    placement = np.ascontiguousarray(placement, dtype=np.int64)
    layers, experts = weight32.shape
    shape = _shape(layers, experts, placement.shape[1], num_groups, num_nodes, num_gpus)
    result = _library.Evaluation()
    result.struct_size = ctypes.sizeof(_library.Evaluation)
    max_load = np.zeros(layers)
    mean_load = np.zeros(layers)
    layer_floor = np.zeros(layers)
    status = _library.eplb_evaluate(weight32.ctypes.data, ctypes.byref(shape), _POLICIES[policy],
                                    placement.ctypes.data, ctypes.byref(result),
                                    max_load.ctypes.data_as(_double_p),
                                    mean_load.ctypes.data_as(_double_p),
                                    layer_floor.ctypes.data_as(_double_p))
    if status != 0:
        raise EplbError(status, _library.text(_library.lib.eplb_last_error()))
    return Evaluation(
        policy=_POLICY_NAMES[result.policy], balancedness=result.balancedness,
        balancedness_min_layer=result.balancedness_min_layer, min_layer=result.min_layer,
        mean_load_sum=result.mean_load_sum, max_load_sum=result.max_load_sum, bound=result.bound,
        balancedness_bound=result.balancedness_bound, bound_gap=result.bound_gap,
        bound_exact=bool(result.bound_exact),
        global_balancedness_bound=result.global_balancedness_bound,
        duplicates=result.duplicates, max_load=max_load, mean_load=mean_load,
        layer_floor=layer_floor)


__all__ = ["evaluate", "Evaluation"]
