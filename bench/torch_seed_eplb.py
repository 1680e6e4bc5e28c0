#!/usr/bin/env python3
"""PyTorch baseline: the seed EPLB algorithm as engines run it today.

The seed's vectorized `balanced_packing` (C parallel randomized greedy starts,
then an L2 swap search between the heaviest and lightest pack, then the best
candidate per row) inside DeepSeek's `rebalance_experts` structure
(groups -> nodes, replicate within nodes, replicas -> GPUs; SPEC.md sections
3-6). Every tensor stays on the chosen device. It is a speed baseline, not a
bit-exact reference: the noise comes from torch.rand like the seed's, not from
SPEC section 7, and torch's reductions pick their own order and tie rules.
With C=1 (no noise) it reproduces the `deepseek` and `lpt_l2` golden files
(SPEC section 9); `--check-golden DIR` verifies that.

    python3 bench/torch_seed_eplb.py --device cuda --runs 50 [--json FILE]
    python3 bench/torch_seed_eplb.py --device cpu --runs 3 --check-golden tests/golden
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

# Same cases, same names and same built-in workload as eplb-bench.
CASES = {
    # name: (layers, experts, replicas, groups, nodes, gpus, policy)
    "v3-prefill": (58, 256, 288, 8, 4, 32, "auto"),
    "v3-decode-288": (58, 256, 288, 8, 9, 72, "auto"),
    "v3-decode-320": (58, 256, 320, 8, 8, 64, "global"),
    "scale": (200, 1024, 8192, 16, 16, 1024, "auto"),
}
DEFAULT_CASES = ["v3-prefill", "v3-decode-288", "v3-decode-320"]

MASK64 = (1 << 64) - 1


def workload_next(state):
    """splitmix64, as src/tools/lib/workload.c; returns (value, new state)."""
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31), state


def workload_fill(layers, experts, seed, dead_every=0):
    """The integer-only workload of eplb_workload_fill (src/tools/lib/workload.c)."""
    state = (seed * 0x2545F4914F6CDD1D + 1) & MASK64
    out = []
    for _ in range(layers):
        row = []
        for e in range(experts):
            r, state = workload_next(state)
            u = r >> 44
            tail = (u * u >> 20) * u >> 20
            load = 2000 + (r & 1023) + tail // 4
            if ((r >> 20) & 31) == 0:
                load *= 6
            if dead_every > 0 and e % dead_every == dead_every - 1:
                load = 0
            row.append(float(load))
        out.append(row)
    return torch.tensor(out, dtype=torch.float32)


# ---- the seed algorithm ------------------------------------------------------

def balanced_packing(weight, num_packs, num_candidates=8, num_iters=20, noise=0.2, tol=1e-5):
    """Packs n items per row into num_packs packs of n/num_packs items.

    The seed's formulation (parallel randomized greedy + L2 swap), with the
    candidate count, iteration count, noise and tolerance as parameters.
    Returns pack_index [X, n] and rank_in_pack [X, n].
    """
    num_layers, num_groups = weight.shape
    device = weight.device
    assert num_groups % num_packs == 0
    groups_per_pack = num_groups // num_packs

    if groups_per_pack == 1:
        pack_index = torch.arange(num_groups, dtype=torch.int64,
                                  device=device).expand(num_layers, num_groups)
        return pack_index, torch.zeros_like(pack_index)

    # Expanded problem [X*C, n]; candidate 0 of each row is pure LPT.
    w_expanded = weight.repeat_interleave(num_candidates, dim=0)
    key_noise = torch.rand_like(w_expanded) * (w_expanded * noise)
    key_noise.view(num_layers, num_candidates, num_groups)[:, 0, :] = 0
    sort_keys = w_expanded + key_noise
    # stable: equal keys keep ascending item index (SPEC section 6 step 1).
    _, sorted_indices = sort_keys.sort(dim=-1, descending=True, stable=True)
    sorted_weight = torch.gather(w_expanded, 1, sorted_indices)

    # Greedy: each item to the lightest pack that is not full.
    num_problems = num_layers * num_candidates
    pack_weights = torch.zeros(num_problems, num_packs, device=device, dtype=weight.dtype)
    pack_counts = torch.zeros(num_problems, num_packs, device=device, dtype=torch.int64)
    sorted_pack_index = torch.zeros_like(sorted_indices)
    for i in range(num_groups):
        w_item = sorted_weight[:, i:i + 1]
        is_full = pack_counts >= groups_per_pack
        candidates = pack_weights.clone()
        candidates[is_full] = float("inf")
        chosen_pack = candidates.argmin(dim=1, keepdim=True)
        sorted_pack_index[:, i:i + 1] = chosen_pack
        pack_weights.scatter_add_(1, chosen_pack, w_item)
        pack_counts.scatter_add_(1, chosen_pack, torch.ones_like(chosen_pack))

    # Pack contents in greedy slot order (stable sort keeps visiting order).
    _, pack_content_idx = sorted_pack_index.sort(dim=1, stable=True)
    pack_contents = pack_content_idx.view(num_problems, num_packs, groups_per_pack)

    # L2 swap search between the heaviest and the lightest pack.
    for _ in range(num_iters):
        flat_contents = pack_contents.view(num_problems, -1)
        curr_items = torch.gather(sorted_weight, 1, flat_contents).view(
            num_problems, num_packs, groups_per_pack)
        pack_sums = curr_items.sum(dim=2)
        val_max, idx_max = pack_sums.max(dim=1)
        val_min, idx_min = pack_sums.min(dim=1)
        max_items = torch.gather(curr_items, 1, idx_max.view(-1, 1, 1).expand(
            -1, 1, groups_per_pack)).squeeze(1)
        min_items = torch.gather(curr_items, 1, idx_min.view(-1, 1, 1).expand(
            -1, 1, groups_per_pack)).squeeze(1)
        deltas = max_items.unsqueeze(2) - min_items.unsqueeze(1)
        p_diff = (val_min - val_max).view(-1, 1, 1)
        change = 2 * deltas * (p_diff + deltas)
        best_change, flat_idx = change.view(num_problems, -1).min(dim=1)
        should_swap = best_change < -tol
        if not should_swap.any():
            break
        valid_idx = torch.nonzero(should_swap).squeeze(1)
        sel_flat_idx = flat_idx[valid_idx]
        row = sel_flat_idx // groups_per_pack
        col = sel_flat_idx % groups_per_pack
        p_max = idx_max[valid_idx]
        p_min = idx_min[valid_idx]
        v_max = pack_contents[valid_idx, p_max, row]
        v_min = pack_contents[valid_idx, p_min, col]
        pack_contents[valid_idx, p_max, row] = v_min
        pack_contents[valid_idx, p_min, col] = v_max

    # Best candidate per row: smallest maximum pack load.
    flat_contents = pack_contents.view(num_problems, -1)
    final_items = torch.gather(sorted_weight, 1, flat_contents).view(
        num_problems, num_packs, groups_per_pack)
    final_max_load = final_items.sum(dim=2).max(dim=1).values.view(num_layers, num_candidates)
    best_cand = final_max_load.argmin(dim=1)
    best_indices = torch.arange(num_layers, device=device) * num_candidates + best_cand
    best_contents = pack_contents[best_indices]
    best_sorted_idx = sorted_indices[best_indices]
    original_idx = torch.gather(best_sorted_idx, 1, best_contents.view(num_layers, -1))

    pack_ids = torch.arange(num_packs, device=device).view(1, num_packs, 1).expand(
        num_layers, -1, groups_per_pack).reshape(num_layers, -1)
    rank_ids = torch.arange(groups_per_pack, device=device).view(1, 1, groups_per_pack).expand(
        num_layers, num_packs, -1).reshape(num_layers, -1)
    pack_index = torch.empty_like(pack_ids)
    rank_in_pack = torch.empty_like(rank_ids)
    pack_index.scatter_(1, original_idx, pack_ids)
    rank_in_pack.scatter_(1, original_idx, rank_ids)
    return pack_index, rank_in_pack


# ---- DeepSeek's rebalance_experts structure ----------------------------------

def replicate_experts(weight, num_phy):
    """SPEC section 5: each extra slot to the expert with the largest load per replica."""
    n, num_log = weight.shape
    device = weight.device
    phy2log = torch.arange(num_phy, dtype=torch.int64, device=device).repeat(n, 1)
    rank = torch.zeros(n, num_phy, dtype=torch.int64, device=device)
    logcnt = torch.ones(n, num_log, dtype=torch.int64, device=device)
    arangen = torch.arange(n, dtype=torch.int64, device=device)
    for i in range(num_log, num_phy):
        redundant_indices = (weight / logcnt).max(dim=-1).indices
        phy2log[:, i] = redundant_indices
        rank[:, i] = logcnt[arangen, redundant_indices]
        logcnt[arangen, redundant_indices] += 1
    return phy2log, rank, logcnt


def _inverse(perm):
    inv = torch.empty_like(perm)
    inv.scatter_(1, perm, torch.arange(perm.size(1), dtype=torch.int64,
                                       device=perm.device).expand(perm.shape))
    return inv


def rebalance_experts_hierarchical(weight, num_physical_experts, num_groups, num_nodes,
                                   num_gpus, pack):
    num_layers, num_logical_experts = weight.shape
    assert num_logical_experts % num_groups == 0
    group_size = num_logical_experts // num_groups
    assert num_groups % num_nodes == 0
    groups_per_node = num_groups // num_nodes
    assert num_gpus % num_nodes == 0
    assert num_physical_experts % num_gpus == 0
    phy_experts_per_gpu = num_physical_experts // num_gpus

    # 1. groups to nodes
    tokens_per_group = weight.unflatten(-1, (num_groups, group_size)).sum(-1)
    group_pack_index, group_rank_in_pack = pack(tokens_per_group, num_nodes)
    log2mlog = (((group_pack_index * groups_per_node + group_rank_in_pack) * group_size)
                .unsqueeze(-1) + torch.arange(group_size, dtype=torch.int64,
                                              device=weight.device)).flatten(-2)
    mlog2log = _inverse(log2mlog)

    # 2. replicate within nodes
    tokens_per_mlog = weight.gather(-1, mlog2log).view(-1, num_logical_experts // num_nodes)
    phy2mlog, phyrank, mlogcnt = replicate_experts(tokens_per_mlog,
                                                   num_physical_experts // num_nodes)

    # 3. replicas to GPUs within nodes
    tokens_per_phy = (tokens_per_mlog / mlogcnt).gather(-1, phy2mlog)
    pack_index, rank_in_pack = pack(tokens_per_phy, num_gpus // num_nodes)
    phy2pphy = pack_index * phy_experts_per_gpu + rank_in_pack
    pphy2phy = _inverse(phy2pphy)

    pphy2mlog = phy2mlog.gather(-1, pphy2phy)
    pphy2mlog = (pphy2mlog.view(num_layers, num_nodes, -1) + torch.arange(
        0, num_logical_experts, num_logical_experts // num_nodes,
        device=weight.device).view(1, -1, 1)).flatten(-2)
    pphy2log = mlog2log.gather(-1, pphy2mlog)
    pphyrank = phyrank.gather(-1, pphy2phy).view(num_layers, -1)
    logcnt = mlogcnt.view(num_layers, -1).gather(-1, log2mlog)
    return pphy2log, pphyrank, logcnt


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus,
                      num_candidates=8, num_iters=20, policy="auto"):
    """Returns phy2log [L, R], log2phy [L, E, R-E+1], logcnt [L, E], on weight's device."""
    num_layers, num_logical_experts = weight.shape
    weight = weight.float()  # no .cpu(): the seed runs on the weight's device

    def pack(w, m):
        return balanced_packing(w, m, num_candidates, num_iters)

    if policy == "auto" and num_groups % num_nodes == 0:
        phy2log, phyrank, logcnt = rebalance_experts_hierarchical(
            weight, num_replicas, num_groups, num_nodes, num_gpus, pack)
    else:
        phy2log, phyrank, logcnt = rebalance_experts_hierarchical(
            weight, num_replicas, 1, 1, num_gpus, pack)
    maxlogcnt = num_replicas - num_logical_experts + 1
    log2phy = torch.full((num_layers, num_logical_experts, maxlogcnt), -1,
                         dtype=torch.int64, device=logcnt.device)
    log2phy.view(num_layers, -1).scatter_(
        -1, phy2log * maxlogcnt + phyrank,
        torch.arange(num_replicas, dtype=torch.int64,
                     device=log2phy.device).expand(num_layers, -1))
    return phy2log, log2phy, logcnt


