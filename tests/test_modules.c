/* Backend modules that are damaged, or that misbehave, never harm a plan that
 * does not use them (issue 19, item 3).
 *
 * A module is opened only when its backend is asked for, by name or by auto
 * in its turn; cpu opens none. A damaged file in the module directory (cut
 * short, a FIFO, random bytes, a directory, an ELF file for another machine)
 * is refused before dlopen with "cannot load PATH: ...", within a time limit:
 * the library and the eplb tool plan with cpu and auto as if it were absent,
 * and fail by name for the damaged backend. A module that fills its whole
 * error buffer leaves no NUL; the registry's copy stays inside the buffer.
 *
 * Every case runs in a fresh child process (tests/child_process.h) with
 * EPLB_MODULE_DIR pointing at a temporary directory. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "child_process.h"
#include "eplb/eplb.h"

#define EPLB_CLI EPLB_BINARY_DIR "/bin/eplb"
#define PLAN_INPUT EPLB_TEST_DATA_DIR "/good-comma.csv"

/* Seconds any one child may take: a hang on a FIFO is the failure to catch. */
enum { CHILD_SECONDS = 20 };

/* ---- damaged module files ------------------------------------------------------ */

/* A real module to damage: the opencl module when built, else the stand-in. */
static const char *intact_module(void)
{
    static const char *const opencl = EPLB_BINARY_DIR "/lib/libeplb_opencl.so";
    return access(opencl, R_OK) == 0 ? opencl : EPLB_STANDIN_MODULE;
}

static void read_whole(const char *path, unsigned char **bytes, size_t *size)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    cr_assert(n > 0, "%s is empty", path);
    rewind(f);
    *bytes = malloc((size_t)n);
    cr_assert(*bytes);
    cr_assert_eq(fread(*bytes, 1, (size_t)n, f), (size_t)n, "cannot read %s", path);
    fclose(f);
    *size = (size_t)n;
}

static void write_whole(const char *path, const unsigned char *bytes, size_t size)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot create %s", path);
    cr_assert_eq(fwrite(bytes, 1, size, f), size, "cannot write %s", path);
    cr_assert_eq(fclose(f), 0);
}

/* Deterministic bytes that are not a library. */
static void fill_noise(unsigned char *bytes, size_t size, uint64_t seed)
{
    for (size_t i = 0; i < size; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        bytes[i] = (unsigned char)(seed >> 56);
    }
}

/* Writes a damaged module of the given kind at path. */
static void make_damaged(const char *kind, const char *path)
{
    unsigned char *bytes = NULL;
    size_t size = 0;
    if (strcmp(kind, "fifo") == 0) {
        cr_assert_eq(mkfifo(path, 0600), 0, "mkfifo %s", path);
        return;
    }
    if (strcmp(kind, "directory") == 0) {
        cr_assert_eq(mkdir(path, 0700), 0, "mkdir %s", path);
        return;
    }
    if (strcmp(kind, "empty") == 0) {
        write_whole(path, (const unsigned char *)"", 0);
        return;
    }
    if (strcmp(kind, "random") == 0 || strcmp(kind, "elf_random") == 0) {
        size = 64 * 1024;
        bytes = malloc(size);
        cr_assert(bytes);
        fill_noise(bytes, size, 19);
        if (strcmp(kind, "elf_random") == 0) /* a plausible identification, noise after it */
            memcpy(bytes, (const unsigned char[]){0x7f, 'E', 'L', 'F', ELFCLASS64, ELFDATA2LSB,
                                                  EV_CURRENT, 0},
                   8);
        write_whole(path, bytes, size);
        free(bytes);
        return;
    }
    read_whole(intact_module(), &bytes, &size);
    if (strcmp(kind, "truncated") == 0) {
        size /= 2; /* headers intact, segments cut: mapping them would raise SIGBUS */
    } else if (strcmp(kind, "truncated_head") == 0) {
        size = 4096;
    } else if (strcmp(kind, "foreign_machine") == 0) {
        ElfW(Ehdr) *header = (ElfW(Ehdr) *)bytes;
        header->e_machine = header->e_machine == EM_AARCH64 ? EM_X86_64 : EM_AARCH64;
    } else if (strcmp(kind, "dynamic_outside") == 0) {
        /* The dynamic section moved to an address no segment maps. */
        const ElfW(Ehdr) *header = (const ElfW(Ehdr) *)bytes;
        ElfW(Phdr) *segments = (ElfW(Phdr) *)(bytes + header->e_phoff);
        int moved = 0;
        for (int i = 0; i < header->e_phnum; i++)
            if (segments[i].p_type == PT_DYNAMIC) {
                segments[i].p_vaddr += 0x40000000;
                moved = 1;
            }
        cr_assert(moved, "%s has no dynamic section", intact_module());
    } else {
        cr_assert_fail("no damage '%s'", kind);
    }
    write_whole(path, bytes, size);
    free(bytes);
}

