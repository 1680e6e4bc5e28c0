/* Shapes and options: the defaults, and the checks that every plan passes
 * before any work (SPEC section 2). These depend on nothing else in the
 * library, so the public API and the planner can both call them. */
#include "validation.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

void eplb_options_init(eplb_options *options)
{
    if (!options)
        return;
    memset(options, 0, sizeof *options);
    options->struct_size = sizeof *options;
    options->candidates = 8;
    options->iterations = 20;
    options->noise = 0.2f;
    options->tolerance = 1e-5f;
    options->seed = 0;
    options->policy = EPLB_POLICY_AUTO;
    options->refine = 0;
    options->distinct = 0;
    options->slack = 0.0f;
}

/* The size of eplb_options in version 0.1.0: every field up to refine. */
#define OPTIONS_SIZE_V0_1 offsetof(eplb_options, distinct)

eplb_status eplb_options_read(const eplb_options *in, eplb_options *out, const char **message)
{
    if (in->struct_size != sizeof(eplb_options) && in->struct_size != OPTIONS_SIZE_V0_1) {
        if (message)
            *message = "options not initialised with eplb_options_init";
        return EPLB_ERR_INVALID_ARGUMENT;
    }
    /* Only the caller's struct_size bytes are read: an older caller's struct
     * ends there, and the fields it lacks keep their defaults. */
    eplb_options_init(out);
    memcpy(out, in, in->struct_size);
    out->struct_size = sizeof *out;
    return eplb_options_check(out, message);
}

eplb_status eplb_options_check(const eplb_options *o, const char **message)
{
    const char *why = NULL;
    if (o->struct_size != sizeof(eplb_options))
        why = "options not initialised with eplb_options_init";
    else if (o->candidates < 1 || o->candidates > EPLB_MAX_CANDIDATES)
        why = "candidates must be in 1..1024";
    else if (o->iterations < 0 || o->iterations > EPLB_MAX_ITERATIONS)
        why = "iterations must be in 0..100000";
    else if (!isfinite(o->noise) || o->noise < 0.0f)
        why = "noise must be finite and >= 0";
    else if (!isfinite(o->tolerance) || o->tolerance < 0.0f)
        why = "tolerance must be finite and >= 0";
    else if (o->policy != EPLB_POLICY_AUTO && o->policy != EPLB_POLICY_HIERARCHICAL &&
             o->policy != EPLB_POLICY_GLOBAL)
        why = "policy must be auto, hierarchical or global";
    else if (o->refine < 0 || o->refine > EPLB_MAX_REFINE)
        why = "refine (the most trades per row) must be in 0..100000";
    else if (o->distinct != 0 && o->distinct != 1)
        why = "distinct must be 0 or 1";
    else if (!isfinite(o->slack) || o->slack < 0.0f)
        why = "slack must be finite and >= 0";
    if (message)
        *message = why;
    return why ? EPLB_ERR_INVALID_ARGUMENT : EPLB_OK;
}

/* The text of the last refusal for a limit: eplb_shape_check hands out a
 * pointer to it, so it must outlive the call (one per thread). */
static _Thread_local char shape_limit_message[160];

/* Names the first of the shape's limits (include/eplb/eplb.h) that it goes
 * beyond, or returns NULL when it is within all of them. */
static const char *shape_limit_broken(const eplb_shape *s)
{
    const struct {
        const char *what, *limit_name;
        int64_t value, limit;
    } limits[] = {
        {"layers", "EPLB_MAX_LAYERS", s->layers, EPLB_MAX_LAYERS},
        {"experts", "EPLB_MAX_EXPERTS", s->experts, EPLB_MAX_EXPERTS},
        {"replicas", "EPLB_MAX_REPLICAS", s->replicas, EPLB_MAX_REPLICAS},
        {"groups", "EPLB_MAX_GROUPS", s->groups, EPLB_MAX_GROUPS},
        {"nodes", "EPLB_MAX_NODES", s->nodes, EPLB_MAX_NODES},
        {"gpus", "EPLB_MAX_GPUS", s->gpus, EPLB_MAX_GPUS},
    };
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
        if (limits[i].value > limits[i].limit) {
            snprintf(shape_limit_message, sizeof shape_limit_message,
                     "%s (%lld) exceeds the limit %s = %lld", limits[i].what,
                     (long long)limits[i].value, limits[i].limit_name, (long long)limits[i].limit);
            return shape_limit_message;
        }
    /* Both factors are within their limits here, so the product cannot
     * overflow, unless replicas is negative (refused by the caller's next
     * test, replicas >= experts >= 1): no product is formed then. */
    if (s->replicas > 0 && s->layers * s->replicas > EPLB_MAX_SLOTS) {
        snprintf(shape_limit_message, sizeof shape_limit_message,
                 "layers * replicas (%lld slots) exceeds the limit EPLB_MAX_SLOTS = %lld",
                 (long long)(s->layers * s->replicas), (long long)EPLB_MAX_SLOTS);
        return shape_limit_message;
    }
    return NULL;
}

eplb_status eplb_shape_check(const eplb_shape *s, const char **message)
{
    const char *why = NULL;
    if (!s) why = "shape is NULL";
    else if (s->layers < 1) why = "layers must be >= 1";
    else if (s->experts < 1) why = "experts must be >= 1";
    else if (s->groups < 1) why = "groups must be >= 1";
    else if (s->nodes < 1) why = "nodes must be >= 1";
    else if (s->gpus < 1) why = "gpus must be >= 1";
    else if (!(why = shape_limit_broken(s))) {
        if (s->replicas < s->experts) why = "replicas must be >= experts";
        else if (s->replicas % s->gpus != 0) why = "replicas must be divisible by gpus";
        else if (s->experts % s->groups != 0) why = "experts must be divisible by groups";
    }
    if (message)
        *message = why;
    return why ? EPLB_ERR_INVALID_SHAPE : EPLB_OK;
}

int64_t eplb_log2phy_width_max(const eplb_shape *shape)
{
    if (eplb_shape_check(shape, NULL) != EPLB_OK)
        return 0;
    return shape->replicas - shape->experts + 1;
}
