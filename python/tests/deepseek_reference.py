"""DeepSeek's EPLB algorithm (eplb.py's rebalance_experts) written out in torch
for the tests, with every sort stable so that ties go to the lower index, as
in SPEC.md; DeepSeek's own sorts are unstable, which is the only difference.

Written from the algorithm's description (SPEC.md sections 3-5), not copied."""
import torch


def pack_greedily(weight, num_packs):
    """Each row's items, heaviest first, each to the lightest pack that still has
    room (lowest pack on ties); packs hold items // num_packs items each.
    Returns (pack of each item, rank of the item in its pack)."""
    rows, items = weight.shape
    per_pack = items // num_packs
    pack = torch.empty((rows, items), dtype=torch.int64)
    rank = torch.empty((rows, items), dtype=torch.int64)
    if per_pack == 1:
        pack[:] = torch.arange(items)
        rank[:] = 0
        return pack, rank
    order = torch.sort(weight, dim=-1, descending=True, stable=True).indices
    for r in range(rows):
        load = torch.zeros(num_packs, dtype=torch.float32)
        count = [0] * num_packs
        for item in order[r].tolist():
            open_packs = [p for p in range(num_packs) if count[p] < per_pack]
            best = min(open_packs, key=lambda p: (load[p].item(), p))
            pack[r, item] = best
            rank[r, item] = count[best]
            load[best] += weight[r, item]
            count[best] += 1
    return pack, rank


def replicate(weight, num_slots):
    """Adds replicas one at a time to the expert of the largest load per replica
    (lowest expert on ties). Returns (expert of each slot, replica rank, count)."""
    rows, experts = weight.shape
    slot_expert = torch.arange(num_slots, dtype=torch.int64).repeat(rows, 1)
    slot_rank = torch.zeros((rows, num_slots), dtype=torch.int64)
    count = torch.ones((rows, experts), dtype=torch.int64)
    every_row = torch.arange(rows)
    for slot in range(experts, num_slots):
        per_replica = weight / count
        top = per_replica.max(dim=-1, keepdim=True).values
        # The first expert reaching the maximum.
        pick = (per_replica == top).to(torch.int64).argmax(dim=-1)
        slot_expert[:, slot] = pick
        slot_rank[:, slot] = count[every_row, pick]
        count[every_row, pick] += 1
    return slot_expert, slot_rank, count


def inverse(perm):
    inv = torch.empty_like(perm)
    inv.scatter_(1, perm, torch.arange(perm.size(1), dtype=torch.int64).expand(perm.shape))
    return inv


def hierarchical(weight, num_slots, num_groups, num_nodes, num_gpus):
    layers, experts = weight.shape
    group_size = experts // num_groups
    groups_per_node = num_groups // num_nodes
    slots_per_gpu = num_slots // num_gpus
    # Groups to nodes.
    group_load = weight.unflatten(-1, (num_groups, group_size)).sum(-1)
    group_pack, group_rank = pack_greedily(group_load, num_nodes)
    log2mlog = (((group_pack * groups_per_node + group_rank) * group_size).unsqueeze(-1)
                + torch.arange(group_size)).flatten(-2)
    mlog2log = inverse(log2mlog)
    # Replicas within each node.
    node_load = weight.gather(-1, mlog2log).view(-1, experts // num_nodes)
    phy2mlog, phy_rank, mlog_count = replicate(node_load, num_slots // num_nodes)
    # Replicas to GPUs within each node.
    replica_load = (node_load / mlog_count).gather(-1, phy2mlog)
    gpu, gpu_rank = pack_greedily(replica_load, num_gpus // num_nodes)
    pphy2phy = inverse(gpu * slots_per_gpu + gpu_rank)
    pphy2mlog = phy2mlog.gather(-1, pphy2phy)
    pphy2mlog = (pphy2mlog.view(layers, num_nodes, -1)
                 + torch.arange(0, experts, experts // num_nodes).view(1, -1, 1)).flatten(-2)
    phy2log = mlog2log.gather(-1, pphy2mlog)
    rank = phy_rank.gather(-1, pphy2phy).view(layers, -1)
    count = mlog_count.view(layers, -1).gather(-1, log2mlog)
    return phy2log, rank, count


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    """(phy2log, log2phy [layers, experts, max(logcnt)], logcnt), int64, on the CPU."""
    layers, experts = weight.shape
    weight = weight.float().cpu()
    if num_groups % num_nodes == 0:
        phy2log, rank, count = hierarchical(weight, num_replicas, num_groups, num_nodes,
                                            num_gpus)
    else:
        phy2log, rank, count = hierarchical(weight, num_replicas, 1, 1, num_gpus)
    width = int(count.max())
    log2phy = torch.full((layers, experts, width), -1, dtype=torch.int64)
    log2phy.view(layers, -1).scatter_(
        -1, phy2log * width + rank, torch.arange(num_replicas).expand(layers, -1))
    return phy2log, log2phy, count
