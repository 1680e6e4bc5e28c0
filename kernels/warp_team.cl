/* Warp teams on NVIDIA devices (-DEPLB_NV_WARP=1, set by the host only for
 * a device that reports a warp of 32 through cl_nv_device_attribute_query):
 * a team of at most 32 consecutive work-items lies inside one warp, so its
 * exchanges are warp shuffles (inline PTX: NVIDIA's OpenCL offers no
 * cl_khr_subgroups) instead of local memory and a work-group barrier.
 * Every lane of the warp executes every shuffle (loops around them have
 * uniform trip counts), so the member mask is the whole warp, or the group
 * when it is smaller than a warp. */
#pragma OPENCL FP_CONTRACT OFF

#ifndef EPLB_NV_WARP
#define EPLB_NV_WARP 0
#endif
/* The device's compute capability (major * 10 + minor), 0 when unknown. */
#ifndef EPLB_NV_SM
#define EPLB_NV_SM 0
#endif
/* Packs a warp-team member keeps in registers in the greedy (the host sizes
 * teams by it; a build for one plan shape sets exactly what that shape needs,
 * and EPLB_WARP_RPL, the replication's items a member, likewise). */
#if defined(EPLB_SHAPE_ppl)
#define EPLB_WARP_PPL EPLB_SHAPE_ppl
#define EPLB_WARP_RPL EPLB_SHAPE_rpl
#else
#define EPLB_WARP_PPL 4 /* EPLB_OPENCL_WARP_PPL of opencl_runtime.h */
#endif

/* The work-group size: a constant in a build for one plan shape, so that
 * what depends on it (the warp's member mask below) folds. */
#ifdef EPLB_SHAPE_T
#define EPLB_LOCAL_SIZE() ((uint)EPLB_SHAPE_T)
#else
#define EPLB_LOCAL_SIZE() ((uint)get_local_size(0))
#endif

#if EPLB_NV_WARP
/* The lanes of this work-item's warp that take part in warp operations. */
inline uint eplb_warp_members(void)
{
    const uint T = EPLB_LOCAL_SIZE();
    return T >= 32u ? 0xFFFFFFFFu : (1u << T) - 1u;
}

inline uint eplb_warp_shfl_xor(uint v, uint lane_mask, uint members)
{
    uint r;
    asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, %3;"
                 : "=r"(r)
                 : "r"(v), "r"(lane_mask), "r"(members));
    return r;
}

/* Execution and local-memory order among the warp's lanes (__syncwarp). */
inline void eplb_warp_sync(uint members)
{
    asm volatile("bar.warp.sync %0;" : : "r"(members) : "memory");
}

/* Pins a value computed before this point there: the compiler would
 * otherwise sink a member's speculative work (what it does if it wins)
 * below the exchange it is meant to overlap, onto the critical path.
 * Volatile asm statements keep their order, so anything pinned before an
 * exchange is computed before it. */
inline uint eplb_warp_keep(uint v)
{
    asm volatile("" : "+r"(v));
    return v;
}

inline float eplb_warp_keep_float(float v)
{
    asm volatile("" : "+f"(v));
    return v;
}

/* Whether any lane of the warp votes yes (the same answer in every lane). */
inline int eplb_warp_any(int vote, uint members)
{
    uint r;
    asm volatile("{\n\t.reg .pred p, q;\n\tsetp.ne.u32 p, %1, 0;\n\t"
                 "vote.sync.any.pred q, p, %2;\n\tselp.u32 %0, 1, 0, q;\n\t}"
                 : "=r"(r)
                 : "r"(vote), "r"(members));
    return (int)r;
}

#if EPLB_NV_SM >= 80
/* The smallest v of the whole warp, in every lane (compute capability 8.0
 * and later: one instruction instead of five shuffles). */
inline uint eplb_warp_redux_min(uint v)
{
    uint least;
    asm volatile("redux.sync.min.u32 %0, %1, 0xffffffff;" : "=r"(least) : "r"(v));
    return least;
}
#endif

/* The smallest key of a team of `team` (a power of two <= 32) consecutive
 * lanes, in every member. */
inline uint eplb_warp_team_min(uint key, uint team, uint members)
{
#if EPLB_NV_SM >= 80
    if (team == 32u && members == 0xFFFFFFFFu)
        return eplb_warp_redux_min(key);
#endif
#pragma unroll
    for (uint o = 16; o > 0; o >>= 1) /* unrolled: the levels need no loop counter */
        if (o < team)
            key = min(key, eplb_warp_shfl_xor(key, o, members));
    return key;
}