# ---- checks and quality --------------------------------------------------------

def check_plan(weight, phy2log, log2phy, logcnt, replicas):
    """Plan invariants (SPEC section 1); raises AssertionError naming the broken one."""
    layers, experts = weight.shape
    phy2log, log2phy, logcnt = phy2log.cpu(), log2phy.cpu(), logcnt.cpu()
    assert phy2log.shape == (layers, replicas), "phy2log shape"
    assert bool((phy2log >= 0).all() and (phy2log < experts).all()), "phy2log out of range"
    assert bool((logcnt >= 1).all()), "an expert has no replica"
    assert bool((logcnt.sum(-1) == replicas).all()), "a logcnt row does not sum to R"
    counted = torch.zeros(layers, experts, dtype=torch.int64).scatter_add_(
        1, phy2log, torch.ones_like(phy2log))
    assert torch.equal(counted, logcnt), "logcnt disagrees with phy2log"
    # log2phy: replica r of expert e sits at a slot holding e; the rest is -1.
    width = log2phy.shape[-1]
    used = torch.arange(width).view(1, 1, -1) < logcnt.unsqueeze(-1)
    assert bool((log2phy[~used] == -1).all()), "log2phy padding is not -1"
    slots = log2phy.clamp(min=0)
    holder = torch.gather(phy2log, 1, slots.view(layers, -1)).view(layers, experts, width)
    expect = torch.arange(experts).view(1, -1, 1).expand_as(holder)
    assert bool((holder[used] == expect[used]).all()), "log2phy points at a wrong slot"


