"""vLLM's EPLB policy hook, planned by eplb.

vLLM picks the class that plans expert placement from the EPLB_POLICIES dict
of vllm.distributed.eplb.policy, by the name in --eplb-config's "policy"
(vLLM accepts only the names it ships, so eplb takes over a name: "default").
Every vLLM process must install it, which vLLM's general plugins do: this
package declares one (eplb.vllm:plugin) that installs EplbPolicy under the
name in $EPLB_VLLM_POLICY, and does nothing while that is unset.

    EPLB_VLLM_POLICY=default vllm serve MODEL --enable-expert-parallel --enable-eplb

Importing this module imports vLLM when it is installed (EplbPolicy then
subclasses its AbstractEplbPolicy); `import eplb` alone never does.
"""
import inspect
import os
import sys

import numpy as np

from .rebalance import plan

try:
    from vllm.distributed.eplb.policy.abstract import AbstractEplbPolicy as _Base
except ImportError:  # vLLM absent, or a version without the policy package
    _Base = object


def _to_cpu(weight):
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(weight, torch.Tensor) and weight.device.type != "cpu":
        return weight.detach().cpu()
    return weight


def _running_placement(old, layers, experts, num_replicas):
    """vLLM's running physical_to_logical_map as the plan's previous, or None
    when it cannot be one: absent, of another shape (the EP ranks were scaled
    since), or holding an entry that is no expert (vLLM marks a slot it has not
    filled with -1). A fresh plan is then what vLLM planned before."""
    if old is None:
        return None
    old = np.asarray(_to_cpu(old))
    if old.shape != (layers, num_replicas):
        return None
    if old.size and (int(old.min()) < 0 or int(old.max()) >= experts):
        return None
    return old


class EplbPolicy(_Base):
    """vLLM's AbstractEplbPolicy, planned by eplb.rebalance_experts.

    options: keyword arguments passed to eplb.rebalance_experts, e.g.
    {"mode": "deepseek"} (subclass, or set EplbPolicy.options before vLLM plans).
    """

    options = {}
    # vLLM's width of log2phy in the tuple form: the buffers it copies into are
    # num_replicas - num_logical_experts + 1 wide.
    _log2phy_width = "redundant"

    @classmethod
    def _plan(cls, weight, num_replicas, num_groups, num_nodes, num_ranks, old=None):
        # vLLM passes 0 groups for models without expert groups.
        groups = num_groups if num_groups else 1
        weight = _to_cpu(weight)
        options = dict(cls.options)
        previous = None
        if len(weight.shape) == 2:  # anything else plan refuses with its own message
            previous = _running_placement(old, weight.shape[0], weight.shape[1], num_replicas)
        if previous is not None:
            options["previous"] = previous
        else:
            options.pop("slack", None)  # a slack bounds only a plan from a running one
        return plan(weight, num_replicas, groups, num_nodes, num_ranks,
                    log2phy_width=cls._log2phy_width, **options)

    @classmethod
    def rebalance_experts(cls, weight, num_replicas, num_groups, num_nodes, num_ranks,
                          old_global_expert_indices=None):
        """Plans the placement of vLLM's expert loads.

        Parameters:
            weight: [layers, num_logical_experts] load statistics (a torch
                tensor on any device; planned on the host).
            num_replicas: physical experts, a multiple of num_ranks.
            num_groups: expert groups (0 or None: the model has none).
            num_nodes: server nodes; num_ranks: EP ranks (GPUs).
            old_global_expert_indices: the running placement [layers,
                num_replicas] (its physical_to_logical_map). Given, eplb plans
                from it (eplb.rebalance_experts' previous, docs/spec.md section
                13): it moves as few experts as keep every layer's largest GPU
                load within that of a fresh plan, times 1 + options' slack. A
                placement of another shape or with slots that hold no expert
                (-1) is planned afresh, as without it.

        Returns:
            physical_to_logical_map [layers, num_replicas], int64, on the CPU.
        """
        return cls._plan(weight, num_replicas, num_groups, num_nodes, num_ranks,
                         old_global_expert_indices)[0]


class EplbTuplePolicy(EplbPolicy):
    """EplbPolicy for vLLM versions whose rebalance_experts returns the 3-tuple
    (physical_to_logical_map [layers, num_replicas], logical_to_physical_map
    [layers, num_logical_experts, num_replicas - num_logical_experts + 1]
    padded with -1, logical_replica_count [layers, num_logical_experts]),
    all int64 on the CPU."""

    @classmethod
    def rebalance_experts(cls, weight, num_replicas, num_groups, num_nodes, num_ranks,
                          old_global_expert_indices=None):
        """As EplbPolicy.rebalance_experts (also from old_global_expert_indices),
        returning (phy2log, log2phy, logcnt)."""
        return cls._plan(weight, num_replicas, num_groups, num_nodes, num_ranks,
                         old_global_expert_indices)


def policy_for_installed_vllm():
    """EplbTuplePolicy where the installed vLLM's AbstractEplbPolicy returns a
    tuple, else EplbPolicy."""
    if _Base is object:
        return EplbPolicy
    returns = inspect.signature(_Base.rebalance_experts).return_annotation
    return EplbTuplePolicy if "tuple" in str(returns).lower() else EplbPolicy


def register(name="default", policy=None):
    """Installs policy (default: policy_for_installed_vllm()) as vLLM's EPLB
    policy `name` in this process. Returns the class installed."""
    from vllm.distributed.eplb.policy import EPLB_POLICIES
    policy = policy or policy_for_installed_vllm()
    EPLB_POLICIES[name] = policy
    return policy


def plugin():
    """vLLM general plugin (entry point group vllm.general_plugins): registers
    eplb under the policy name in $EPLB_VLLM_POLICY; unset, it does nothing."""
    name = os.environ.get("EPLB_VLLM_POLICY", "")
    if name:
        register(name)


__all__ = ["EplbPolicy", "EplbTuplePolicy", "policy_for_installed_vllm", "register", "plugin"]
