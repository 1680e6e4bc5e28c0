/* Balanced packing stage 1 (SPEC 6.1): randomized keys, then the visiting
 * order (key descending, equal keys by ascending index). Keys are written into
 * the content buffer, which is free until the greedy stage fills it. Two
 * orderings give the same permutation: a rank sort (one work-item per item,
 * for GPUs) and a heap sort (one work-item per packing, for CPU devices). */
#pragma OPENCL FP_CONTRACT OFF

/* Key of item i (dimension 0) of packing x = row * C + c (dimension 1). */
kernel void eplb_pack_keys(global const float *weight, global float *keys, int n, int C,
                           float noise, ulong seed, int call)
{
    const int i = (int)get_global_id(0);
    const ulong x = get_global_id(1);
    if (i >= n)
        return;
    const ulong row = x / (ulong)C, c = x % (ulong)C;
    const float w = weight[row * (ulong)n + (ulong)i];
    keys[x * (ulong)n + (ulong)i] =
        c == 0 ? w : eplb_sort_key(w, noise, eplb_random_unit(seed, (ulong)call, row, c, (ulong)i));
}

/* Rank sort: item i's position is the number of items visited before it. */
kernel void eplb_pack_rank(global const float *keys, global int *order, int n)
{
    const int i = (int)get_global_id(0);
    const ulong x = get_global_id(1);
    if (i >= n)
        return;
    global const float *key = keys + x * (ulong)n;
    const float mine = key[i];
    int rank = 0;
    for (int j = 0; j < n; j++) {
        const float other = key[j];
        rank += other > mine || (other == mine && j < i);
    }
    order[x * (ulong)n + (ulong)rank] = i;
}

#define EPLB_FLOAT_AT(key, i) ((key)[i])
EPLB_DEFINE_HEAP_SORT(eplb_heap_sort, global, float, EPLB_FLOAT_AT)

/* Heap sort of packing x in place in its order row. */
kernel void eplb_pack_heapsort(global const float *keys, global int *order, int n, ulong packings)
{
    const ulong x = get_global_id(0);
    if (x >= packings)
        return;
    global const float *key = keys + x * (ulong)n;
    global int *heap = order + x * (ulong)n;
    eplb_heap_sort(key, heap, n);
}
