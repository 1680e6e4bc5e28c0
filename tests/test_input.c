/* Input files of the eplb tool: every format reads back the same loads, and
 * every malformed file gets its specific error with the output untouched. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "load_weights.h"

static const float WEIGHTS[3][8] = {{10, 0, 3.5f, 7, 1, 0, 2.25f, 40},
                                    {0, 0, 0, 0, 0, 0, 0, 0},
                                    {5, 5, 5, 5, 6, 6, 6, 0.125f}};
static const float WEIGHTS_INT[3][8] = {{10, 0, 3, 7, 1, 0, 2, 40},
                                        {0, 0, 0, 0, 0, 0, 0, 0},
                                        {5, 5, 5, 5, 6, 6, 6, 16777216}};

static void data_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", EPLB_TEST_DATA_DIR, name);
}

static void expect_matrix(const char *name, const float want[3][8], const char *format)
{
    char path[1024], error[1024] = "";
    data_path(path, sizeof path, name);
    eplb_weights w = {0};
    eplb_status st = eplb_weights_load(path, &w, error, sizeof error);
    cr_assert_eq(st, EPLB_OK, "%s: %s", name, error);
    cr_assert_eq(w.layers, 3, "%s", name);
    cr_assert_eq(w.experts, 8, "%s", name);
    cr_assert_str_eq(w.format, format, "%s", name);
    for (int l = 0; l < 3; l++)
        for (int e = 0; e < 8; e++)
            cr_expect_eq(w.data[l * 8 + e], want[l][e], "%s [%d][%d]: got %g, want %g", name, l, e,
                         (double)w.data[l * 8 + e], (double)want[l][e]);
    eplb_weights_free(&w);
    cr_assert_null(w.data);
}

Test(input, text_with_commas) { expect_matrix("good-comma.csv", WEIGHTS, "text"); }
Test(input, text_with_blanks_comments_and_crlf) { expect_matrix("good-space.txt", WEIGHTS, "text"); }
Test(input, npy_float32) { expect_matrix("good-float32.npy", WEIGHTS, "npy"); }
Test(input, npy_float64) { expect_matrix("good-float64.npy", WEIGHTS, "npy"); }
Test(input, npy_int32) { expect_matrix("good-int32.npy", WEIGHTS_INT, "npy"); }
Test(input, npy_int64) { expect_matrix("good-int64.npy", WEIGHTS_INT, "npy"); }
Test(input, npy_format_version_2) { expect_matrix("good-v2.npy", WEIGHTS, "npy"); }

Test(input, sglang_json)
{
    if (!eplb_tools_json_available())
        cr_skip_test("built without jansson");
    expect_matrix("good-sglang.json", WEIGHTS, "sglang-json");
}

Test(input, sglang_json_windows_are_summed)
{
    if (!eplb_tools_json_available())
        cr_skip_test("built without jansson");
    expect_matrix("good-sglang-windows.json", WEIGHTS, "sglang-json");
}

Test(input, plain_json_array)
{
    if (!eplb_tools_json_available())
        cr_skip_test("built without jansson");
    expect_matrix("good-array.json", WEIGHTS, "json-array");
}

Test(input, json_without_jansson_is_a_clear_error)
{
    if (eplb_tools_json_available())
        cr_skip_test("built with jansson");
    char path[1024], error[1024] = "";
    data_path(path, sizeof path, "good-sglang.json");
    eplb_weights w = {0};
    cr_assert_eq(eplb_weights_load(path, &w, error, sizeof error), EPLB_ERR_UNSUPPORTED);
    cr_assert(strstr(error, "without JSON support"), "%s", error);
}

/* Random float32 values printed with 9 digits read back bit for bit. */
Test(input, text_round_trip_is_exact)
{
    enum { L = 5, E = 33 };
    float want[L * E];
    uint32_t state = 12345;
    size_t cap = (size_t)L * E * 24 + 16, len = 0;
    char *text = malloc(cap);
    for (int i = 0; i < L * E; i++) {
        state = state * 1664525u + 1013904223u;
        want[i] = (float)(state >> 8) / 1024.0f;
        if (i % 7 == 0)
            want[i] = 0.0f;
        len += (size_t)snprintf(text + len, cap - len, "%.9g%s", (double)want[i],
                                i % E == E - 1 ? "\n" : (i % 2 ? " , " : " "));
    }
    eplb_weights w = {0};
    char error[512] = "";
    cr_assert_eq(eplb_weights_parse("memory.txt", text, len, &w, error, sizeof error), EPLB_OK,
                 "%s", error);
    cr_assert_eq(w.layers, L);
    cr_assert_eq(w.experts, E);
    cr_assert_eq(memcmp(w.data, want, sizeof want), 0);
    eplb_weights_free(&w);
    free(text);
}

