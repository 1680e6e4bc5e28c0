/* plan_fused on OpenCL: one enqueue per plan (kernels/plan_fused.cl), one
 * work-group per layer (or several sharing its slot packings' candidates,
 * split_for) with every intermediate in local memory. Plans that
 * do not fit (or EPLB_TUNE_OPENCL_PATH=stages) are declined: the planner then
 * runs the stage kernels. */
#include <string.h>

#include "opencl_stages.h"

/* Work-items per packing with m packs of k (per replication row: m items,
 * k = 0), `rows` packings side by side in a group of T.
 * Warp teams (NVIDIA): just enough lanes that every member holds its share
 * of the sort, the greedy's packs or the replicated items in registers (more
 * lanes only lengthen each exchange).
 * Local-memory teams: enough that each member scans about sqrt(m/2) packs in
 * the greedy (none cooperate up to 16 packs: a short scan is cheaper than
 * reading the team's results) and about 16 pairs in the swap search, but no
 * more than lets every packing work at once (a second batch doubles the time). */
static size_t team_for(int64_t m, int64_t k, int iterations, int64_t rows,
                       const eplb_opencl_tuning *t, size_t T)
{
    size_t team = 1;
    if (t->fused_team) {
        team = t->fused_team;
    } else if (t->warp_teams) {
        const int64_t n = m * k;
        while (team < 32 && (k > 0 ? (int64_t)team * EPLB_OPENCL_WARP_PPL < m ||
                                         (int64_t)team * EPLB_OPENCL_WARP_SPL < n
                                   : (int64_t)team * 2 * EPLB_OPENCL_WARP_PPL < m))
            team *= 2;
    } else {
        if (m > 16)
            while ((int64_t)(team * team * 2) < m)
                team *= 2;
        if (iterations > 0)
            while ((int64_t)(team * 16) < k * k)
                team *= 2;
        while (team > 1 && (int64_t)team * rows > (int64_t)T)
            team /= 2;
    }
    if (t->warp_teams && team > 32)
        team = 32; /* a warp team lies inside one warp */
    return team < T ? team : T;
}

/* Words (4 bytes) of local memory the kernel lays out for a group of T;
 * keep in step with the layout at the top of eplb_plan_fused. */
static size_t fused_words(const eplb_plan_job *job, size_t T)
{
    const size_t E = (size_t)job->experts, R = (size_t)job->replicas, G = (size_t)job->groups;
    const size_t N = (size_t)job->nodes, C = (size_t)job->group_pack.candidates;
    const size_t RN = (size_t)job->node_slots, sm = (size_t)job->slot_pack.packs;
    size_t area = E; /* replication's w / cnt values */
    if (job->group_pack.per_pack > 1) {
        const size_t P = C, need = 2 * P * G + 3 * P * N + P;
        area = need > area ? need : area;
    }
    if (job->slot_pack.per_pack > 1) {
        const size_t P = N * C, need = 2 * P * RN + 3 * P * sm + P;
        area = need > area ? need : area;
    }
    return 5 * E + 2 * G + 3 * R + N + 4 + 8 * T + area;
}

/* The work-group size for a fused plan, or 0 when the planner must run it as
 * stages. */
static size_t fused_group(eplb_opencl *s, const eplb_plan_job *job)
{
    if (!s->tuning.fused || !job->status)
        return 0;
    /* Local indices are ints: keep rows far from that. */
    if (job->experts > (1 << 24) || job->replicas > (1 << 24) || job->layers > (1L << 31) - 1)
        return 0;
    for (size_t T = s->kernel_group[EPLB_CLK_PLAN_FUSED]; T >= 1; T /= 2)
        if (fused_words(job, T) * 4 <= s->local_mem)
            return T;
    return 0;
}

/* The plan_fused build for this shape (EPLB_TUNE_OPENCL_SHAPED, the
 * default with NVIDIA warp teams, where it pays: docs/backends.md): the
 * sizes below become compile-time constants, so team loops, pack sizes and
 * divisions fold as in the CUDA backend's templates. Built on a shape's
 * third plan (a build takes about a second on NVIDIA: one-off shapes, as in
 * tests and conformance runs, keep the generic kernel), kept for the
 * instance's last few shapes; NULL (the generic kernel) before, when off, or
 * when the build fails. */
