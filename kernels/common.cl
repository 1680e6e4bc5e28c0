/* Helpers shared by every eplb kernel: the launch knobs, work-group
 * reductions with the SPEC's tie rule (lowest index among equals) and the
 * pack load of SPEC 6.3. Prepended to every other kernel file, after
 * src/common/spec_math.h. */
#pragma OPENCL FP_CONTRACT OFF

/* Largest work-group of the row kernels (one group per row or packing); the
 * host launches power-of-two groups up to this size and sizes nothing else
 * from it. Set by the host with -DEPLB_WG=...; this default is safe anywhere. */
#ifndef EPLB_WG
#define EPLB_WG 64
#endif
/* The variant of plan_fused's packings and replication rows (set by the
 * host from EPLB_TUNE_OPENCL_FUSED_TEAM): 1, the default here and on GPUs,
 * teams of work-items (fused_team.cl, or fused_warp.cl with EPLB_NV_WARP);
 * 0, a work-item per packing and per replication row running the cpu
 * algorithm (fused_item.cl), which the host asks for on CPU devices: PoCL
 * takes many minutes to compile the teams (its barrier-loop handling) and
 * seconds for this. */
#ifndef EPLB_FUSED_TEAMS
#define EPLB_FUSED_TEAMS 1
#endif
/* Status codes written on the device; the host passes eplb.h's values. */
#ifndef EPLB_ERR_INVALID_WEIGHT
#define EPLB_ERR_INVALID_WEIGHT 3
#endif
#ifndef EPLB_ERR_LOG2PHY_TOO_SMALL
#define EPLB_ERR_LOG2PHY_TOO_SMALL 4
#endif

/* A step cut out of a longer function when plan_fused.cl was split (issue
 * 14): always inlined, so that a compiler sees the body it saw before the
 * split and makes the same inline-or-call choice for the caller (NVIDIA:
 * with the steps inlined by choice, eplb_fused_pack itself became small
 * enough to inline in the shape build, and its plan got slower). */
#define EPLB_STEP inline __attribute__((always_inline))

/* Whether candidate (v, i) beats (best_v, best_i); index < 0 is "none".
 * Comparisons are plain IEEE ones (-0 == +0), as in the cpu backend. */
inline int eplb_beats_min(float v, int i, float best_v, int best_i)
{
    return i >= 0 && (best_i < 0 || v < best_v || (v == best_v && i < best_i));
}
inline int eplb_beats_max(float v, int i, float best_v, int best_i)
{
    return i >= 0 && (best_i < 0 || v > best_v || (v == best_v && i < best_i));
}

/* Work-group reduction of one (value, index) pair per work-item: leaves in
 * v[0], ix[0] the smallest value (largest when want_max), lowest index among
 * equals. Every work-item of the group must call it; the group size must be
 * a power of two. The leading barrier lets callers read the previous result
 * right up to the next call. */
inline void eplb_group_arg_reduce(local float *v, local int *ix, float my_v, int my_i,
                                  int want_max)
{
    const int t = (int)get_local_id(0), T = (int)get_local_size(0);
    barrier(CLK_LOCAL_MEM_FENCE);
    v[t] = my_v;
    ix[t] = my_i;
    for (int s = T >> 1; s > 0; s >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (t < s) {
            const float ov = v[t + s];
            const int oi = ix[t + s];
            if (want_max ? eplb_beats_max(ov, oi, v[t], ix[t]) : eplb_beats_min(ov, oi, v[t], ix[t])) {
                v[t] = ov;
                ix[t] = oi;
            }
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* SPEC 6.3: load of pack p, its items' weights summed in slot order. */
inline float eplb_pack_load(global const float *weight, global const int *content, int p, int k)
{
    float load = 0.0f;
    for (int r = 0; r < k; r++)
        load += weight[content[p * k + r]];
    return load;
}

/* Heap sort of n items into heap[0..n) by key descending, equal keys by
 * ascending index (the heap's top is the item visited last), written once
 * for the stage kernels (global memory) and the fused plan (local memory):
 * SPACE is the address space of the keys and the heap, KEY(key, i) item i's
 * key as a float. Defines NAME and its helpers NAME_visits_before and
 * NAME_sift. */
#define EPLB_DEFINE_HEAP_SORT(NAME, SPACE, key_type, KEY)                          \
    inline int NAME##_visits_before(SPACE const key_type *key, int a, int b)      \
    {                                                                            \
        const float ka = KEY(key, a), kb = KEY(key, b);                           \
        return ka > kb || (ka == kb && a < b);                                   \
    }                                                                            \
    inline void NAME##_sift(SPACE const key_type *key, SPACE int *heap, int at,   \
                            int size)                                            \
    {                                                                            \
        for (;;) {                                                               \
            int child = 2 * at + 1;                                              \
            if (child >= size)                                                   \
                return;                                                          \
            if (child + 1 < size && NAME##_visits_before(key, heap[child], heap[child + 1])) \
                child++;                                                         \
            if (!NAME##_visits_before(key, heap[at], heap[child]))               \
                return;                                                          \
            const int held = heap[at];                                           \
            heap[at] = heap[child];                                              \
            heap[child] = held;                                                  \
            at = child;                                                          \
        }                                                                        \
    }                                                                            \
    inline void NAME(SPACE const key_type *key, SPACE int *heap, int n)           \
    {                                                                            \
        for (int i = 0; i < n; i++)                                              \
            heap[i] = i;                                                         \
        for (int i = n / 2 - 1; i >= 0; i--)                                     \
            NAME##_sift(key, heap, i, n);                                        \
        for (int end = n - 1; end > 0; end--) {                                  \
            const int held = heap[0];                                            \
            heap[0] = heap[end];                                                 \
            heap[end] = held;                                                    \
            NAME##_sift(key, heap, 0, end);                                      \
        }                                                                        \
    }