/* Whether this lane is the lowest of its team whose vote is set: one ballot,
 * no second reduction. team_lanes: the bits of this lane's team. */
inline int eplb_warp_lowest_vote(int vote, uint team_lanes, uint members)
{
    uint votes;
    asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.u32 p, %1, 0;\n\t"
                 "vote.sync.ballot.b32 %0, p, %2;\n\t}"
                 : "=r"(votes)
                 : "r"(vote), "r"(members));
    const uint me = 1u << (get_local_id(0) & 31u);
    return vote && (votes & team_lanes & (me | (me - 1u))) == me;
}

/* The bits of the warp lanes of this work-item's team of `team`. */
inline uint eplb_warp_team_lanes(uint team)
{
    const uint lane = (uint)get_local_id(0) & 31u;
    return team >= 32u ? 0xFFFFFFFFu : ((1u << team) - 1u) << (lane & ~(team - 1u));
}

/* Takes (other_key, other_index) where it is lower: the smaller key, the
 * lower index among equal keys. */
inline void eplb_warp_take_lower(uint *key, uint *index, uint other_key, uint other_index)
{
    if (other_key < *key || (other_key == *key && other_index < *index)) {
        *key = other_key;
        *index = other_index;
    }
}

/* One level of a team's argmin: the (key, index) of the lane o lanes away,
 * taken where it is lower. */
inline void eplb_warp_argmin_level(uint *key, uint *index, uint o, uint members)
{
    const uint other_key = eplb_warp_shfl_xor(*key, o, members);
    const uint other_index = eplb_warp_shfl_xor(*index, o, members);
    eplb_warp_take_lower(key, index, other_key, other_index);
}

/* The team member's (key, index) with the smallest key, lowest index among
 * equal keys, in every member of a team of `team` (a power of two <= 32)
 * consecutive lanes. An index of 0xFFFFFFFF with key 0xFFFFFFFF is "none". */
inline uint2 eplb_warp_team_argmin(uint key, uint index, uint team, uint members)
{
#if EPLB_NV_SM >= 80
    if (team == 32u && members == 0xFFFFFFFFu) { /* two warp reductions (redux.sync) */
        const uint best = eplb_warp_redux_min(key);
        return (uint2)(best, eplb_warp_redux_min(key == best ? index : 0xFFFFFFFFu));
    }
#endif
#pragma unroll
    for (uint o = 16; o > 0; o >>= 1)
        if (o < team)
            eplb_warp_argmin_level(&key, &index, o, members);
    return (uint2)(key, index);
}

/* Two independent argmins at once (their exchanges overlap): the indices
 * of the smallest key1 and of the smallest key2. */
inline uint2 eplb_warp_team_argmin2(uint key1, uint index1, uint key2, uint index2, uint team,
                                    uint members)
{
#if EPLB_NV_SM >= 80
    if (team == 32u && members == 0xFFFFFFFFu) {
        const uint best1 = eplb_warp_redux_min(key1), best2 = eplb_warp_redux_min(key2);
        const uint c1 = key1 == best1 ? index1 : 0xFFFFFFFFu, c2 = key2 == best2 ? index2 : 0xFFFFFFFFu;
        const uint low1 = eplb_warp_redux_min(c1);
        return (uint2)(low1, eplb_warp_redux_min(c2));
    }
#endif
#pragma unroll
    for (uint o = 16; o > 0; o >>= 1)
        if (o < team) { /* four shuffles in flight, then the two comparisons */
            const uint ok1 = eplb_warp_shfl_xor(key1, o, members);
            const uint oi1 = eplb_warp_shfl_xor(index1, o, members);
            const uint ok2 = eplb_warp_shfl_xor(key2, o, members);
            const uint oi2 = eplb_warp_shfl_xor(index2, o, members);
            eplb_warp_take_lower(&key1, &index1, ok1, oi1);
            eplb_warp_take_lower(&key2, &index2, ok2, oi2);
        }
    return (uint2)(index1, index2);
}
#endif

/* Unsigned keys whose order is the float order with -0 == +0 (the cpu's
 * plain comparisons): smallest float = smallest min-key, largest float =
 * smallest max-key. NaN is the caller's to exclude. */
inline uint eplb_float_min_key(float v)
{
    if (v == 0.0f)
        return 0x80000000u;
    const uint bits = as_uint(v);
    return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}

inline uint eplb_float_max_key(float v)
{
    return ~eplb_float_min_key(v);
}

/* The float of a min-key (zero as +0). */
inline float eplb_float_from_min_key(uint key)
{
    return as_float((key & 0x80000000u) ? key & 0x7FFFFFFFu : ~key);
}