/* A fresh directory for modules; remove_module_dir() empties and removes it. */
static void make_module_dir(char *dir, size_t len)
{
    snprintf(dir, len, "/tmp/eplb-test-modules-XXXXXX");
    cr_assert(mkdtemp(dir), "mkdtemp");
}

static void remove_module_dir(const char *dir)
{
    static const char *const names[] = {"libeplb_opencl.so", "libeplb_cuda.so", "loaded"};
    char path[4096];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (unlink(path) != 0)
            rmdir(path);
    }
    rmdir(dir);
}

/* ---- children ---------------------------------------------------------------------- */

/* Backend names are listed without opening a module. */
static int names_listed(char *msg, size_t len)
{
    static const char *const want[] = {"cuda", "opencl", "cpu"};
    if (eplb_backend_count() != 3)
        return say(msg, len, CHILD_FAIL, "eplb_backend_count() is %d", eplb_backend_count());
    for (int i = 0; i < 3; i++)
        if (!eplb_backend_name(i) || strcmp(eplb_backend_name(i), want[i]) != 0)
            return say(msg, len, CHILD_FAIL, "eplb_backend_name(%d) is %s", i,
                       eplb_backend_name(i) ? eplb_backend_name(i) : "NULL");
    return CHILD_PASS;
}

/* create(backend) must succeed on the cpu backend. */
static int opens_cpu(const char *backend, char *msg, size_t len)
{
    eplb_context *ctx = NULL;
    eplb_status st = eplb_context_create(&ctx, backend);
    if (st != EPLB_OK)
        return say(msg, len, CHILD_FAIL, "create(%s) failed: %s", backend ? backend : "NULL",
                   eplb_last_error());
    int is_cpu = strcmp(eplb_context_backend(ctx), "cpu") == 0;
    say(msg, len, is_cpu ? CHILD_PASS : CHILD_FAIL, "create(%s) picked %s",
        backend ? backend : "NULL", eplb_context_backend(ctx));
    eplb_context_free(ctx);
    return is_cpu ? CHILD_PASS : CHILD_FAIL;
}

/* What the damaged and lazy cases check first: the backend names are listed,
 * and cpu by name and through EPLB_BACKEND=cpu (left set for the caller)
 * opens cpu. */
static int lists_names_and_opens_cpu(char *msg, size_t len)
{
    int code = names_listed(msg, len);
    if (code == CHILD_PASS)
        code = opens_cpu("cpu", msg, len);
    setenv("EPLB_BACKEND", "cpu", 1);
    if (code == CHILD_PASS)
        code = opens_cpu(NULL, msg, len);
    return code;
}

/* Module `arg` is damaged: cpu, EPLB_BACKEND=cpu and auto plan on cpu; the
 * damaged backend by name fails with "cannot load PATH: ...". */
