/* The OpenCL backend's environment knobs: one table, read and checked here
 * and nowhere else, once per backend instance when it is created, and the
 * launch settings they and the device give. A value that a knob does not
 * take fails the creation with a message naming the knob, rather than being
 * ignored. docs/opencl.md lists the same table. */
#include "opencl_knobs.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/text_escape.h"

/* A word a knob takes and the number it stands for. */
typedef struct knob_word {
    const char *word;
    long value;
} knob_word;

typedef struct knob {
    const char *name;
    const char *fallback;  /* the default, in words */
    const char *range;     /* the values it takes, in words (the error message quotes it) */
    const char *meaning;
    size_t field;          /* offset of its long in eplb_opencl_knobs; text knobs: of a pointer */
    int text;              /* 1: any non-empty text (a device or platform name) */
    long lo, hi;           /* it takes the whole numbers lo to hi (none where hi < lo) */
    knob_word words[3];    /* and these words */
} knob;

#define FIELD(member) offsetof(eplb_opencl_knobs, member)
/* lo and hi of a knob that takes words only. */
#define NO_NUMBER 0, -1

static const knob knobs[] = {
    /* User knobs: which device plans. */
    {"EPLB_OPENCL_PLATFORM", "every platform", "an index or a name substring",
     "limits the device choice to the platforms it names", FIELD(platform), 1, NO_NUMBER, {{0}}},
    {"EPLB_OPENCL_DEVICE", "the first usable GPU or accelerator, else the first usable device",
     "an index or a name substring", "picks the device", FIELD(device), 1, NO_NUMBER, {{0}}},
    /* Tuning and tests only: the same plans at another speed. */
    {"EPLB_TUNE_OPENCL_WG", "64 on GPUs, 1 on CPU devices", "1 to 1024",
     "sizes the largest work-group of the stage kernels' rows", FIELD(group_size), 0, 1, 1024,
     {{0}}},
    {"EPLB_TUNE_OPENCL_ITEMS_PER_THREAD", "4 on GPUs, unbounded on CPU devices", "1 to 1073741824",
     "sets the work per work-item when sizing a stage kernel's row group", FIELD(items_per_item), 0,
     1, 1L << 30, {{0}}},
    {"EPLB_TUNE_OPENCL_SORT", "rank on GPUs, heap on CPU devices", "rank or heap",
     "chooses how a packing's visiting order is sorted", FIELD(rank_sort), 0, NO_NUMBER,
     {{"rank", 1}, {"heap", 0}}},
    {"EPLB_TUNE_OPENCL_PATH", "fused", "fused or stages",
     "runs every plan with the stage kernels when set to stages, for tests", FIELD(stages), 0, NO_NUMBER,
     {{"fused", 0}, {"stages", 1}}},
    {"EPLB_TUNE_OPENCL_FUSED_WG", "256 on GPUs, 1 on CPU devices", "1 to 1024",
     "sizes the fused plan's work-group", FIELD(fused_group), 0, 1, 1024, {{0}}},
    {"EPLB_TUNE_OPENCL_FUSED_TEAM", "auto on GPUs, 0 on CPU devices", "0, auto or 1 to 1024",
     "chooses the fused plan's work-items per packing, 0 for one",
     FIELD(fused_team), 0, 0, 1024, {{"auto", EPLB_OPENCL_TEAM_AUTO}}},
    {"EPLB_TUNE_OPENCL_GREEDY_SCAN_MAX", "1073741824 on GPUs, 16 on CPU devices",
     "1 to 1073741824", "caps the packs a one-work-item greedy scans before it uses blocks",
     FIELD(greedy_scan_max), 0, 1, 1L << 30, {{0}}},
    {"EPLB_TUNE_OPENCL_WARP", "1", "0 or 1",
     "lets teams be NVIDIA warps where the device has them", FIELD(warp),
     0, 0, 1, {{0}}},
    {"EPLB_TUNE_OPENCL_SHAPED", "1 with warp teams, else 0", "0, 1 or always",
     "builds the fused plan for each plan shape, from its third plan or, with always, its first",
     FIELD(shaped), 0, 0, 1, {{"always", 2}}},
    {"EPLB_TUNE_OPENCL_SPLIT", "2 with warp teams while 2 x layers fit the compute units, else 1",
     "0 to 1024", "sets the work-groups per layer that share the slot packings",
     FIELD(split), 0, 0, 1024, {{0}}},
    {"EPLB_TUNE_OPENCL_LOCAL_MEM", "the device's", "1 to 1073741824",
     "caps the fused plan's local memory, in bytes", FIELD(local_mem),
     0, 1, 1L << 30, {{0}}},
    {"EPLB_TUNE_OPENCL_PROFILE", "0", "0 or 1",
     "times every kernel (synchronously) and prints the totals when the context is freed",
     FIELD(profile), 0, 0, 1, {{0}}},
    {"EPLB_TUNE_OPENCL_STAGING", "sync", "sync or async",
     "offers the planner asynchronous host-staging copies when set to async, for tests",
     FIELD(staging), 0, NO_NUMBER, {{"sync", 0}, {"async", 1}}},
};

#define KNOB_COUNT (sizeof knobs / sizeof knobs[0])

/* Knobs that were renamed (the tuning ones moved under EPLB_TUNE_OPENCL_):
 * set under the old name they are refused, naming the new one, so that a
 * test or script that still sets them does not silently time the default. */
