/* Option parsing shared by every eplb subcommand: strict numbers, long
 * options spelled out in full, backend names, and the clock they time with. */
#define _GNU_SOURCE
#include "cli_options.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eplb/eplb.h"
#include "text_escape.h"

int eplb_cli_parse_i64(const char *cmd, const char *opt, const char *text, int64_t lo, int64_t hi,
                       int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (!*text || *end || errno) {
        char shown[512];
        fprintf(stderr, "eplb %s: bad value '%s' for %s: not an integer\n", cmd,
                eplb_text_escape(shown, sizeof shown, text), opt);
        return 0;
    }
    if (v < lo || v > hi) {
        char shown[512];
        fprintf(stderr, "eplb %s: bad value '%s' for %s: must be in %lld..%lld\n", cmd,
                eplb_text_escape(shown, sizeof shown, text), opt, (long long)lo, (long long)hi);
        return 0;
    }
    *out = v;
    return 1;
}

int eplb_cli_parse_u64(const char *cmd, const char *opt, const char *text, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    int hex = text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
    unsigned long long v = strtoull(text, &end, hex ? 16 : 10); /* never octal */
    if (!*text || *end || errno || text[0] == '-') {
        char shown[512];
        fprintf(stderr, "eplb %s: bad value '%s' for %s: not an unsigned 64-bit integer\n", cmd,
                eplb_text_escape(shown, sizeof shown, text), opt);
        return 0;
    }
    *out = v;
    return 1;
}

int eplb_cli_parse_float(const char *cmd, const char *opt, const char *text, float *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (!*text || *end || errno || !isfinite(v) || v < 0.0 || isinf((float)v)) {
        char shown[512];
        fprintf(stderr, "eplb %s: bad value '%s' for %s: must be a finite number >= 0\n", cmd,
                eplb_text_escape(shown, sizeof shown, text), opt);
        return 0;
    }
    *out = (float)v;
    return 1;
}

/* The long option whose name is text up to its '=' exactly, or NULL. */
static const struct option *exact_long_option(const char *text, const struct option *longopts)
{
    size_t n = strcspn(text, "=");
    for (const struct option *o = longopts; o->name; o++)
        if (strlen(o->name) == n && strncmp(o->name, text, n) == 0)
            return o;
    return NULL;
}

/* Says what is wrong with "--text", a long option that names no option in
 * full: an abbreviation of one (getopt_long would have taken it), a prefix
 * of several, or nothing eplb knows. */
static void report_inexact(const char *cmd, const char *given, const struct option *longopts)
{
    const char *text = given + 2;
    size_t n = strcspn(text, "=");
    int matches = 0;
    for (const struct option *o = longopts; o->name; o++)
        matches += n > 0 && strncmp(o->name, text, n) == 0;
    char shown[512];
    /* The name without its value, unless there is no name ("--=x"). */
    eplb_text_escape_bytes(shown, sizeof shown, given, n > 0 ? n + 2 : strlen(given));
    if (matches == 0) {
        fprintf(stderr, "eplb %s: unknown option '%s' (see eplb %s --help)\n", cmd, shown, cmd);
        return;
    }
    fprintf(stderr, "eplb %s: unknown option '%s': long options are spelled out in full: ", cmd,
            shown);
    int listed = 0;
    for (const struct option *o = longopts; o->name; o++) {
        if (strncmp(o->name, text, n) != 0)
            continue;
        listed++;
        fprintf(stderr, "%s--%s", listed == 1 ? "" : listed == matches ? " or " : ", ", o->name);
    }
    fprintf(stderr, "\n");
}

void eplb_cli_getopt_start(void)
{
    opterr = 0;
    optind = 1;
}

int eplb_cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
                    const struct option *longopts)
{
    int longindex = -1;
    int c = getopt_long(argc, argv, shortopts, longopts, &longindex);
    if (c == -1)
        return c;
    if (c != '?' && c != ':') {
        if (longindex < 0)
            return c; /* a short option */
        /* The element before optind, or before the option's separate value. */
        const char *given = optarg && optind >= 2 && optarg == argv[optind - 1]
                                ? argv[optind - 2] : argv[optind - 1];
        if (strncmp(given, "--", 2) == 0 && exact_long_option(given + 2, longopts))
            return c;
        report_inexact(cmd, given, longopts);
        return '?';
    }
    const char *given = argv[optind - 1];
    /* optopt is a short option eplb does not know, unless getopt_long set it
     * to a long option's value (a value given to an option that takes none). */
    int unknown_short = optopt > 0 && optopt < 256 && !strchr(shortopts + 1, optopt);
    if (c == '?' && unknown_short) {
        char letter = (char)optopt, shown[8];
        fprintf(stderr, "eplb %s: unknown option '-%s' (see eplb %s --help)\n", cmd,
                eplb_text_escape_bytes(shown, sizeof shown, &letter, 1), cmd);
        return '?';
    }
    if (strncmp(given, "--", 2) == 0) {
        const struct option *o = exact_long_option(given + 2, longopts);
        if (!o)
            report_inexact(cmd, given, longopts);
        else if (c == ':')
            fprintf(stderr, "eplb %s: option --%s needs a value\n", cmd, o->name);
        else
            fprintf(stderr, "eplb %s: option --%s takes no value\n", cmd, o->name);
    } else if (c == ':') {
        fprintf(stderr, "eplb %s: option -%c needs a value\n", cmd, optopt);
    } else {
        char shown[512];
        fprintf(stderr, "eplb %s: unknown option '%s' (see eplb %s --help)\n", cmd,
                eplb_text_escape(shown, sizeof shown, given), cmd);
    }
    return '?';
}

int eplb_cli_backend_known(const char *cmd, const char *name, const char *source)
{
    int known = strcmp(name, "auto") == 0;
    const int count = eplb_backend_count();
    for (int i = 0; i < count; i++)
        known |= strcmp(name, eplb_backend_name(i)) == 0;
    if (known)
        return 1;
    char shown[512];
    fprintf(stderr, "eplb %s: unknown backend '%s' (from %s): use auto", cmd,
            eplb_text_escape(shown, sizeof shown, name), source);
    for (int i = 0; i < count; i++)
        fprintf(stderr, "%s%s", i + 1 < count ? ", " : " or ", eplb_backend_name(i));
    fprintf(stderr, "\n");
    return 0;
}

double eplb_cli_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

int eplb_cli_no_operands(const char *cmd, int argc, char **argv)
{
    if (optind >= argc)
        return 1;
    char shown[512];
    fprintf(stderr, "eplb %s: unexpected argument '%s' (see eplb %s --help)\n", cmd,
            eplb_text_escape(shown, sizeof shown, argv[optind]), cmd);
    return 0;
}

int eplb_cli_nothing_missing(const char *cmd, const char *missing)
{
    if (!missing)
        return 1;
    fprintf(stderr, "eplb %s: %s is required (see eplb %s --help)\n", cmd, missing, cmd);
    return 0;
}
