"""SGLang's EPLB algorithm dispatcher, planned by eplb.

SGLang computes expert placement through
sglang.srt.eplb.eplb_algorithms.rebalance_experts, choosing the algorithm with
--eplb-algorithm (an EplbAlgorithm member). rebalance_experts below has that
function's signature and return values; register() puts it in SGLang's place
in the calling process. SGLang starts its scheduler processes anew, so call it
where every process runs it, e.g. in a sitecustomize.py on PYTHONPATH:

    import eplb.sglang
    eplb.sglang.register()

`import eplb` alone never imports SGLang; neither does this module.
"""
import sys

from .rebalance import plan

#: Keyword arguments passed to eplb.rebalance_experts, e.g. {"mode": "deepseek"}.
options = {}

# SGLang's DeepSeek algorithms; "_vec" is its vectorised variant of the same plan.
_GLOBAL = ("deepseek", "deepseek_vec")
_HIERARCHICAL = ("deepseek_hierarchical", "deepseek_vec_hierarchical")


def _policy(algorithm):
    name = getattr(algorithm, "name", algorithm)
    if name in _GLOBAL:
        return "global"
    if name in _HIERARCHICAL:
        return "hierarchical"
    raise NotImplementedError(
        "eplb.sglang: algorithm %r is not one eplb plans (it plans %s); choose one of those "
        "with --eplb-algorithm, or leave SGLang's dispatcher in place"
        % (name, ", ".join(_GLOBAL + _HIERARCHICAL)))


def rebalance_experts(tokens_per_expert, num_physical_experts, num_local_physical_experts,
                      num_groups, num_nodes, algorithm):
    """SGLang's rebalance_experts, planned by eplb.

    Parameters:
        tokens_per_expert: [window, layers, logical experts] counts (summed over
            the window) or [layers, logical experts]; a torch tensor on any device.
        num_physical_experts: physical expert slots per layer.
        num_local_physical_experts: slots per GPU.
        num_groups: expert groups, None for models without groups.
        num_nodes: server nodes.
        algorithm: an EplbAlgorithm member (or its name): deepseek and
            deepseek_vec plan globally, deepseek_hierarchical and
            deepseek_vec_hierarchical hierarchically; others raise
            NotImplementedError, as SGLang's dispatcher does for unknown ones.

    Returns:
        (physical_to_logical_map [layers, num_physical_experts],
        logical_to_all_physical_map [layers, logical experts, max(logcnt)]
        padded with -1, logical_count [layers, logical experts]): int64 tensors
        on the CPU, as SGLang's DeepSeek algorithms return them.
    """
    policy = _policy(algorithm)
    weight = tokens_per_expert
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(weight, torch.Tensor) and weight.device.type != "cpu":
        weight = weight.detach().cpu()
    if num_local_physical_experts < 1 or num_physical_experts % num_local_physical_experts:
        raise ValueError("eplb.sglang: num_local_physical_experts (%r) must divide "
                         "num_physical_experts (%r)" % (num_local_physical_experts,
                                                        num_physical_experts))
    num_gpus = num_physical_experts // num_local_physical_experts
    groups = 1 if num_groups is None else num_groups
    return plan(weight, num_physical_experts, groups, num_nodes, num_gpus, policy=policy,
                **options)


def register():
    """Replaces SGLang's dispatcher (sglang.srt.eplb.eplb_algorithms.rebalance_experts)
    with eplb's in this process. Returns False where SGLang is not installed."""
    try:
        from sglang.srt.eplb import eplb_algorithms
    except ImportError:
        return False
    eplb_algorithms.rebalance_experts = rebalance_experts
    return True


__all__ = ["rebalance_experts", "register", "options"]
