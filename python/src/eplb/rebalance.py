"""rebalance_experts: DeepSeek eplb.py's entry point, planned by libeplb."""
import ctypes
import math
import operator
import sys

import numpy as np

from . import _library, contexts
from .errors import EplbError, Status

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

# Named planner presets: (candidates, iterations).
MODES = {
    "eplb": (8, 20),      # the library's defaults
    "deepseek": (1, 0),   # DeepSeek's eplb.py: one greedy start, no swap search
}


def _mode_options(mode, candidates, iterations):
    """candidates and iterations from a preset, unless given explicitly."""
    if mode is None:
        mode = "eplb"
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError("eplb: mode must be %s, got %r"
                         % (" or ".join(repr(m) for m in MODES), mode))
    if mode != "eplb" and (candidates is not None or iterations is not None):
        raise ValueError("eplb: mode=%r sets candidates and iterations; pass either the mode "
                         "or the numbers" % mode)
    preset = MODES[mode]
    return (preset[0] if candidates is None else candidates,
            preset[1] if iterations is None else iterations)


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


# What refine=True asks for: the cap docs/spec.md section 10 gives --refine.
REFINE_DEFAULT = 256


def _refine_count(refine):
    """refine= as the C option: False or None is 0 (off), True is REFINE_DEFAULT, an
    integer is itself (the library checks its range, 0..100000)."""
    if refine is None or refine is False:
        return 0
    if refine is True:
        return REFINE_DEFAULT
    try:
        value = operator.index(refine)
    except TypeError:
        raise TypeError("eplb: refine must be True, False or an integer, got %s"
                        % type(refine).__name__)
    # Beyond int32 it is passed as a value the library rejects with its own message.
    return value if -(1 << 31) <= value < (1 << 31) else -1


def _distinct_flag(distinct):
    """distinct= as the C option: False or None is 0, True is 1; another integer
    is passed on for the library to refuse with its own message."""
    if distinct is None:
        return 0
    try:
        value = operator.index(distinct)
    except TypeError:
        raise TypeError("eplb: distinct must be True or False, got %s" % type(distinct).__name__)
    return value if -(1 << 31) <= value < (1 << 31) else -1


def _slack_value(slack, fresh):
    """slack= as a float for the C option; it bounds a plan from a running one,
    so a slack for a fresh plan (no previous) is refused rather than silently
    ignored."""
    try:
        value = float(slack)
    except (TypeError, ValueError):
        raise TypeError("eplb: slack must be a real number, got %s" % type(slack).__name__)
    if fresh and value != 0.0:
        raise ValueError("eplb: slack needs previous: it is how far above the fresh plan's "
                         "max GPU load a plan from the running one may stay")
    # float32 overflow becomes inf, which the library rejects by name.
    return value if math.isfinite(value) and abs(value) < 3.5e38 else math.inf


def _host_previous(previous, shape):
    """The running plan as a C-contiguous int64 ndarray [layers, replicas] of
    the shape; its entries are checked by the library."""
    torch = _torch_of(previous)
    if torch is not None:
        if previous.is_floating_point() or previous.is_complex() or previous.dtype == torch.bool:
            raise TypeError("eplb: previous must hold integers, got dtype %s" % previous.dtype)
        previous = previous.detach().cpu().numpy()
    arr = np.asarray(previous)
    if arr.dtype.kind not in "iu":
        raise TypeError("eplb: previous must hold integers, got dtype %s" % arr.dtype)
    if arr.shape != (shape.layers, shape.replicas):
        raise ValueError("eplb: previous must be [layers, num_replicas] = [%d, %d], the running "
                         "plan's phy2log; got shape %s" % (shape.layers, shape.replicas,
                                                          tuple(arr.shape)))
    if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError("eplb: previous holds %d, not an expert" % int(arr.max()))
    return np.ascontiguousarray(arr, dtype=np.int64)


def _shape(layers, experts, num_replicas, num_groups, num_nodes, num_gpus):
    shape = _library.Shape(layers, experts, _count("num_replicas", num_replicas),
                           _count("num_groups", num_groups), _count("num_nodes", num_nodes),
                           _count("num_gpus", num_gpus))
    message = ctypes.c_char_p()
    status = _lib.eplb_shape_check(ctypes.byref(shape), ctypes.byref(message))
    if status != 0:
        raise EplbError(status, _library.text(message.value))
    return shape