static int child_damaged(const char *arg, char *msg, size_t len)
{
    int code = lists_names_and_opens_cpu(msg, len);
    if (code == CHILD_PASS)
        code = opens_cpu("auto", msg, len);
    if (code != CHILD_PASS)
        return code;
    char path[4096];
    snprintf(path, sizeof path, "cannot load %s/libeplb_%s.so: ", getenv("EPLB_MODULE_DIR"), arg);
    eplb_context *ctx = NULL;
    eplb_status st = eplb_context_create(&ctx, arg);
    if (st != EPLB_ERR_BACKEND_UNAVAILABLE || ctx)
        return say(msg, len, CHILD_FAIL, "create(%s) gave %s", arg, eplb_status_string(st));
    if (!strstr(eplb_last_error(), path))
        return say(msg, len, CHILD_FAIL, "create(%s): '%s' does not say '%s'", arg,
                   eplb_last_error(), path);
    const char *reason = NULL;
    int index = strcmp(arg, "cuda") == 0 ? 0 : 1;
    if (eplb_backend_available(index, &reason) || !reason || !strstr(reason, path))
        return say(msg, len, CHILD_FAIL, "eplb_backend_available(%s): reason '%s'", arg,
                   reason ? reason : "NULL");
    return say(msg, len, CHILD_PASS, "%s", eplb_last_error());
}

/* The stand-in module is cuda and opencl here: cpu and EPLB_BACKEND=cpu open
 * neither; auto and opencl by name do. */
static int child_lazy(const char *arg, char *msg, size_t len)
{
    (void)arg;
    const char *mark = getenv("EPLB_TEST_STANDIN_MARK");
    int code = lists_names_and_opens_cpu(msg, len);
    if (code != CHILD_PASS)
        return code;
    if (access(mark, F_OK) == 0)
        return say(msg, len, CHILD_FAIL, "a cpu context opened a backend module");
    code = opens_cpu("auto", msg, len);
    if (code != CHILD_PASS)
        return code;
    if (access(mark, F_OK) != 0)
        return say(msg, len, CHILD_FAIL, "auto did not try the cuda module in its turn");
    eplb_context *ctx = NULL;
    if (eplb_context_create(&ctx, "opencl") != EPLB_ERR_BACKEND_UNAVAILABLE ||
        !strstr(eplb_last_error(), "stand-in module: no device by design"))
        return say(msg, len, CHILD_FAIL, "create(opencl): '%s'", eplb_last_error());
    return CHILD_PASS;
}

/* The stand-in (cuda) fills its whole error buffer with 'x' and no NUL: the
 * message must end in a bounded run of x and hold nothing read past it. */
static int child_overfill(const char *arg, char *msg, size_t len)
{
    (void)arg;
    eplb_context *ctx = NULL;
    if (eplb_context_create(&ctx, "cuda") != EPLB_ERR_BACKEND_UNAVAILABLE)
        return say(msg, len, CHILD_FAIL, "create(cuda) did not fail");
    const char *error = eplb_last_error();
    const char *tail = strstr(error, "unavailable: ");
    if (!tail)
        return say(msg, len, CHILD_FAIL, "unexpected message '%s'", error);
    tail += strlen("unavailable: ");
    size_t run = strspn(tail, "x");
    if (run == 0 || run >= 512 || tail[run] != '\0')
        return say(msg, len, CHILD_FAIL, "the module's message was copied past its buffer: "
                   "%zu x then '%.40s'", run, tail + run);
    return opens_cpu("auto", msg, len);
}

static child_fn find_child_case(const char *name)
{
    if (strcmp(name, "damaged") == 0)
        return child_damaged;
    if (strcmp(name, "lazy") == 0)
        return child_lazy;
    if (strcmp(name, "overfill") == 0)
        return child_overfill;
    return NULL;
}

/* ---- tests ------------------------------------------------------------------------- */

static const char *const damage_kinds[] = {"truncated", "truncated_head", "fifo", "random",
                                           "elf_random", "directory", "empty", "foreign_machine",
                                           "dynamic_outside"};
static const char *const module_backends[] = {"opencl", "cuda"};

Test(modules, a_damaged_module_is_refused_and_harms_no_other_backend)
{
    for (size_t k = 0; k < sizeof damage_kinds / sizeof damage_kinds[0]; k++)
        for (size_t b = 0; b < 2; b++) {
            char dir[64], path[4096], env_dir[4200];
            make_module_dir(dir, sizeof dir);
            snprintf(path, sizeof path, "%s/libeplb_%s.so", dir, module_backends[b]);
            make_damaged(damage_kinds[k], path);
            snprintf(env_dir, sizeof env_dir, "EPLB_MODULE_DIR=%s", dir);
            const char *env[] = {env_dir, "EPLB_BACKEND=", NULL};
            child_report r = in_child(env, "damaged", module_backends[b], CHILD_SECONDS);
            cr_expect(r.code == CHILD_PASS, "%s libeplb_%s.so: %s", damage_kinds[k],
                      module_backends[b], r.msg);
            remove_module_dir(dir);
        }
}