typedef struct bad_case {
    const char *file;
    eplb_status status;
    const char *message; /* a piece of the expected message */
} bad_case;

static const bad_case BAD[] = {
    {"bad-ragged.csv", EPLB_ERR_PARSE, "ragged rows: line 2 has 2 values but line 1"},
    {"bad-token.csv", EPLB_ERR_PARSE, "line 2, field 2: non-numeric token 'x5'"},
    {"bad-nan.txt", EPLB_ERR_INVALID_WEIGHT, "line 2, field 2 is NaN"},
    {"bad-inf.txt", EPLB_ERR_INVALID_WEIGHT, "line 1, field 3 is infinite"},
    {"bad-negative.csv", EPLB_ERR_INVALID_WEIGHT, "line 2, field 2 is negative"},
    {"bad-huge.txt", EPLB_ERR_INVALID_WEIGHT, "beyond the float32 range"},
    {"bad-empty.csv", EPLB_ERR_PARSE, "the file is empty"},
    {"bad-comments.txt", EPLB_ERR_PARSE, "no data"},
    {"bad-double-comma.csv", EPLB_ERR_PARSE, "line 1, field 2 is empty"},
    {"bad-trailing-comma.csv", EPLB_ERR_PARSE, "line 1 ends with a comma"},
    {"bad-fortran.npy", EPLB_ERR_PARSE, "Fortran-order"},
    {"bad-float16.npy", EPLB_ERR_PARSE, "unsupported .npy dtype '<f2'"},
    {"bad-bigendian.npy", EPLB_ERR_PARSE, "unsupported .npy dtype '>f4'"},
    {"bad-3d.npy", EPLB_ERR_PARSE, "must be 2-D"},
    {"bad-1d.npy", EPLB_ERR_PARSE, "this one is 1-D"},
    {"bad-zero-rows.npy", EPLB_ERR_PARSE, "the array is empty"},
    {"bad-truncated.npy", EPLB_ERR_PARSE, "truncated data: shape 3 x 8 of '<f4' needs 96 bytes, "
                                          "the file holds 91"},
    {"bad-trailing.npy", EPLB_ERR_PARSE, "4 unexpected bytes after the array data"},
    {"bad-nan.npy", EPLB_ERR_INVALID_WEIGHT, "element [0][1] is NaN"},
    {"bad-negative.npy", EPLB_ERR_INVALID_WEIGHT, "element [0][1] is negative (-2)"},
    {"bad-magic.npy", EPLB_ERR_PARSE, "not a NumPy .npy file"},
    {"bad-header.npy", EPLB_ERR_PARSE, "malformed .npy header"},
    {"bad-short-header.npy", EPLB_ERR_PARSE, "truncated .npy header"},
    {"bad-duplicate-descr.npy", EPLB_ERR_PARSE, "malformed .npy header: 'descr' appears twice"},
    {"bad-unknown-key.npy", EPLB_ERR_PARSE, "malformed .npy header: unexpected key 'order'"},
    {"bad-hex.csv", EPLB_ERR_PARSE, "line 1, field 2: hexadecimal number '0x1p3'"},
    {"bad-nul.csv", EPLB_ERR_PARSE, "NUL byte at offset 7"},
    {"no-such-file.csv", EPLB_ERR_IO, "cannot open: No such file or directory"},
    {".", EPLB_ERR_IO, "cannot read: Is a directory"},
    /* JSON input: read only with JSON support (jansson). */
    {"bad-syntax.json", EPLB_ERR_PARSE, "invalid JSON at line 1"},
    {"bad-ragged.json", EPLB_ERR_PARSE, "ragged rows: logical_count[1] has 2 values"},
    {"bad-string.json", EPLB_ERR_PARSE, "array[1][1] is not a number"},
    {"bad-nokey.json", EPLB_ERR_PARSE, "no \"logical_count\" member"},
    {"bad-negative.json", EPLB_ERR_INVALID_WEIGHT, "array[1][1] is negative"},
    {"bad-empty.json", EPLB_ERR_PARSE, "array is empty (no layers)"},
    {"bad-empty-row.json", EPLB_ERR_PARSE, "array[0] is empty (no experts)"},
    {"bad-scalar.json", EPLB_ERR_PARSE, "array[0] is not an array of numbers"},
};