static cl_kernel shaped_kernel(eplb_backend *backend, const cl_int *value, const char *const *name,
                               int count, size_t group, size_t local_bytes)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    if (!s->tuning.shaped)
        return NULL;
    char defines[512] = "-DEPLB_SHAPE=1";
    size_t used = strlen(defines);
    for (int i = 0; i < count && used < sizeof defines; i++)
        used += (size_t)snprintf(defines + used, sizeof defines - used, " -DEPLB_SHAPE_%s=%d", name[i],
                                 (int)value[i]);
    if (used >= sizeof defines)
        return NULL;
    int k = 0;
    while (k < EPLB_OPENCL_SHAPED_KERNELS && strcmp(s->shaped[k].defines, defines) != 0)
        k++;
    if (k == EPLB_OPENCL_SHAPED_KERNELS) { /* a new shape takes the oldest entry */
        k = s->shaped_next;
        s->shaped_next = (k + 1) % EPLB_OPENCL_SHAPED_KERNELS;
        if (s->shaped[k].kernel)
            s->cl->clReleaseKernel(s->shaped[k].kernel); /* a release waits for enqueued uses */
        if (s->shaped[k].program)
            s->cl->clReleaseProgram(s->shaped[k].program);
        s->shaped[k].kernel = NULL;
        s->shaped[k].program = NULL;
        s->shaped[k].plans = 0;
        snprintf(s->shaped[k].defines, sizeof s->shaped[k].defines, "%s", defines);
    }
    s->shaped[k].plans++;
    /* Built once, on the third plan (first with "always"); a failed build
     * is not retried. */
    if (s->shaped[k].plans == (s->tuning.shaped == 2 ? 1 : 3)) {
        if (eplb_opencl_build_kernel(backend, defines, "eplb_plan_fused", &s->shaped[k].program,
                                     &s->shaped[k].kernel) != EPLB_OK) {
            backend->error[0] = '\0'; /* the generic kernel runs instead */
            return NULL;
        }
        /* The group and local memory were sized for the generic build. */
        size_t most = 0;
        cl_ulong own = 0, device_local = 0;
        s->cl->clGetKernelWorkGroupInfo(s->shaped[k].kernel, s->handles.device,
                                        CL_KERNEL_WORK_GROUP_SIZE, sizeof most, &most, NULL);
        s->cl->clGetKernelWorkGroupInfo(s->shaped[k].kernel, s->handles.device,
                                        CL_KERNEL_LOCAL_MEM_SIZE, sizeof own, &own, NULL);
        s->cl->clGetDeviceInfo(s->handles.device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof device_local,
                               &device_local, NULL);
        if (most < group || own + local_bytes > device_local) {
            s->cl->clReleaseKernel(s->shaped[k].kernel);
            s->cl->clReleaseProgram(s->shaped[k].program);
            s->shaped[k].kernel = NULL;
            s->shaped[k].program = NULL;
        }
    }
    return s->shaped[k].kernel;
}

/* Work-groups per layer. Two on NVIDIA warp teams (while every group gets
 * a compute unit of its own), where it wins (docs/backends.md): each packs
 * half of the slot packings' candidates and the layer's last group to
 * finish writes the plan. Its warps then share a compute unit with 3 others
 * rather than 7: the sort, greedy and swap loops are bound by issue slots
 * as much as by latency. */
static int split_for(const eplb_opencl *s, const eplb_plan_job *job)
{
    const int C = job->slot_pack.candidates;
    int split = s->tuning.split;
    if (split < 0)
        split = s->tuning.warp_teams && 2 * job->layers <= (int64_t)s->tuning.compute_units ? 2 : 1;
    if (split < 2 || job->slot_pack.per_pack <= 1 || C % split != 0 ||
        job->layers > ((1L << 31) - 1) / split)
        return 1;
    return split;
}

/* The split plan's scratch: each layer's published rows (no set-up), and
 * its arrival counters, zero when made and put back to zero by each
 * layer's last group. */
static eplb_status split_scratch(eplb_backend *backend, const eplb_plan_job *job, int split,
                                 cl_mem *parts, cl_mem *arrivals)
{
    const size_t row_words = (size_t)split * (size_t)(job->nodes + job->replicas);
    eplb_status st = eplb_opencl_scratch(backend, 2, (size_t)job->layers * row_words * sizeof(cl_int), parts);
    return st != EPLB_OK ? st
                         : eplb_opencl_zeroed_scratch(backend, 3, (size_t)job->layers * sizeof(cl_int), arrivals);
}