def _global_without_groups(experts, num_groups, num_nodes, opts):
    """DeepSeek's eplb.py plans globally when groups % nodes != 0 and then never
    looks at the groups, so it accepts experts % groups != 0 there; the library
    checks that rule for every shape. Returns the groups to pass: 1 (with the
    policy forced to global, which ignores groups) where DeepSeek would plan
    globally and the groups do not divide the experts, else num_groups."""
    groups, nodes = _count("num_groups", num_groups), _count("num_nodes", num_nodes)
    if groups < 1 or nodes < 1 or experts % groups == 0:
        return groups  # valid, or refused by the library with its own message
    runs_global = opts.policy == _POLICIES["global"] or (
        opts.policy == _POLICIES["auto"] and groups % nodes != 0)
    if not runs_global:
        return groups
    opts.policy = _POLICIES["global"]
    return 1


# A log2phy of the always-sufficient width (replicas - experts + 1) is
# allocated up front when it is this small; a larger one is first tried at
# _LOG2PHY_FIRST_WIDTH and planned again at the width the library reports.
_LOG2PHY_FULL_BYTES = 64 << 20
_LOG2PHY_FIRST_WIDTH = 64


def _redundant_width(shape):
    return shape.replicas - shape.experts + 1  # vLLM's width, always enough