static void expect_rejected(const bad_case *c)
{
    char path[1024], error[1024] = "";
    data_path(path, sizeof path, c->file);
    eplb_weights w;
    memset(&w, 0xA5, sizeof w);
    eplb_weights poison;
    memset(&poison, 0xA5, sizeof poison);
    eplb_status st = eplb_weights_load(path, &w, error, sizeof error);
    cr_expect_eq(st, c->status, "%s: status %d (%s), want %d: %s", c->file, st,
                 eplb_status_string(st), c->status, error);
    cr_expect(strstr(error, path) == error, "%s: the message must start with the file name: %s",
              c->file, error);
    cr_expect(strstr(error, c->message) != NULL, "%s: message '%s' lacks '%s'", c->file, error,
              c->message);
    cr_expect_eq(memcmp(&w, &poison, sizeof w), 0, "%s: output touched on failure", c->file);
}

Test(input, malformed_files_get_specific_errors)
{
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        const size_t len = strlen(BAD[i].file);
        const int json = len > 5 && strcmp(BAD[i].file + len - 5, ".json") == 0;
        if (json && !eplb_tools_json_available()) {
            cr_log_info("%s: not checked, built without jansson", BAD[i].file);
            continue;
        }
        expect_rejected(&BAD[i]);
    }
}

/* Every prefix of a valid .npy file is rejected without a crash or a read past the end. */
Test(input, every_truncation_of_an_npy_file_is_rejected)
{
    char path[1024];
    data_path(path, sizeof path, "good-float64.npy");
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    unsigned char buf[4096];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    cr_assert_gt(len, 128u);
    for (size_t n = 0; n < len; n++) {
        unsigned char *copy = malloc(n ? n : 1); /* exact size: a sanitizer sees any overread */
        memcpy(copy, buf, n);
        eplb_weights w = {0};
        char error[512] = "";
        eplb_status st = eplb_weights_parse("cut.npy", copy, n, &w, error, sizeof error);
        cr_expect_neq(st, EPLB_OK, "a %zu-byte prefix was accepted", n);
        cr_expect_null(w.data);
        free(copy);
    }
}

Test(input, null_arguments_are_rejected)
{
    eplb_weights w = {0};
    char error[256] = "";
    cr_expect_eq(eplb_weights_load(NULL, &w, error, sizeof error), EPLB_ERR_INVALID_ARGUMENT);
    cr_expect_eq(eplb_weights_load("x.csv", NULL, error, sizeof error), EPLB_ERR_INVALID_ARGUMENT);
    cr_expect_eq(eplb_weights_parse("x.csv", NULL, 3, &w, error, sizeof error),
                 EPLB_ERR_INVALID_ARGUMENT);
    eplb_weights_free(NULL);
}

/* strtod reads hexadecimal floats, infinities and NaNs in many spellings;
 * a load file holds none of them. */
Test(input, hex_inf_and_nan_spellings_are_refused)
{
    static const char *const tokens[] = {
        "0x1p3", "0X10", "-0x1", "+0x1.8p1", "0x", "inf", "-inf", "+INF", "infinity",
        "Infinity", "nan", "NAN", "-nan", "nan(123)", "nan()", "1e", "1e+", "+", "-", ".", "e5",
    };
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
        char text[64], error[512] = "";
        int len = snprintf(text, sizeof text, "1, %s, 2\n", tokens[i]);
        eplb_weights w = {0};
        eplb_status st = eplb_weights_parse("spelling.csv", text, (size_t)len, &w, error,
                                            sizeof error);
        cr_expect(st == EPLB_ERR_PARSE || st == EPLB_ERR_INVALID_WEIGHT,
                  "'%s' gave status %d: %s", tokens[i], st, error);
        cr_expect(strstr(error, "line 1, field 2") != NULL, "'%s': %s", tokens[i], error);
        cr_expect_null(w.data);
    }
}