def plan_quality(weight, phy2log, logcnt, gpus):
    """SPEC section 8: balancedness and the worst layer's mean/max, in float64."""
    w = weight.double().cpu()
    phy2log, logcnt = phy2log.cpu(), logcnt.cpu()
    slot_load = torch.gather(w / logcnt.double(), 1, phy2log)
    gpu_load = slot_load.view(w.shape[0], gpus, -1).sum(-1)
    mean, mx = gpu_load.mean(-1), gpu_load.max(-1).values
    per_layer = torch.where(mx > 0, mean / mx, torch.ones_like(mx))
    return float(mean.sum() / mx.sum()), float(per_layer.min())


# ---- golden check ---------------------------------------------------------------

def read_golden(path):
    with open(path) as f:
        lines = [ln.strip() for ln in f if ln.strip()]
    assert lines[0] == "# eplb golden v1", f"{path}: not a golden v1 file"
    head = lines[1].split()
    shape = {head[i]: int(head[i + 1]) for i in range(0, len(head), 2)}
    opts = lines[2].split()
    opt = {opts[i]: opts[i + 1] for i in range(0, len(opts), 2)}
    layers = shape["layers"]

    def block(name, conv):
        at = lines.index(name)
        return [[conv(v) for v in lines[at + 1 + i].split()] for i in range(layers)]

    return (shape, opt, torch.tensor(block("weight", float), dtype=torch.float32),
            torch.tensor(block("phy2log", int)), torch.tensor(block("logcnt", int)))