Test(modules, the_eplb_tool_plans_past_a_damaged_module)
{
    for (size_t k = 0; k < sizeof damage_kinds / sizeof damage_kinds[0]; k++)
        for (size_t b = 0; b < 2; b++) {
            const char *damaged = module_backends[b];
            char dir[64], path[4096], env_dir[4200];
            make_module_dir(dir, sizeof dir);
            snprintf(path, sizeof path, "%s/libeplb_%s.so", dir, damaged);
            make_damaged(damage_kinds[k], path);
            snprintf(env_dir, sizeof env_dir, "EPLB_MODULE_DIR=%s", dir);
            const char *env[] = {env_dir, "EPLB_BACKEND=", NULL};
            const char *choices[] = {"cpu", "auto", damaged};
            for (int c = 0; c < 3; c++) {
                const char *argv[] = {EPLB_CLI, "plan", "-i", PLAN_INPUT, "-r", "8", "-p", "4",
                                      "-q", "-b", choices[c], NULL};
                child_report r = run_program(argv, env, CHILD_SECONDS);
                if (c < 2)
                    cr_expect(r.code == 0 && r.signal == 0, "%s libeplb_%s.so: eplb plan -b %s: "
                              "exit %d: %s", damage_kinds[k], damaged, choices[c], r.code, r.msg);
                else
                    cr_expect(r.code == 1 && r.signal == 0 && strstr(r.msg, "cannot load ") &&
                                  strstr(r.msg, path),
                              "%s libeplb_%s.so: eplb plan -b %s: exit %d: %s", damage_kinds[k],
                              damaged, choices[c], r.code, r.msg);
            }
            const char *list[] = {EPLB_CLI, "backends", NULL};
            child_report r = run_program(list, env, CHILD_SECONDS);
            cr_expect(r.code == 0 && strstr(r.msg, "cannot load ") && strstr(r.msg, "picks cpu"),
                      "%s libeplb_%s.so: eplb backends: exit %d: %s", damage_kinds[k], damaged,
                      r.code, r.msg);
            remove_module_dir(dir);
        }
}

Test(modules, only_the_backend_asked_for_opens_its_module)
{
    char dir[64], path[4096], env_dir[4200], env_mark[4200];
    make_module_dir(dir, sizeof dir);
    for (size_t b = 0; b < 2; b++) {
        snprintf(path, sizeof path, "%s/libeplb_%s.so", dir, module_backends[b]);
        cr_assert_eq(symlink(EPLB_STANDIN_MODULE, path), 0, "symlink %s", path);
    }
    snprintf(env_dir, sizeof env_dir, "EPLB_MODULE_DIR=%s", dir);
    snprintf(env_mark, sizeof env_mark, "EPLB_TEST_STANDIN_MARK=%s/loaded", dir);
    const char *env[] = {env_dir, env_mark, "EPLB_TEST_STANDIN=", "EPLB_BACKEND=", NULL};
    child_report r = in_child(env, "lazy", NULL, CHILD_SECONDS);
    cr_expect(r.code == CHILD_PASS, "%s", r.msg);
    remove_module_dir(dir);
}

Test(modules, a_module_message_that_fills_its_buffer_is_cut_not_overread)
{
    char dir[64], path[4096], env_dir[4200];
    make_module_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/libeplb_cuda.so", dir);
    cr_assert_eq(symlink(EPLB_STANDIN_MODULE, path), 0, "symlink %s", path);
    snprintf(env_dir, sizeof env_dir, "EPLB_MODULE_DIR=%s", dir);
    const char *env[] = {env_dir, "EPLB_TEST_STANDIN=overfill", "EPLB_BACKEND=", NULL};
    child_report r = in_child(env, "overfill", NULL, CHILD_SECONDS);
    cr_expect(r.code == CHILD_PASS, "%s", r.msg);
    remove_module_dir(dir);
}