static const char *const old_prefix = "EPLB_OPENCL_", *const new_prefix = "EPLB_TUNE_OPENCL_";

/* Reads knob k into its field of *out; 0, or -1 with a message. */
static int read_knob(const knob *k, eplb_opencl_knobs *out, char *error, size_t error_len)
{
    char *field = (char *)out + k->field;
    const char *value = getenv(k->name);
    if (k->text) {
        *(const char **)field = value && *value ? value : NULL;
        return 0;
    }
    long *number = (long *)field;
    *number = -1;
    if (!value || !*value)
        return 0;
    for (int w = 0; w < 3 && k->words[w].word; w++)
        if (strcmp(value, k->words[w].word) == 0) {
            *number = k->words[w].value;
            return 0;
        }
    char *end = NULL;
    const long parsed = k->hi >= k->lo && value[0] >= '0' && value[0] <= '9' ? strtol(value, &end, 10) : 0;
    if (end && *end == '\0' && parsed >= k->lo && parsed <= k->hi) {
        *number = parsed;
        return 0;
    }
    char shown[128];
    snprintf(error, error_len,
             "%s='%s' is not a value it takes (it %s): use %s, or leave it unset (default: %s)",
             k->name, eplb_text_escape(shown, sizeof shown, value), k->meaning, k->range,
             k->fallback);
    return -1;
}

eplb_status eplb_opencl_knobs_read(eplb_opencl_knobs *out, char *error, size_t error_len)
{
    for (size_t i = 0; i < KNOB_COUNT; i++) {
        const char *name = knobs[i].name;
        if (strncmp(name, new_prefix, strlen(new_prefix)) != 0)
            continue;
        char old_name[64];
        snprintf(old_name, sizeof old_name, "%s%s", old_prefix, name + strlen(new_prefix));
        const char *value = getenv(old_name);
        if (value && *value) {
            snprintf(error, error_len, "%s is now called %s (it %s): set that instead", old_name, name,
                     knobs[i].meaning);
            return EPLB_ERR_INVALID_ARGUMENT;
        }
    }
    for (size_t i = 0; i < KNOB_COUNT; i++)
        if (read_knob(&knobs[i], out, error, error_len) != 0)
            return EPLB_ERR_INVALID_ARGUMENT;
    return EPLB_OK;
}

/* A knob's value where set, else the fallback. */
static long or_default(long knob_value, long fallback)
{
    return knob_value >= 0 ? knob_value : fallback;
}

/* Defaults by device type, then the knobs, then device limits. GPUs:
 * work-groups cooperate on each row; CPU devices: one work-item per row (no
 * barriers), which is what a CPU core does best. */
void eplb_opencl_choose_tuning(const eplb_opencl_api *cl, const eplb_opencl_device *d,
                               const eplb_opencl_knobs *k, eplb_opencl_tuning *t)
{
    const int gpu = eplb_opencl_is_accelerator_type(d->type);
    const size_t max_group = eplb_opencl_max_group(cl, d->device);
    t->group_size = (size_t)or_default(k->group_size, gpu ? 64 : 1);
    t->group_size = eplb_opencl_floor_pow2(t->group_size < max_group ? t->group_size : max_group);
    t->items_per_item = (size_t)or_default(k->items_per_item, gpu ? 4 : 1 << 20);
    t->element_size = gpu ? 128 : 16;
    if (t->element_size > max_group)
        t->element_size = eplb_opencl_floor_pow2(max_group);
    t->rank_sort = (int)or_default(k->rank_sort, gpu);
    t->fused = k->stages != 1;
    /* GPUs: 256 work-items share a layer's sort and packings; CPU devices:
     * one work-item per layer runs the cpu algorithm. */
    t->fused_group = (size_t)or_default(k->fused_group, gpu ? 256 : 1);
    t->fused_group = eplb_opencl_floor_pow2(t->fused_group < max_group ? t->fused_group : max_group);
    /* Teams by pack count on GPUs, where they beat a work-item per packing
     * on the global shapes (NVIDIA, docs/backends.md); a work-item per
     * packing on CPU devices, where PoCL takes many minutes to compile the
     * teams. */
    const long team = or_default(k->fused_team, gpu ? EPLB_OPENCL_TEAM_AUTO : 0);
    t->fused_team = team > 0 ? eplb_opencl_floor_pow2((size_t)team) : 0;
    t->fused_teams = team != 0;
    /* The one-work-item greedy scans the packs on GPUs (a chain of
     * dependent local reads is slower there) and uses blocks of 8 beyond
     * 16 packs on CPU devices, like the cpu backend. */
    t->greedy_scan_max = (int)or_default(k->greedy_scan_max, gpu ? 1 << 30 : 16);
    t->warp_teams = t->fused_teams && k->warp != 0 && eplb_opencl_nvidia_warp_of_32(cl, d->device);
    t->nv_sm = t->warp_teams ? eplb_opencl_nvidia_sm(cl, d->device) : 0;
    /* A build per shape and two groups per layer pay with warp teams
     * (docs/backends.md), the defaults there. */
    t->shaped = (int)or_default(k->shaped, t->warp_teams);
    t->split = (int)k->split;
    t->compute_units = eplb_opencl_compute_units(cl, d->device);
    t->local_mem_cap = (size_t)or_default(k->local_mem, 0);
    t->profile = k->profile == 1;
    t->async_staging = k->staging == 1;
}