def _torch_of(weight):
    """The torch module if weight is a torch.Tensor; never imports torch itself."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(weight, torch.Tensor):
        return torch
    return None


def _check_rank(ndim, shape):
    if ndim not in (2, 3):
        raise ValueError("eplb: weight must be [layers, experts], or a window [T, layers, "
                         "experts] that is summed over T; got shape %s" % (tuple(shape),))


def _host_weight(weight):
    """weight as a C-contiguous float32 ndarray [layers, experts], copied only when
    it is not one already; a 3-D window is summed over its first axis in float64."""
    arr = np.asarray(weight)
    if arr.dtype.kind not in "iuf":
        raise TypeError("eplb: weight must hold integers or real numbers, got dtype %s" % arr.dtype)
    _check_rank(arr.ndim, arr.shape)
    if arr.ndim == 3:
        if arr.shape[0] == 0:
            raise ValueError("eplb: the window %s holds no step to sum" % (arr.shape,))
        with np.errstate(over="ignore", invalid="ignore"):  # the library names bad sums
            arr = arr.sum(axis=0, dtype=np.float64)
    with np.errstate(over="ignore"):  # overflow to inf: the library names the weight
        return np.ascontiguousarray(arr, dtype=np.float32)


def _call_host(ctx, weight32, shape, opts, width, previous=None):
    """One eplb_rebalance call, or eplb_rebalance_incremental from previous.
    Returns (phy2log, log2phy, logcnt), or None with the width needed when
    log2phy is too narrow."""
    layers, experts = weight32.shape
    phy2log = np.empty((layers, shape.replicas), dtype=np.int64)
    logcnt = np.empty((layers, experts), dtype=np.int64)
    log2phy = np.empty((layers, experts, width), dtype=np.int64)
    needed = ctypes.c_int64(0)
    inputs = (ctx.handle, weight32.ctypes.data, ctypes.byref(shape), ctypes.byref(opts))
    outputs = (phy2log.ctypes.data, logcnt.ctypes.data, log2phy.ctypes.data, width,
               ctypes.byref(needed))
    if previous is None:
        status = _lib.eplb_rebalance(*inputs, *outputs)
    else:
        status = _library.eplb_rebalance_incremental(*inputs, previous.ctypes.data, *outputs)
    if status == Status.LOG2PHY_TOO_SMALL:
        return None, needed.value
    if status != 0:
        ctx.fail(status)
    return (phy2log, log2phy, logcnt), needed.value


def _plan_host(weight32, shape, opts, backend, log2phy_width, previous=None):
    ctx = contexts.host_context(backend)
    full = _redundant_width(shape)
    if log2phy_width == "redundant":
        return _call_host(ctx, weight32, shape, opts, full, previous)[0]
    width = full
    if shape.layers * shape.experts * full * 8 > _LOG2PHY_FULL_BYTES:
        width = min(full, _LOG2PHY_FIRST_WIDTH)
    plan, needed = _call_host(ctx, weight32, shape, opts, width, previous)
    if plan is None:  # the plan is a pure function of its input: planned again, the same
        plan, needed = _call_host(ctx, weight32, shape, opts, needed, previous)
    phy2log, log2phy, logcnt = plan
    if needed < log2phy.shape[2]:
        log2phy = np.ascontiguousarray(log2phy[:, :, :needed])
    return phy2log, log2phy, logcnt


def _torch_float32(torch, weight):
    w = weight.detach()
    if w.dtype.is_complex or w.dtype == torch.bool:
        raise TypeError("eplb: weight must hold integers or real numbers, got dtype %s" % w.dtype)
    _check_rank(w.dim(), w.shape)
    if w.dim() == 3:
        if w.shape[0] == 0:
            raise ValueError("eplb: the window %s holds no step to sum" % (tuple(w.shape),))
        w = w.sum(dim=0, dtype=torch.float64)
    if w.dtype != torch.float32:
        w = w.to(torch.float32)
    return w.contiguous()


# Shapes of plans that passed the checks, by their arguments (plain ints only,
# so that an argument the checks would refuse is never found here): the shape
# check and its ctypes object cost a call each once per shape, not once per
# plan. The Shapes are shared and only read.
_checked_shapes = {}
_CHECKED_SHAPES_KEPT = 64


def _plan_shape(layers, experts, shape_args, opts):
    """_global_without_groups and _shape of a plan: the Shape, with opts.policy
    set as _global_without_groups sets it."""
    replicas, groups, nodes, gpus = shape_args
    plain = (type(replicas) is int and type(groups) is int and type(nodes) is int
             and type(gpus) is int)
    key = (layers, experts, opts.policy) + shape_args
    known = _checked_shapes.get(key) if plain else None
    if known is not None:
        shape, opts.policy = known
        return shape
    num_groups = _global_without_groups(experts, groups, nodes, opts)
    shape = _shape(layers, experts, replicas, num_groups, nodes, gpus)
    if plain:
        if len(_checked_shapes) >= _CHECKED_SHAPES_KEPT:
            _checked_shapes.clear()
        _checked_shapes[key] = (shape, opts.policy)
    return shape


def _current_raw_stream(torch, index):
    """The handle of the current stream of GPU index, without building a
    torch Stream (that costs a few microseconds a call)."""
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    return raw(index) if raw is not None else torch.cuda.current_stream(index).cuda_stream


def _plan_cuda(torch, weight, shape_args, opts, backend, check, log2phy_width):
    if backend not in (None, "cuda"):
        raise ValueError("eplb: a CUDA tensor is planned by the cuda backend, not %r; "
                         "move it to the CPU for another backend" % (backend,))
    device = weight.device
    # The weight's GPU is nearly always the current one: then the device
    # switch (and its restore) is left out.
    if torch.cuda.current_device() == device.index:
        return _plan_cuda_current(torch, weight, device, shape_args, opts, check, log2phy_width)
    with torch.cuda.device(device):
        return _plan_cuda_current(torch, weight, device, shape_args, opts, check, log2phy_width)


def _plan_cuda_current(torch, weight, device, shape_args, opts, check, log2phy_width):
    """_plan_cuda with the weight's GPU current."""
    weight32 = _torch_float32(torch, weight)
    layers, experts = weight32.shape
    shape = _plan_shape(layers, experts, shape_args, opts)
    ctx = contexts.cuda_context(torch, device.index)
    stream = _current_raw_stream(torch, device.index)
    if ctx.last_stream is not None and ctx.last_stream != stream:
        # The context's device workspace is reused: order after its last user.
        torch.cuda.current_stream(device).wait_stream(
            torch.cuda.ExternalStream(ctx.last_stream, device=device))
    replicas = shape.replicas
    width = _redundant_width(shape)
    # One allocation for the three outputs (each a view of its own part): a
    # torch.empty costs more than a view.
    at_logcnt = layers * replicas
    at_log2phy = at_logcnt + layers * experts
    outputs = torch.empty(at_log2phy + layers * experts * width, dtype=torch.int64, device=device)
    phy2log = outputs.as_strided((layers, replicas), (replicas, 1), 0)
    logcnt = outputs.as_strided((layers, experts), (experts, 1), at_logcnt)
    log2phy_data = outputs.data_ptr() + 8 * at_log2phy
    # check=True waits for the plan anyway, so the device may choose the width
    # (max(logcnt)) and write log2phy packed at it; check=False returns before
    # the plan is done and keeps the always-sufficient width.
    narrow = check and log2phy_width == "max"
    status = _lib.eplb_rebalance_device(ctx.handle, weight32.data_ptr(), ctypes.byref(shape),
                                        ctypes.byref(opts), phy2log.data_ptr(),
                                        logcnt.data_ptr(), log2phy_data,
                                        _library.LOG2PHY_WIDTH_NEEDED if narrow else width, stream)
    if status != 0:
        ctx.fail(status)
    ctx.last_stream = stream
    ctx.unchecked = True
    if narrow:
        ctx.unchecked = False
        chosen = ctypes.c_int64(0)
        status = _library.eplb_device_log2phy_width(ctx.handle, stream, ctypes.byref(chosen))
        if status != 0:
            ctx.fail(status)
        width = chosen.value
    elif check:
        _device_status(ctx)
    log2phy = outputs.as_strided((layers, experts, width), (experts * width, width, 1), at_log2phy)
    return phy2log, log2phy, logcnt