# SPEC section 9: PyTorch's vectorized pack sums round differently here.
KNOWN_GOLDEN_DIFFERENCES = {"kimi-k2.lpt_l2.txt": [2]}


def check_golden(directory, device):
    """Runs the C=1 golden cases (deepseek, lpt_l2) and compares plans exactly;
    returns the number of files that differ other than as SPEC section 9 says."""
    names = sorted(n for n in os.listdir(directory)
                   if n.endswith(".deepseek.txt") or n.endswith(".lpt_l2.txt"))
    if not names:
        print(f"no deepseek/lpt_l2 golden files in {directory}", file=sys.stderr)
        return 1
    failures = 0
    for name in names:
        shape, opt, weight, want_phy2log, want_logcnt = read_golden(os.path.join(directory, name))
        phy2log, log2phy, logcnt = rebalance_experts(
            weight.to(device), shape["replicas"], shape["groups"], shape["nodes"], shape["gpus"],
            num_candidates=int(opt["candidates"]), num_iters=int(opt["iters"]))
        check_plan(weight, phy2log, log2phy, logcnt, shape["replicas"])
        bad = [l for l in range(shape["layers"])
               if not (torch.equal(phy2log[l].cpu(), want_phy2log[l])
                       and torch.equal(logcnt[l].cpu(), want_logcnt[l]))]
        if bad and bad == KNOWN_GOLDEN_DIFFERENCES.get(name):
            print(f"diff {name}: layers {bad} (expected, SPEC section 9)")
        elif bad:
            failures += 1
            print(f"DIFF {name}: layers {bad}")
        else:
            print(f"ok   {name}")
    print(f"{len(names) - failures}/{len(names)} golden files reproduced as SPEC section 9 says")
    return failures