/* Plain decimal spellings keep parsing as before. */
Test(input, decimal_spellings_are_accepted)
{
    const char text[] = "1, +2, 3., .5, 1e3, 2E-1, 0.0, 00, +0.25e+1\n";
    const float want[] = {1, 2, 3, 0.5f, 1000, 0.2f, 0, 0, 2.5f};
    eplb_weights w = {0};
    char error[512] = "";
    cr_assert_eq(eplb_weights_parse("decimal.csv", text, sizeof text - 1, &w, error, sizeof error),
                 EPLB_OK, "%s", error);
    cr_assert_eq(w.experts, 9);
    for (int i = 0; i < 9; i++)
        cr_expect_eq(w.data[i], want[i], "value %d: %g", i, (double)w.data[i]);
    eplb_weights_free(&w);
}

/* Control bytes in a name or in the content never reach the message raw. */
Test(input, control_bytes_in_names_and_tokens_are_escaped)
{
    const char text[] = "1, 2\n3, \x1b[2J\x9b" "1m\n";
    eplb_weights w = {0};
    char error[512] = "";
    eplb_status st = eplb_weights_parse("in\x1b]0;x\x07.csv", text, sizeof text - 1, &w, error,
                                        sizeof error);
    cr_assert_eq(st, EPLB_ERR_PARSE, "%s", error);
    for (const unsigned char *p = (const unsigned char *)error; *p; p++)
        cr_expect(*p >= 0x20 && *p < 0x7f, "raw byte 0x%02x in: %s", *p, error);
    cr_expect(strstr(error, "in\\x1b]0;x\\x07.csv: ") == error, "%s", error);
    cr_expect(strstr(error, "'\\x1b[2J\\x9b1m'") != NULL, "%s", error);
}

/* jansson quotes the offending text in its messages: escaped too. */
Test(input, control_bytes_quoted_by_jansson_are_escaped)
{
    if (!eplb_tools_json_available())
        cr_skip_test("built without jansson");
    const char text[] = "[[1, 2], [3, \x1b[2Jx]]";
    eplb_weights w = {0};
    char error[512] = "";
    cr_assert_eq(eplb_weights_parse("esc.json", text, sizeof text - 1, &w, error, sizeof error),
                 EPLB_ERR_PARSE, "%s", error);
    for (const unsigned char *p = (const unsigned char *)error; *p; p++)
        cr_expect(*p >= 0x20 && *p < 0x7f, "raw byte 0x%02x in: %s", *p, error);
    cr_expect(strstr(error, "\\x1b") != NULL, "%s", error);
}

/* The size limit: refused before reading the whole file, with a message that
 * names the limit and how to raise it; raised, the same file loads. */
Test(input, files_beyond_the_size_limit_are_refused)
{
    char path[1024], error[1024] = "";
    data_path(path, sizeof path, "good-comma.csv");
    setenv("EPLB_MAX_INPUT_BYTES", "100", 1);
    eplb_weights w = {0};
    cr_expect_eq(eplb_weights_load(path, &w, error, sizeof error), EPLB_ERR_PARSE, "%s", error);
    cr_expect(strstr(error, "the limit of 100 bytes") != NULL, "%s", error);
    cr_expect(strstr(error, "EPLB_MAX_INPUT_BYTES") != NULL, "%s", error);
    cr_expect_null(w.data);

    data_path(path, sizeof path, "good-float64.npy");
    cr_expect_eq(eplb_weights_load(path, &w, error, sizeof error), EPLB_ERR_PARSE, "%s", error);
    cr_expect(strstr(error, "EPLB_MAX_INPUT_BYTES") != NULL, "%s", error);

    setenv("EPLB_MAX_INPUT_BYTES", "1k", 1);
    expect_matrix("good-comma.csv", WEIGHTS, "text");
    expect_matrix("good-float64.npy", WEIGHTS, "npy");
    setenv("EPLB_MAX_INPUT_BYTES", "2G", 1);
    expect_matrix("good-float32.npy", WEIGHTS, "npy");
}