def _device_status(ctx):
    ctx.unchecked = False
    status = _lib.eplb_device_status(ctx.handle, ctx.last_stream)
    if status != 0:
        ctx.fail(status)


_LOG2PHY_WIDTHS = ("max", "redundant")


def _parse_options(mode, candidates, iterations, seed, noise, tolerance, policy, refine,
                   distinct, slack, fresh):
    """The C options of plan's arguments (fresh: no previous plan), checked."""
    candidates, iterations = _mode_options(mode, candidates, iterations)
    opts = _options(candidates, iterations, seed, noise, tolerance, policy)
    opts.refine = _refine_count(refine)
    opts.distinct = _distinct_flag(distinct)
    opts.slack = _slack_value(slack, fresh)
    return opts


# Options already parsed, by their arguments: an engine plans with the same
# arguments every time, and parsing them costs more than a copy. Only plain
# values are kept, each with its type (True and 1 ask for different refine
# counts).
_parsed_options = {}
_PARSED_OPTIONS_KEPT = 64
_PLAIN_TYPES = frozenset((type(None), bool, int, float, str))


def _planner_options(*arguments):
    """_parse_options, through _parsed_options: a fresh copy each call (callers
    change the policy)."""
    types = tuple(map(type, arguments))
    key = (arguments, types) if _PLAIN_TYPES.issuperset(types) else None
    known = _parsed_options.get(key) if key is not None else None
    if known is None:
        known = _parse_options(*arguments)
        if key is not None:
            if len(_parsed_options) >= _PARSED_OPTIONS_KEPT:
                _parsed_options.clear()
            _parsed_options[key] = known
    return type(known).from_buffer_copy(known)