eplb_status eplb_opencl_plan_fused(eplb_backend *backend, const eplb_plan_job *job)
{
    eplb_opencl *s = eplb_opencl_state(backend);
    const size_t T = fused_group(s, job);
    if (T == 0)
        return EPLB_BACKEND_DECLINED;

    /* Every group reads every weight: cheap while L*L*E stays small, else an
     * earlier kernel checks them and the groups read its status. */
    const cl_ulong check_count =
        job->layers * job->layers * job->experts <= (1L << 26) ? (cl_ulong)(job->layers * job->experts) : 0;
    eplb_status st;
    if (check_count == 0 && (st = eplb_opencl_check_weights(backend, job)) != EPLB_OK)
        return st;

    cl_mem weight = job->weight, status = job->status, phy2log = job->phy2log,
           logcnt = job->logcnt, slot_rank = job->slot_rank, log2phy = job->log2phy;
    const cl_long X = log2phy ? job->width : 0;
    const cl_int has_slot_rank = slot_rank != NULL, has_log2phy = log2phy != NULL;
    const cl_int E = (cl_int)job->experts, R = (cl_int)job->replicas, G = (cl_int)job->groups;
    const cl_int N = (cl_int)job->nodes, S = (cl_int)job->group_size, M = (cl_int)job->node_experts;
    const cl_int RN = (cl_int)job->node_slots, gk = job->group_pack.per_pack;
    const cl_int sm = job->slot_pack.packs, sk = job->slot_pack.per_pack;
    const cl_int C = job->group_pack.candidates, iterations = job->group_pack.iterations;
    const cl_float noise = job->group_pack.noise, tolerance = job->group_pack.tolerance;
    const cl_ulong seed = job->group_pack.seed;
    const cl_int group_team = (cl_int)team_for(job->group_pack.packs, gk, iterations, C, &s->tuning, T);
    const cl_int slot_team = (cl_int)team_for(sm, sk, iterations, (int64_t)N * C, &s->tuning, T);
    const cl_int rep_team = (cl_int)team_for(M, 0, 0, N, &s->tuning, T);
    const cl_int heap_sort = !s->tuning.rank_sort, scan_max = s->tuning.greedy_scan_max;
    const cl_int split = split_for(s, job);
    cl_mem parts = NULL, arrivals = NULL;
    if (split > 1 && (st = split_scratch(backend, job, split, &parts, &arrivals)) != EPLB_OK)
        return st;
    const eplb_opencl_arg local_area = {fused_words(job, T) * 4, NULL};
    /* Registers a warp-team member needs for this shape's greedy packs and
     * replicated items (at most the generic build's, which sized the teams). */
    cl_int ppl = 1, rpl = (cl_int)((M + rep_team - 1) / rep_team);
    if (gk > 1 && (N + group_team - 1) / group_team > ppl)
        ppl = (N + group_team - 1) / group_team;
    if (sk > 1 && (sm + slot_team - 1) / slot_team > ppl)
        ppl = (sm + slot_team - 1) / slot_team;
    const cl_int shape[] = {E, R, G, N, S, M, RN, gk, sm, sk, C, iterations, group_team, slot_team,
                            rep_team, heap_sort, scan_max, ppl, rpl, (cl_int)T, split};
    static const char *const shape_names[] = {"E", "R", "G", "N", "S", "M", "RN", "gk", "sm", "sk",
                                              "C", "iterations", "group_team", "slot_team",
                                              "rep_team", "heap_sort", "scan_max", "ppl", "rpl", "T",
                                              "split"};
    cl_kernel kernel = shaped_kernel(backend, shape, shape_names, (int)(sizeof shape / sizeof shape[0]),
                                     T, local_area.size);
    st = eplb_opencl_run_groups(
        backend, EPLB_CLK_PLAN_FUSED, kernel,
        EPLB_CL_ARGS(EPLB_CL_ARG(weight), EPLB_CL_ARG(status), EPLB_CL_ARG(phy2log),
                     EPLB_CL_ARG(logcnt), EPLB_CL_ARG(slot_rank), EPLB_CL_ARG(log2phy), EPLB_CL_ARG(X),
                     EPLB_CL_ARG(check_count), EPLB_CL_ARG(has_slot_rank), EPLB_CL_ARG(has_log2phy),
                     EPLB_CL_ARG(E), EPLB_CL_ARG(R), EPLB_CL_ARG(G), EPLB_CL_ARG(N), EPLB_CL_ARG(S),
                     EPLB_CL_ARG(M), EPLB_CL_ARG(RN), EPLB_CL_ARG(gk), EPLB_CL_ARG(sm), EPLB_CL_ARG(sk),
                     EPLB_CL_ARG(C), EPLB_CL_ARG(iterations), EPLB_CL_ARG(noise),
                     EPLB_CL_ARG(tolerance), EPLB_CL_ARG(seed), EPLB_CL_ARG(group_team),
                     EPLB_CL_ARG(slot_team), EPLB_CL_ARG(rep_team), EPLB_CL_ARG(heap_sort),
                     EPLB_CL_ARG(scan_max), EPLB_CL_ARG(split), EPLB_CL_ARG(parts),
                     EPLB_CL_ARG(arrivals), local_area),
        (size_t)job->layers * (size_t)split, T);
    if (st == EPLB_OK)
        s->cl->clFlush(s->handles.queue); /* hand the plan to the device without waiting */
    return st;
}