Test(input, a_bad_size_limit_is_a_clear_error)
{
    static const char *const values[] = {"abc", "-5", "0", "12q", "99999999999999999999G"};
    char path[1024];
    data_path(path, sizeof path, "good-comma.csv");
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        setenv("EPLB_MAX_INPUT_BYTES", values[i], 1);
        eplb_weights w = {0};
        char error[1024] = "";
        cr_expect_eq(eplb_weights_load(path, &w, error, sizeof error), EPLB_ERR_INVALID_ARGUMENT,
                     "'%s': %s", values[i], error);
        cr_expect(strstr(error, "EPLB_MAX_INPUT_BYTES") != NULL, "'%s': %s", values[i], error);
    }
}

/* The reader stops early on bytes that cannot become a load file; it must never
 * stop on bytes that can. Random texts near the format's edges (blank lines,
 * comments, CRLF, commas, long tokens, rows of other lengths, NUL) go through
 * eplb_weights_load in pieces of every small size and through
 * eplb_weights_parse whole: same status, same loads. */
Test(input, reading_in_pieces_agrees_with_parsing_whole)
{
    static const char *const pieces[] = {
        "1", "2.5", "0", " ", "  ", ",", ", ", "\n", "\r\n", "\n\n", "# note\n", "\t",
        "1e3", "x", "\r", "-1", "123456789012345678901234567890123456789012345678901234567890"
        "12345678901234567890123456789012345678901234567890123456789012345678",
        "\0", "\xEF\xBB\xBF", "nan", "0x1p3", "7\n", "3 4\n",
    };
    const size_t npieces = sizeof pieces / sizeof pieces[0];
    char path[] = "/tmp/eplb-input-pieces-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    uint32_t state = 2024;
    for (int round = 0; round < 400; round++) {
        char text[512];
        size_t len = 0;
        int count = 1 + round % 24;
        for (int i = 0; i < count; i++) {
            state = state * 1664525u + 1013904223u;
            const char *piece = pieces[(state >> 8) % npieces];
            size_t n = piece[0] ? strlen(piece) : 1; /* the NUL piece is one byte */
            if (len + n > sizeof text)
                break;
            memcpy(text + len, piece, n);
            len += n;
        }
        FILE *f = fopen(path, "wb");
        fwrite(text, 1, len, f);
        fclose(f);
        eplb_weights whole = {0};
        char error[512] = "";
        eplb_status want = eplb_weights_parse(path, text, len, &whole, error, sizeof error);
        for (int chunk = 1; chunk <= 8; chunk++) {
            char chunk_text[8];
            snprintf(chunk_text, sizeof chunk_text, "%d", chunk);
            setenv("EPLB_TEST_READ_CHUNK", chunk_text, 1);
            eplb_weights read = {0};
            char read_error[512] = "";
            eplb_status got = eplb_weights_load(path, &read, read_error, sizeof read_error);
            cr_expect_neq(got, EPLB_ERR_INTERNAL, "round %d, pieces of %d: %s", round, chunk,
                          read_error);
            cr_expect_eq(got == EPLB_OK, want == EPLB_OK,
                         "round %d, pieces of %d: read %s (%s), parsed %s (%s)", round, chunk,
                         eplb_status_string(got), read_error, eplb_status_string(want), error);
            if (got == EPLB_OK && want == EPLB_OK) {
                cr_expect(read.layers == whole.layers && read.experts == whole.experts &&
                              memcmp(read.data, whole.data, (size_t)(read.layers * read.experts) *
                                                                sizeof *read.data) == 0,
                          "round %d, pieces of %d: other loads", round, chunk);
            }
            eplb_weights_free(&read);
        }
        eplb_weights_free(&whole);
    }
    unsetenv("EPLB_TEST_READ_CHUNK");
    unlink(path);
}