# ---- timing ---------------------------------------------------------------------

def time_case(weight, case, args, candidates, iters):
    layers, experts, replicas, groups, nodes, gpus, policy = case
    cuda = weight.device.type == "cuda"

    def once():
        return rebalance_experts(weight, replicas, groups, nodes, gpus,
                                 num_candidates=candidates, num_iters=iters, policy=policy)

    for _ in range(args.warmup):
        once()
    times = []
    for _ in range(args.runs):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = once()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            out = once()
            times.append((time.perf_counter() - t0) * 1e3)
    return times, out


def quantile(sorted_times, q):
    pos = q * (len(sorted_times) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_times) - 1)
    return sorted_times[lo] + (sorted_times[hi] - sorted_times[lo]) * (pos - lo)


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads"


def load_eplb_results(path):
    """Balancedness per (case, C, I) from an `eplb-bench --json` file, first backend seen."""
    with open(path) as f:
        data = json.load(f)
    found = {}
    for r in data.get("results", []):
        found.setdefault((r["case"], r["candidates"], r["iterations"]), r)
    return found


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cuda, cuda:N or cpu (default: cuda when available)")
    p.add_argument("--case", action="append", choices=sorted(CASES),
                   help="repeatable; default: the three DeepSeek-V3 shapes")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--candidates", type=int, default=8)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the C=1, I=0 rows (DeepSeek's original algorithm)")
    p.add_argument("--seed", type=int, default=0, help="torch.manual_seed")
    p.add_argument("--workload-seed", type=int, default=1)
    p.add_argument("--eplb-json", help="eplb-bench --json output: show eplb's balancedness too")
    p.add_argument("--json", help="write machine-readable results here")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--check-golden", metavar="DIR",
                   help="instead of timing: reproduce the C=1 golden files in DIR exactly")
    args = p.parse_args()
    if args.runs < 1 or args.warmup < 0 or args.candidates < 1 or args.iters < 0:
        p.error("--runs >= 1, --warmup >= 0, --candidates >= 1, --iters >= 0")

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("CUDA is not available to this PyTorch")
    torch.manual_seed(args.seed)
    if args.check_golden:
        return 1 if check_golden(args.check_golden, device) else 0

    eplb = load_eplb_results(args.eplb_json) if args.eplb_json else {}
    option_sets = [(args.candidates, args.iters)]
    if not args.no_baseline and (args.candidates, args.iters) != (1, 0):
        option_sets.append((1, 0))

    dev = device_name(device)
    item = "- " if args.markdown else ""
    print(f"{item}torch_seed_eplb: PyTorch {torch.__version__} on {device} ({dev})")
    print(f"{item}method: {'torch.cuda.Event' if device.type == 'cuda' else 'time.perf_counter'} "
          f"around rebalance_experts (weights already on the device, outputs left there), "
          f"{args.warmup} warm-up + {args.runs} timed runs, workload seed {args.workload_seed}")
    cols = ["case", "policy", "C", "I", "median ms", "p10 ms", "p90 ms", "min ms", "runs",
            "balancedness", "worst layer"] + (["eplb balancedness"] if eplb else [])
    if args.markdown:
        print()
        print("| " + " | ".join(cols) + " |")
        print("|---|---|" + "---:|" * (len(cols) - 2))
    else:
        head = (f"{'case':<14} {'policy':<6} {'C':>3} {'I':>3} {'median_ms':>10} {'p10_ms':>9} "
                f"{'p90_ms':>9} {'min_ms':>9} {'runs':>5} {'balanced':>9} {'worst':>7}")
        print(head + (f" {'eplb_bal':>9}" if eplb else ""))
    results = []
    for name in args.case or DEFAULT_CASES:
        case = CASES[name]
        layers, experts, replicas, groups, nodes, gpus, policy = case
        weight_host = workload_fill(layers, experts, args.workload_seed)
        weight = weight_host.to(device)
        for candidates, iters in option_sets:
            times, (phy2log, log2phy, logcnt) = time_case(weight, case, args, candidates, iters)
            check_plan(weight_host, phy2log, log2phy, logcnt, replicas)
            bal, worst = plan_quality(weight_host, phy2log, logcnt, gpus)
            s = sorted(times)
            pol = "hier" if policy == "auto" and groups % nodes == 0 else "global"
            row = {"case": name, "policy": pol, "layers": layers, "experts": experts,
                   "replicas": replicas, "groups": groups, "nodes": nodes, "gpus": gpus,
                   "candidates": candidates, "iterations": iters, "runs": len(s),
                   "median_ms": statistics.median(s), "p10_ms": quantile(s, 0.1),
                   "p90_ms": quantile(s, 0.9), "min_ms": s[0],
                   "mean_ms": statistics.fmean(s), "balancedness": bal,
                   "worst_layer_balancedness": worst}
            ref = eplb.get((name, candidates, iters))
            if eplb:
                row["eplb_balancedness"] = ref["balancedness"] if ref else None
            cells = [name, pol, str(candidates), str(iters)] + [
                f"{row[k]:.3f}" for k in ("median_ms", "p10_ms", "p90_ms", "min_ms")] + [
                str(len(s)), f"{bal:.4f}", f"{worst:.4f}"]
            if eplb:
                cells.append(f"{ref['balancedness']:.4f}" if ref else "-")
            if args.markdown:
                line = "| " + " | ".join(cells) + " |"
            else:
                widths = [14, 6, 3, 3, 10, 9, 9, 9, 5, 9, 7, 9]
                line = " ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(cells, widths)))
            print(line, flush=True)
            results.append(row)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"tool": "torch_seed_eplb", "torch_version": torch.__version__,
                       "device": str(device), "device_name": dev,
                       "method": {"timer": "torch.cuda.Event" if device.type == "cuda"
                                  else "time.perf_counter",
                                  "warmup": args.warmup, "runs": args.runs,
                                  "workload_seed": args.workload_seed, "torch_seed": args.seed},
                       "results": results}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
