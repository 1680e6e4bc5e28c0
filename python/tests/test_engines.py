"""The engine adapters eplb.vllm and eplb.sglang against stand-ins of the engines'
interfaces (the engines themselves are not installed here): signatures, return
types, dtypes and devices, values equal to the plain eplb.rebalance_experts call."""
import abc
import enum
import importlib
import importlib.util
import inspect
import subprocess
import sys
import types

import numpy as np
import pytest

import eplb


def test_import_eplb_imports_no_engine():
    code = ("import sys, eplb; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('vllm', 'sglang', 'torch') or m in ('eplb.vllm', 'eplb.sglang')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.strip() == "[]"


def test_sglang_module_imports_no_engine():
    code = ("import sys, eplb.sglang; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sglang', 'vllm')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.strip() == "[]"


# ---- vLLM ------------------------------------------------------------------

def fake_vllm(returns_tuple=False):
    """Modules standing in for vllm.distributed.eplb.policy(.abstract): an
    AbstractEplbPolicy with vLLM's abstract classmethod, and EPLB_POLICIES."""
    class AbstractEplbPolicy(abc.ABC):
        @classmethod
        @abc.abstractmethod
        def rebalance_experts(cls, weight, num_replicas, num_groups, num_nodes, num_ranks,
                              old_global_expert_indices=None):
            raise NotImplementedError

    AbstractEplbPolicy.rebalance_experts.__func__.__annotations__["return"] = (
        "tuple[torch.Tensor, torch.Tensor, torch.Tensor]" if returns_tuple else "torch.Tensor")

    class DefaultEplbPolicy(AbstractEplbPolicy):
        @classmethod
        def rebalance_experts(cls, *args, **kwargs):
            raise AssertionError("vLLM's own policy ran")

    names = ["vllm", "vllm.distributed", "vllm.distributed.eplb",
             "vllm.distributed.eplb.policy", "vllm.distributed.eplb.policy.abstract"]
    mods = {name: types.ModuleType(name) for name in names}
    mods["vllm.distributed.eplb.policy.abstract"].AbstractEplbPolicy = AbstractEplbPolicy
    mods["vllm.distributed.eplb.policy"].AbstractEplbPolicy = AbstractEplbPolicy
    mods["vllm.distributed.eplb.policy"].EPLB_POLICIES = {"default": DefaultEplbPolicy}
    for parent, child in zip(names, names[1:]):
        setattr(mods[parent], child.rsplit(".", 1)[1], mods[child])
    return mods


def load_eplb_vllm(monkeypatch, modules):
    """eplb.vllm imported afresh with sys.modules holding `modules` (None: absent)."""
    for name, mod in modules.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.delitem(sys.modules, "eplb.vllm", raising=False)
    module = importlib.import_module("eplb.vllm")
    monkeypatch.delitem(sys.modules, "eplb.vllm")  # the next test imports its own
    return module


def test_vllm_policy_signature_matches_the_abstract(monkeypatch):
    mods = fake_vllm()
    ev = load_eplb_vllm(monkeypatch, mods)
    abstract = mods["vllm.distributed.eplb.policy.abstract"].AbstractEplbPolicy
    assert issubclass(ev.EplbPolicy, abstract)
    assert not inspect.isabstract(ev.EplbPolicy)
    want = inspect.signature(abstract.rebalance_experts).parameters
    for cls in (ev.EplbPolicy, ev.EplbTuplePolicy):
        got = inspect.signature(cls.rebalance_experts).parameters
        assert list(got) == list(want)
        assert [p.default for p in got.values()] == [p.default for p in want.values()]
        assert isinstance(inspect.getattr_static(cls, "rebalance_experts"), classmethod)


def test_vllm_plain_class_without_vllm(monkeypatch):
    ev = load_eplb_vllm(monkeypatch, {"vllm": None})
    assert ev.EplbPolicy.__bases__ == (object,)
    assert ev.policy_for_installed_vllm() is ev.EplbPolicy


def test_vllm_register_and_plugin(monkeypatch):
    mods = fake_vllm()
    ev = load_eplb_vllm(monkeypatch, mods)
    policies = mods["vllm.distributed.eplb.policy"].EPLB_POLICIES
    default = policies["default"]
    monkeypatch.delenv("EPLB_VLLM_POLICY", raising=False)
    ev.plugin()
    assert policies["default"] is default  # unset: nothing installed
    monkeypatch.setenv("EPLB_VLLM_POLICY", "default")
    ev.plugin()
    assert policies["default"] is ev.EplbPolicy


def test_vllm_register_picks_the_tuple_form_for_older_vllm(monkeypatch):
    mods = fake_vllm(returns_tuple=True)
    ev = load_eplb_vllm(monkeypatch, mods)
    assert ev.register() is ev.EplbTuplePolicy
    assert mods["vllm.distributed.eplb.policy"].EPLB_POLICIES["default"] is ev.EplbTuplePolicy


def test_vllm_entry_point_declared():
    from importlib import metadata
    try:
        eps = metadata.entry_points()
        group = (eps.select(group="vllm.general_plugins") if hasattr(eps, "select")
                 else eps.get("vllm.general_plugins", []))
    except Exception as exc:  # no metadata: running from the source tree
        pytest.skip("package metadata unavailable: %s" % exc)
    values = [ep.value for ep in group if ep.name == "eplb"]
    if not values:
        pytest.skip("eplb not installed with its metadata (source tree run)")
    assert values == ["eplb.vllm:plugin"]


torch_needed = pytest.mark.skipif("torch" not in sys.modules and
                                  importlib.util.find_spec("torch") is None,
                                  reason="torch not installed")

ARGS = (24, 4, 2, 8)  # replicas, groups, nodes, ranks


def vllm_load(torch):
    return torch.from_numpy(
        np.random.default_rng(8).integers(0, 900, size=(5, 16)).astype(np.int64))


@torch_needed
def test_vllm_policy_values(monkeypatch):
    import torch
    ev = load_eplb_vllm(monkeypatch, fake_vllm())
    weight = vllm_load(torch)
    want = eplb.rebalance_experts(weight, *ARGS)
    got = ev.EplbPolicy.rebalance_experts(weight, *ARGS)
    assert isinstance(got, torch.Tensor)
    assert got.dtype == torch.int64 and got.device.type == "cpu" and got.shape == (5, 24)
    assert torch.equal(got, want[0])
    # Planned from the running placement of the same loads, nothing moves.
    again = ev.EplbPolicy.rebalance_experts(weight, *ARGS, old_global_expert_indices=got)
    assert torch.equal(again, got)


@torch_needed
@pytest.mark.parametrize("returns_tuple", [False, True])
def test_vllm_plans_from_the_running_placement(monkeypatch, returns_tuple):
    import torch
    ev = load_eplb_vllm(monkeypatch, fake_vllm(returns_tuple))
    policy = ev.EplbTuplePolicy if returns_tuple else ev.EplbPolicy
    running = eplb.rebalance_experts(vllm_load(torch), *ARGS)[0]
    weight = torch.from_numpy(np.random.default_rng(9).integers(0, 900, size=(5, 16)))
    fresh = eplb.rebalance_experts(weight, *ARGS)[0]
    got = policy.rebalance_experts(weight, *ARGS, old_global_expert_indices=running)
    phy2log = got[0] if returns_tuple else got
    assert phy2log.dtype == torch.int64 and phy2log.shape == (5, 24)
    assert torch.equal(phy2log, eplb.rebalance_experts(weight, *ARGS, previous=running)[0])
    ranks = ARGS[3]
    assert (eplb.count_moves(running, phy2log, ranks).moved_slots
            < eplb.count_moves(running, fresh, ranks).moved_slots)
    mine = eplb.evaluate(weight, phy2log, *ARGS[1:]).max_load
    theirs = eplb.evaluate(weight, fresh, *ARGS[1:]).max_load
    assert np.all(mine <= theirs * (1 + 1e-6))


@torch_needed
def test_vllm_plans_afresh_from_a_placement_that_cannot_be_one(monkeypatch):
    """A placement of another shape (the EP ranks were scaled) or with unfilled
    slots (-1) is planned afresh, as vLLM's own policy does without one."""
    import torch
    ev = load_eplb_vllm(monkeypatch, fake_vllm())
    weight = vllm_load(torch)
    fresh = eplb.rebalance_experts(weight, *ARGS)[0]
    running = eplb.rebalance_experts(weight.flip(1), *ARGS)[0]
    unfilled = running.clone()
    unfilled[0, 3] = -1
    for old in (running[:, :16], unfilled):
        assert torch.equal(ev.EplbPolicy.rebalance_experts(weight, *ARGS,
                                                           old_global_expert_indices=old), fresh)


@torch_needed
def test_vllm_slack_in_the_options(monkeypatch):
    """A slack bounds plans from the running placement and is left out of fresh ones."""
    import torch
    ev = load_eplb_vllm(monkeypatch, fake_vllm())

    class Loose(ev.EplbPolicy):
        options = {"slack": 0.2}

    weight = vllm_load(torch)
    running = eplb.rebalance_experts(weight.flip(1), *ARGS)[0]
    assert torch.equal(Loose.rebalance_experts(weight, *ARGS),
                       eplb.rebalance_experts(weight, *ARGS)[0])
    assert torch.equal(Loose.rebalance_experts(weight, *ARGS, old_global_expert_indices=running),
                       eplb.rebalance_experts(weight, *ARGS, previous=running, slack=0.2)[0])


@torch_needed
def test_vllm_tuple_policy_values(monkeypatch):
    import torch
    ev = load_eplb_vllm(monkeypatch, fake_vllm(returns_tuple=True))
    weight = vllm_load(torch)
    phy2log, log2phy, logcnt = ev.EplbTuplePolicy.rebalance_experts(weight, *ARGS)
    want = eplb.rebalance_experts(weight, *ARGS)
    for t in (phy2log, log2phy, logcnt):
        assert t.dtype == torch.int64 and t.device.type == "cpu"
    assert log2phy.shape == (5, 16, 24 - 16 + 1)  # vLLM's buffers: redundant + 1 wide
    assert torch.equal(phy2log, want[0]) and torch.equal(logcnt, want[2])
    width = want[1].shape[2]
    assert torch.equal(log2phy[:, :, :width], want[1])
    assert bool((log2phy[:, :, width:] == -1).all())


@torch_needed
def test_vllm_zero_groups_means_none(monkeypatch):
    import torch
    ev = load_eplb_vllm(monkeypatch, fake_vllm())
    weight = vllm_load(torch)
    assert torch.equal(ev.EplbPolicy.rebalance_experts(weight, 24, 0, 1, 8),
                       eplb.rebalance_experts(weight, 24, 1, 1, 8)[0])


@torch_needed
def test_vllm_policy_options(monkeypatch):
    import torch
    ev = load_eplb_vllm(monkeypatch, fake_vllm())

    class DeepSeekPlan(ev.EplbPolicy):
        options = {"mode": "deepseek"}

    weight = vllm_load(torch)
    assert torch.equal(DeepSeekPlan.rebalance_experts(weight, *ARGS),
                       eplb.rebalance_experts(weight, *ARGS, mode="deepseek")[0])


# ---- SGLang ----------------------------------------------------------------

class EplbAlgorithm(enum.Enum):
    """Stand-in for sglang.srt.eplb.eplb_algorithms.EplbAlgorithm."""
    deepseek = enum.auto()
    deepseek_hierarchical = enum.auto()
    deepseek_vec = enum.auto()
    deepseek_vec_hierarchical = enum.auto()
    elasticity_aware = enum.auto()


def sglang_signature(tokens_per_expert, num_physical_experts, num_local_physical_experts,
                     num_groups, num_nodes, algorithm):
    """SGLang's dispatcher's parameters."""


def test_sglang_signature():
    import eplb.sglang
    got = inspect.signature(eplb.sglang.rebalance_experts).parameters
    assert list(got) == list(inspect.signature(sglang_signature).parameters)


def sglang_window(torch):
    return torch.from_numpy(
        np.random.default_rng(2).integers(0, 300, size=(3, 5, 16)).astype(np.int64))


@torch_needed
@pytest.mark.parametrize("algorithm,policy", [
    (EplbAlgorithm.deepseek, "global"), (EplbAlgorithm.deepseek_vec, "global"),
    (EplbAlgorithm.deepseek_hierarchical, "hierarchical"),
    (EplbAlgorithm.deepseek_vec_hierarchical, "hierarchical")])
def test_sglang_values(algorithm, policy):
    import torch
    import eplb.sglang
    window = sglang_window(torch)
    # 24 slots, 3 per GPU: 8 GPUs; 4 groups on 2 nodes.
    got = eplb.sglang.rebalance_experts(window, 24, 3, 4, 2, algorithm)
    want = eplb.rebalance_experts(window.sum(dim=0), 24, 4, 2, 8, policy=policy)
    assert isinstance(got, tuple) and len(got) == 3
    for g, w in zip(got, want):
        assert g.dtype == torch.int64 and g.device.type == "cpu"
        assert torch.equal(g, w)
    assert got[1].shape == (5, 16, int(got[2].max()))  # padded to max(logcnt), as DeepSeek's


@torch_needed
def test_sglang_no_groups():
    import torch
    import eplb.sglang
    window = sglang_window(torch)
    got = eplb.sglang.rebalance_experts(window, 24, 3, None, 2, EplbAlgorithm.deepseek)
    want = eplb.rebalance_experts(window.sum(dim=0), 24, 1, 2, 8, policy="global")
    for g, w in zip(got, want):
        assert torch.equal(g, w)


@torch_needed
def test_sglang_hierarchical_needs_groups_on_nodes():
    import torch
    import eplb.sglang
    with pytest.raises(eplb.EplbError) as info:
        eplb.sglang.rebalance_experts(sglang_window(torch), 24, 3, 4, 3,
                                      EplbAlgorithm.deepseek_hierarchical)
    assert info.value.status == eplb.Status.POLICY


def test_sglang_other_algorithm_not_planned():
    import eplb.sglang
    with pytest.raises(NotImplementedError, match="elasticity_aware"):
        eplb.sglang.rebalance_experts(np.ones((1, 2, 16)), 24, 3, 4, 2,
                                      EplbAlgorithm.elasticity_aware)


def test_sglang_local_slots_must_divide():
    import eplb.sglang
    with pytest.raises(ValueError, match="num_local_physical_experts"):
        eplb.sglang.rebalance_experts(np.ones((1, 2, 16)), 24, 5, 4, 2, EplbAlgorithm.deepseek)


def test_sglang_register(monkeypatch):
    import eplb.sglang
    names = ["sglang", "sglang.srt", "sglang.srt.eplb", "sglang.srt.eplb.eplb_algorithms"]
    mods = {name: types.ModuleType(name) for name in names}
    for parent, child in zip(names, names[1:]):
        setattr(mods[parent], child.rsplit(".", 1)[1], mods[child])
    mods["sglang.srt.eplb.eplb_algorithms"].rebalance_experts = sglang_signature
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    assert eplb.sglang.register() is True
    algorithms = mods["sglang.srt.eplb.eplb_algorithms"]
    assert algorithms.rebalance_experts is eplb.sglang.rebalance_experts


def test_sglang_register_without_sglang(monkeypatch):
    import eplb.sglang
    monkeypatch.setitem(sys.modules, "sglang", None)
    assert eplb.sglang.register() is False
