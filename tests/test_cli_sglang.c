/* The eplb tool meets SGLang where it is: `eplb plan --format sglang` writes
 * the file SGLang's --init-expert-location loads as it is, and a .pt dump
 * (torch.save) gets a message that says how to read it (docs/cli.md). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_run.h"
#include "load_weights.h"

#ifdef EPLB_TOOLS_HAVE_JSON
#include <jansson.h>
#endif

#define INPUT EPLB_TEST_DATA_DIR "/good-sglang.json"

CLI_SUITE(cli_sglang, "/tmp/eplb-test-sglang-XXXXXX");

/* The SGLang file is the plan's phy2log and nothing else: one key, the same
 * [layers][replicas] integers as the eplb plan file of the same run. */
Test(cli_sglang, format_sglang_writes_only_the_physical_to_logical_map)
{
    if (!eplb_tools_json_available())
        cr_skip_test("built without jansson: no JSON input or eplb plan file to compare with");
#ifdef EPLB_TOOLS_HAVE_JSON
    char plan[512], sglang[512];
    cli_in_scratch(plan, sizeof plan, "plan.json");
    cli_in_scratch(sglang, sizeof sglang, "sglang.json");
    const char *eplb_args[] = {"plan", "-i", INPUT, "-r", "12", "-p", "4", "-b", "cpu", "-q",
                               "-o", plan, NULL};
    cli_captured r = cli_run_captured(eplb_args, NULL);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cli_captured_free(&r);
    const char *sglang_args[] = {"plan", "-i", INPUT, "-r", "12", "-p", "4", "-b", "cpu",
                                 "--format", "sglang", "-o", sglang, NULL};
    r = cli_run_captured(sglang_args, NULL);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.out, "plan file     "), "%s", r.out);
    cr_expect_eq(r.err[0], '\0', "a name ending in .json needs no note: %s", r.err);
    cli_captured_free(&r);

    char *text = cli_slurp(sglang);
    cr_assert_not_null(text);
    cr_expect(strncmp(text, "{\"physical_to_logical_map\":[[", 29) == 0, "%.80s", text);
    free(text);
    json_error_t jerr;
    json_t *ours = json_load_file(sglang, 0, &jerr), *full = json_load_file(plan, 0, &jerr);
    cr_assert(ours && full, "%s", jerr.text);
    cr_expect_eq(json_object_size(ours), 1, "SGLang passes every key on: only one may be there");
    json_t *map = json_object_get(ours, "physical_to_logical_map");
    cr_assert(json_is_array(map));
    cr_expect(json_equal(map, json_object_get(full, "phy2log")),
              "physical_to_logical_map differs from the plan's phy2log");
    cr_expect_eq(json_array_size(map), 3); /* layers of good-sglang.json */
    cr_expect_eq(json_array_size(json_array_get(map, 0)), 12);
    json_decref(ours);
    json_decref(full);
#endif
}

/* To standard output, and under a name SGLang would take for JSON text. */
Test(cli_sglang, format_sglang_to_stdout_and_the_json_suffix_note)
{
    if (!eplb_tools_json_available())
        cr_skip_test("built without jansson: no JSON input");
    const char *to_stdout[] = {"plan", "-i", INPUT, "-r", "12", "-p", "4", "--format", "sglang",
                               "-o", "-", NULL};
    cli_captured r = cli_run_captured(to_stdout, NULL);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strncmp(r.out, "{\"physical_to_logical_map\":[[", 29) == 0, "%.80s", r.out);
    cr_expect(strstr(r.out, "\n") == r.out + strlen(r.out) - 1, "one line: %s", r.out);
    cr_expect(strstr(r.err, "balancedness"), "the summary goes to stderr: %s", r.err);
    cli_captured_free(&r);

    char odd[512];
    cli_in_scratch(odd, sizeof odd, "placement.txt");
    const char *odd_name[] = {"plan", "-i", INPUT, "-r", "12", "-p", "4", "--format", "sglang",
                              "-q", "-o", odd, NULL};
    r = cli_run_captured(odd_name, NULL);
    cr_expect_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.err, "ends in .json"), "%s", r.err);
    cr_expect(cli_exists(odd));
    cli_captured_free(&r);
}

