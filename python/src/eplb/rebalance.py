"""rebalance_experts: DeepSeek eplb.py's entry point, planned by libeplb."""
import ctypes
import math
import operator
import sys

import numpy as np

from . import _library, contexts
from .errors import EplbError

_lib = _library.lib
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _count(name, value):
    """A shape argument as a Python int in int64 range (the library checks the rules)."""
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError("eplb: %s must be an integer, got %s" % (name, type(value).__name__))
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError("eplb: %s = %d is out of int64 range" % (name, value))
    return value


_POLICIES = {"auto": 0, "hierarchical": 1, "global": 2}  # enum eplb_policy


def _options(candidates, iterations, seed, noise, tolerance, policy):
    opts = _library.new_options()
    if policy not in _POLICIES:
        raise ValueError("eplb: policy must be 'auto', 'hierarchical' or 'global', got %r"
                         % (policy,))
    opts.policy = _POLICIES[policy]
    # Out-of-range values are passed as a value the library rejects with its own
    # message, never truncated by ctypes into a valid one.
    for name, value, bits in (("candidates", candidates, 32), ("iterations", iterations, 32)):
        value = _count(name, value)
        limit = 1 << (bits - 1)
        setattr(opts, name, value if -limit <= value < limit else -1)
    try:
        seed = operator.index(seed)
    except TypeError:
        raise TypeError("eplb: seed must be an integer, got %s" % type(seed).__name__)
    if not 0 <= seed < (1 << 64):
        raise ValueError("eplb: seed must be in 0..2**64-1, got %d" % seed)
    opts.seed = seed
    for name, value in (("noise", noise), ("tolerance", tolerance)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError("eplb: %s must be a real number, got %s" % (name, type(value).__name__))
        # float32 overflow becomes inf, which the library rejects.
        setattr(opts, name, value if math.isfinite(value) and abs(value) < 3.5e38 else math.inf)
    return opts


def _shape(layers, experts, num_replicas, num_groups, num_nodes, num_gpus):
    shape = _library.Shape(layers, experts, _count("num_replicas", num_replicas),
                           _count("num_groups", num_groups), _count("num_nodes", num_nodes),
                           _count("num_gpus", num_gpus))
    message = ctypes.c_char_p()
    status = _lib.eplb_shape_check(ctypes.byref(shape), ctypes.byref(message))
    if status != 0:
        raise EplbError(status, _library.text(message.value))
    return shape


def _log2phy_width(shape):
    return shape.replicas - shape.experts + 1  # DeepSeek's width, always enough


def _torch_of(weight):
    """The torch module if weight is a torch.Tensor; never imports torch itself."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(weight, torch.Tensor):
        return torch
    return None


def _check_matrix(ndim, shape):
    if ndim != 2:
        raise ValueError("eplb: weight must be 2-D [layers, experts], got shape %s" % (tuple(shape),))


def _host_weight(weight):
    """weight as a C-contiguous float32 ndarray, copied only when it is not one already."""
    arr = np.asarray(weight)
    if arr.dtype.kind not in "iuf":
        raise TypeError("eplb: weight must hold integers or real numbers, got dtype %s" % arr.dtype)
    _check_matrix(arr.ndim, arr.shape)
    with np.errstate(over="ignore"):  # overflow to inf: the library names the weight
        return np.ascontiguousarray(arr, dtype=np.float32)


def _plan_host(weight32, shape, opts, backend):
    layers, experts = weight32.shape
    ctx = contexts.host_context(backend)
    width = _log2phy_width(shape)
    phy2log = np.empty((layers, shape.replicas), dtype=np.int64)
    logcnt = np.empty((layers, experts), dtype=np.int64)
    log2phy = np.empty((layers, experts, width), dtype=np.int64)
    status = _lib.eplb_rebalance(ctx.handle, weight32.ctypes.data, ctypes.byref(shape),
                                 ctypes.byref(opts), phy2log.ctypes.data, logcnt.ctypes.data,
                                 log2phy.ctypes.data, width, None)
    if status != 0:
        ctx.fail(status)
    return phy2log, log2phy, logcnt


def _torch_float32(torch, weight):
    w = weight.detach()
    if w.dtype.is_complex or w.dtype == torch.bool:
        raise TypeError("eplb: weight must hold integers or real numbers, got dtype %s" % w.dtype)
    _check_matrix(w.dim(), w.shape)
    if w.dtype != torch.float32:
        w = w.to(torch.float32)
    return w.contiguous()


def _plan_cuda(torch, weight, shape, opts, backend, check):
    if backend not in (None, "cuda"):
        raise ValueError("eplb: a CUDA tensor is planned by the cuda backend, not %r; "
                         "move it to the CPU for another backend" % (backend,))
    device = weight.device
    with torch.cuda.device(device):
        weight32 = _torch_float32(torch, weight)
        layers, experts = weight32.shape
        ctx = contexts.cuda_context(torch, device.index)
        stream = torch.cuda.current_stream(device)
        if ctx.last_stream is not None and ctx.last_stream != stream:
            # The context's device workspace is reused: order after its last user.
            stream.wait_stream(ctx.last_stream)
        width = _log2phy_width(shape)
        phy2log = torch.empty((layers, shape.replicas), dtype=torch.int64, device=device)
        logcnt = torch.empty((layers, experts), dtype=torch.int64, device=device)
        log2phy = torch.empty((layers, experts, width), dtype=torch.int64, device=device)
        status = _lib.eplb_rebalance_device(ctx.handle, weight32.data_ptr(), ctypes.byref(shape),
                                            ctypes.byref(opts), phy2log.data_ptr(),
                                            logcnt.data_ptr(), log2phy.data_ptr(), width,
                                            stream.cuda_stream)
        if status != 0:
            ctx.fail(status)
        ctx.last_stream = stream
        ctx.unchecked = True
        if check:
            _device_status(ctx)
    return phy2log, log2phy, logcnt


def _device_status(ctx):
    ctx.unchecked = False
    status = _lib.eplb_device_status(ctx.handle, ctx.last_stream.cuda_stream)
    if status != 0:
        ctx.fail(status)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, *,
                      candidates=8, iterations=20, seed=0, noise=0.2, tolerance=1e-5,
                      policy="auto", backend=None, check=True):
    """Plans expert replication and placement, as DeepSeek eplb.py's rebalance_experts.

    Parameters:
        weight: [layers, num_logical_experts] load statistics; a numpy array (or
            anything numpy.asarray accepts) or a torch tensor (CPU or CUDA), of
            any integer or real dtype, finite and >= 0. Converted to float32.
        num_replicas: physical expert slots, a multiple of num_gpus.
        num_groups: expert groups (1 for models without groups).
        num_nodes: server nodes; hierarchical placement when num_groups % num_nodes == 0.
        num_gpus: GPUs, a multiple of num_nodes.
        candidates, iterations, seed, noise, tolerance: planner options (SPEC.md
            section 6); candidates=1, iterations=0 gives DeepSeek's exact plan.
        policy: "auto" (DeepSeek's rule: hierarchical when num_groups % num_nodes
            == 0, else global), "hierarchical" (EplbError if groups % nodes != 0)
            or "global".
        backend: "cpu", "opencl", "cuda", "auto" or None. None: CUDA tensors use
            "cuda"; other inputs follow $EPLB_BACKEND, else "auto".
        check: CUDA tensors only. True waits for the plan on the current stream
            and raises EplbError if the device rejected the weights; False returns
            at once (fully asynchronous): call eplb.synchronize() to get the status.

    Returns:
        (phy2log [layers, num_replicas], log2phy [layers, num_logical_experts,
        num_replicas - num_logical_experts + 1] padded with -1,
        logcnt [layers, num_logical_experts]), all int64: numpy arrays for
        numpy input, torch tensors on the weight's device for torch input.

    Raises:
        EplbError: the library rejected the input (shape rules, NaN, infinity or
            negative weights, option values) or failed; .status and .message say why.
        TypeError: weight of a non-numeric dtype, or a non-integer count.
        ValueError: weight not 2-D, a count outside int64, a seed outside uint64,
            an unknown policy, or a backend that cannot take the tensor's device.
    """
    if backend is not None and not isinstance(backend, str):
        raise TypeError("eplb: backend must be a string or None, got %s" % type(backend).__name__)
    opts = _options(candidates, iterations, seed, noise, tolerance, policy)
    torch = _torch_of(weight)
    if torch is None:
        weight32 = _host_weight(weight)
        shape = _shape(*weight32.shape, num_replicas, num_groups, num_nodes, num_gpus)
        return _plan_host(weight32, shape, opts, backend)

    if weight.device.type == "cuda":
        _check_matrix(weight.dim(), weight.shape)
        shape = _shape(*weight.shape, num_replicas, num_groups, num_nodes, num_gpus)
        return _plan_cuda(torch, weight, shape, opts, backend, check)
    if weight.device.type != "cpu":
        raise ValueError("eplb: weight on device %s: use a CPU or CUDA tensor" % weight.device)
    weight32 = _torch_float32(torch, weight).numpy()  # shares the tensor's memory
    shape = _shape(*weight32.shape, num_replicas, num_groups, num_nodes, num_gpus)
    return tuple(torch.from_numpy(a) for a in _plan_host(weight32, shape, opts, backend))


def synchronize(device=None):
    """Waits for this thread's last check=False plan on a CUDA device (default:
    the current one) and raises EplbError if it failed. Returns at once if
    there is none."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return  # no CUDA tensor can have been planned
    index = torch.device(device).index if device is not None else None
    if index is None:
        index = torch.cuda.current_device()
    ctx = contexts.existing_cuda_context(index)
    if ctx is not None and ctx.last_stream is not None:
        _device_status(ctx)