def plan(weight, num_replicas, num_groups, num_nodes, num_gpus, *, mode=None, candidates=None,
         iterations=None, seed=0, noise=0.2, tolerance=1e-5, policy="auto", backend=None,
         check=True, log2phy_width="max", refine=False, distinct=False, previous=None,
         slack=0.0):
    """rebalance_experts (its docstring says what each argument means)."""
    if log2phy_width not in _LOG2PHY_WIDTHS:
        raise ValueError("eplb: log2phy_width must be 'max' or 'redundant', got %r"
                         % (log2phy_width,))
    if backend is not None and not isinstance(backend, str):
        raise TypeError("eplb: backend must be a string or None, got %s" % type(backend).__name__)
    opts = _planner_options(mode, candidates, iterations, seed, noise, tolerance, policy, refine,
                            distinct, slack, previous is None)
    torch = _torch_of(weight)
    if torch is not None and weight.device.type == "cuda" and previous is None:
        _check_rank(weight.dim(), weight.shape)
        shape_args = (num_replicas, num_groups, num_nodes, num_gpus)
        return _plan_cuda(torch, weight, shape_args, opts, backend, check, log2phy_width)
    if torch is None:
        weight32 = _host_weight(weight)
    elif weight.device.type == "cuda":
        # The incremental planner runs on the host: the loads come over, the
        # plan goes back to the weight's device.
        weight32 = _torch_float32(torch, weight).cpu().numpy()
    elif weight.device.type != "cpu":
        raise ValueError("eplb: weight on device %s: use a CPU or CUDA tensor" % weight.device)
    else:
        weight32 = _torch_float32(torch, weight).numpy()  # shares the tensor's memory
    layers, experts = weight32.shape
    shape = _plan_shape(layers, experts, (num_replicas, num_groups, num_nodes, num_gpus), opts)
    running = None if previous is None else _host_previous(previous, shape)
    result = _plan_host(weight32, shape, opts, backend, log2phy_width, running)
    if torch is None:
        return result
    return tuple(torch.from_numpy(a).to(weight.device) for a in result)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, *, mode=None,
                      candidates=None, iterations=None, seed=0, noise=0.2, tolerance=1e-5,
                      policy="auto", backend=None, check=True, log2phy_width="max",
                      refine=False, distinct=False, previous=None, slack=0.0):
    """Plans expert replication and placement, as DeepSeek eplb.py's rebalance_experts.

    Parameters:
        weight: [layers, num_logical_experts] load statistics, or a window
            [T, layers, num_logical_experts] of them (summed over T, in float64,
            as SGLang's recorder dumps them); a numpy array (or anything
            numpy.asarray accepts) or a torch tensor (CPU or CUDA), of any
            integer or real dtype, finite and >= 0. Converted to float32.
        num_replicas: physical expert slots, a multiple of num_gpus.
        num_groups: expert groups (1 for models without groups). Must divide the
            experts where the hierarchical policy runs; where the global one
            runs it is not used (DeepSeek's rule).
        num_nodes: server nodes; hierarchical placement when num_groups % num_nodes == 0.
        num_gpus: GPUs, a multiple of num_nodes for the hierarchical policy.
        mode: a preset of candidates and iterations: None or "eplb" (8 and 20,
            the defaults) or "deepseek" (1 and 0: DeepSeek's own algorithm,
            whose plan eplb reproduces exactly, ties broken by expert index).
        candidates, iterations: randomized greedy starts per row and swap
            iterations per start (SPEC.md section 6); override the "eplb" preset.
        seed: seeds the random function behind the randomized starts; the same
            seed gives the same plan, another seed another (as good) plan.
        noise, tolerance: the randomized starts' relative key noise, and the
            smallest load gain a swap must bring (SPEC.md section 6).
        policy: "auto" (DeepSeek's rule: hierarchical when num_groups % num_nodes
            == 0, else global), "hierarchical" (EplbError if groups % nodes != 0)
            or "global".
        backend: "cpu", "opencl", "cuda", "auto" or None. None: CUDA tensors use
            "cuda"; other inputs follow $EPLB_BACKEND, else "auto".
        check: CUDA tensors only. True waits for the plan on the current stream
            and raises EplbError if the device rejected the weights; False returns
            at once (fully asynchronous): call eplb.synchronize() to get the status.
        log2phy_width: "max" (DeepSeek's width, max(logcnt)) or "redundant"
            (num_replicas - num_logical_experts + 1, the width vLLM's buffers
            have; on CUDA tensors it saves reading max(logcnt) back and a copy).
        refine: the refine search after the packing (docs/spec.md section 10):
            False (the default, off: the plan is exactly as without it), True
            (at most 256 trades per row) or the most trades per row, 0..100000.
            It runs on every backend with the same plans.
        distinct: True: no GPU holds two replicas of one expert (docs/spec.md
            section 11); an expert with more replicas than its row has GPUs
            keeps one per GPU. False (the default) leaves plans exactly as
            without it. It runs on every backend with the same plans.
        previous: the running placement, phy2log [layers, num_replicas] of
            integers (numpy array or torch tensor, any device; from eplb or any
            other planner, e.g. vLLM's physical_to_logical_map). Given, the plan
            moves as few experts as it can away from it while every layer's
            largest GPU load stays within (1 + slack) times that of the fresh
            plan (docs/spec.md section 13; eplb_rebalance_incremental). It is
            planned on the host, also for CUDA tensors. None: a fresh plan.
        slack: with previous, how far above the fresh plan's largest GPU load a
            layer may stay for fewer moves, finite and >= 0 (default 0).

    Returns:
        (phy2log [layers, num_replicas], log2phy [layers, num_logical_experts,
        width] padded with -1, logcnt [layers, num_logical_experts]), all int64:
        numpy arrays for numpy input, torch tensors on the weight's device for
        torch input. With check=False, log2phy of a CUDA tensor has the
        "redundant" width (max(logcnt) is not known when the call returns).

    Raises:
        EplbError: the library rejected the input (shape rules, NaN, infinity or
            negative weights, option values) or failed; .status and .message say why.
        TypeError: weight of a non-numeric dtype, previous of a non-integer one, or a
            non-integer count.
        ValueError: weight neither 2-D nor 3-D, a count outside int64, a seed
            outside uint64, an unknown policy, mode or log2phy_width, a mode with
            candidates or iterations, a backend that cannot take the tensor's
            device, previous not of shape [layers, num_replicas], or a slack
            without previous.
    """
    return plan(weight, num_replicas, num_groups, num_nodes, num_gpus, mode=mode,
                candidates=candidates, iterations=iterations, seed=seed, noise=noise,
                tolerance=tolerance, policy=policy, backend=backend, check=check,
                log2phy_width=log2phy_width, refine=refine, distinct=distinct,
                previous=previous, slack=slack)


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