Test(cli_sglang, format_errors_exit_2_and_write_nothing)
{
    char out[512];
    cli_in_scratch(out, sizeof out, "never.json");
    static const char *const bad[][16] = {
        {"plan", "-i", INPUT, "-r", "12", "-p", "4", "--format", "torch", "-o", NULL},
        {"plan", "-i", INPUT, "-r", "12", "-p", "4", "--format", "sglang", NULL},
        {"plan", "-i", INPUT, "-r", "12", "-p", "4", "--format", NULL},
        {"plan", "-i", INPUT, "-r", "13", "-p", "4", "--format", "sglang", "-o", NULL},
        {"plan", "-i", INPUT, "-r", "12", "-p", "4", "--format", "sglang", "--output=", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[18];
        size_t n = 0;
        for (; bad[i][n]; n++)
            args[n] = bad[i][n];
        if (strcmp(args[n - 1], "-o") == 0)
            args[n++] = out;
        args[n] = NULL;
        cli_captured r = cli_run_captured(args, NULL);
        cr_expect_eq(r.code, 2, "case %zu: exit %d: %s", i, r.code, r.err);
        cr_expect_neq(r.err[0], '\0', "case %zu: no message", i);
        cr_expect(!cli_exists(out), "case %zu wrote %s", i, out);
        cli_captured_free(&r);
    }
}

/* torch.save's zip (PyTorch 1.6 on), its older pickle, and NumPy's .npz. */
static void write_bytes(const char *path, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(bytes, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

Test(cli_sglang, torch_files_get_a_message_naming_the_python_package)
{
    /* A zip's local file header, as torch.save (and SGLang's recorder) writes it. */
    static const unsigned char zip[] = "PK\x03\x04\x14\x00\x00\x00\x08\x00archive/data.pkl";
    /* The legacy format starts with the pickled magic number 0x1950a86a20f9469cfc6c. */
    static const unsigned char legacy[] = "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50"
                                          "\x19.\x80\x02}q\x00.";
    char dump[512], old[512], npz[512], out[512];
    cli_in_scratch(dump, sizeof dump, "expert_distribution_recorder.pt");
    cli_in_scratch(old, sizeof old, "legacy.pt");
    cli_in_scratch(npz, sizeof npz, "loads.npz");
    cli_in_scratch(out, sizeof out, "plan.json");
    write_bytes(dump, zip, sizeof zip - 1);
    write_bytes(old, legacy, sizeof legacy - 1);
    write_bytes(npz, zip, sizeof zip - 1);
    const char *inputs[] = {dump, old};
    for (size_t i = 0; i < 2; i++) {
        const char *args[] = {"plan", "-i",       inputs[i], "-r", "8",  "-p",
                              "2",    "--format", "sglang",  "-o", out, NULL};
        cli_captured r = cli_run_captured(args, NULL);
        cr_expect_eq(r.code, 2, "%s: exit %d", inputs[i], r.code);
        cr_expect(strstr(r.err, inputs[i]), "%s: the message names the file: %s", inputs[i], r.err);
        cr_expect(strstr(r.err, "PyTorch"), "%s: %s", inputs[i], r.err);
        cr_expect(strstr(r.err, "python -m eplb plan"), "%s: %s", inputs[i], r.err);
        cr_expect_eq(r.out[0], '\0');
        cr_expect(!cli_exists(out));
        cli_captured_free(&r);
    }
    const char *npz_args[] = {"plan", "-i", npz, "-r", "8", "-p", "2", NULL};
    cli_captured r = cli_run_captured(npz_args, NULL);
    cr_expect_eq(r.code, 2);
    cr_expect(strstr(r.err, ".npz") && strstr(r.err, "numpy.save"), "%s", r.err);
    cli_captured_free(&r);

    /* The same through standard input, where only the bytes tell. */
    char err[512];
    cli_in_scratch(err, sizeof err, "stderr");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s plan -i - -r 8 -p 2 <'%s' 2>'%s' >/dev/null", EPLB_CLI, dump,
             err);
    int status = system(cmd);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 2, "status %d", status);
    char *text = cli_slurp(err);
    cr_expect(text && strstr(text, "(stdin)") && strstr(text, "python -m eplb plan"), "%s", text);
    free(text);
}

/* The loader says the same to every caller (eplb-bench too). */
Test(cli_sglang, loader_refuses_torch_bytes_by_content)
{
    static const char zip[] = "PK\x03\x04rest";
    eplb_weights w = {0};
    char error[1024];
    cr_expect_eq(eplb_weights_parse("dump.bin", zip, sizeof zip - 1, &w, error, sizeof error),
                 EPLB_ERR_PARSE);
    cr_expect(strstr(error, "dump.bin: a PyTorch file"), "%s", error);
    cr_expect_null(w.data);
}
