/* Input through the built eplb binary: endless or enormous input is refused
 * quickly with a message about the input, under a memory limit, and every
 * message that echoes a file name or its content escapes control bytes. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli_run.h"
#include "eplb/eplb.h"

/* The address-space limit of the eplb child: far below what the unbounded
 * reader used to reach, and above what the refusal needs. */
#define CLI_ADDRESS_LIMIT (1024L * 1024 * 1024)

/* Bytes fed to the eplb child's standard input: prefix once, then repeat
 * until the child stops reading. */
typedef struct endless_input {
    const char *prefix;
    size_t prefix_len;
    const char *repeat;
    size_t repeat_len;
} endless_input;

typedef struct piped_result {
    int exit_code;  /* -1 when killed by a signal */
    double seconds; /* from the start of the child until it exited */
    char out[8192]; /* standard output, NUL-terminated (truncated) */
    char err[8192]; /* standard error, NUL-terminated (truncated) */
} piped_result;

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void read_back(int fd, char *buf, size_t cap)
{
    lseek(fd, 0, SEEK_SET);
    ssize_t got = read(fd, buf, cap - 1);
    buf[got > 0 ? got : 0] = '\0';
    close(fd);
}

/* A writer process that feeds input into fd until the reader closes its end. */
static pid_t start_writer(int fd, const endless_input *in)
{
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid != 0)
        return pid;
    signal(SIGPIPE, SIG_IGN);
    static char block[1 << 16];
    size_t used = 0;
    while (used + in->repeat_len <= sizeof block) {
        memcpy(block + used, in->repeat, in->repeat_len);
        used += in->repeat_len;
    }
    if (in->prefix_len && write(fd, in->prefix, in->prefix_len) < 0)
        _exit(0);
    while (write(fd, block, used) > 0)
        continue;
    _exit(0);
}

/* Runs eplb with argv (argv[0] is ignored) under the address-space limit,
 * its standard input from `in` (or /dev/null), for at most limit_s seconds. */
static void run_cli(char *const argv[], const endless_input *in, double limit_s, piped_result *r)
{
    memset(r, 0, sizeof *r);
    char out_name[] = "/tmp/eplb-input-out-XXXXXX", err_name[] = "/tmp/eplb-input-err-XXXXXX";
    int out_fd = mkstemp(out_name), err_fd = mkstemp(err_name);
    cr_assert(out_fd >= 0 && err_fd >= 0);
    unlink(out_name);
    unlink(err_name);
    int feed[2] = {-1, -1};
    pid_t writer = -1;
    if (in) {
        cr_assert_eq(pipe(feed), 0);
        writer = start_writer(feed[1], in);
        close(feed[1]);
    }
    double start = now_seconds();
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int input = in ? feed[0] : open("/dev/null", O_RDONLY);
        dup2(input, 0);
        dup2(out_fd, 1);
        dup2(err_fd, 2);
        if (!UNDER_ASAN) {
            struct rlimit limit = {CLI_ADDRESS_LIMIT, CLI_ADDRESS_LIMIT};
            setrlimit(RLIMIT_AS, &limit);
        }
        setenv("EPLB_BACKEND", "cpu", 1);
        execv(EPLB_CLI, argv);
        _exit(127);
    }
    if (in)
        close(feed[0]);
    int status = 0;
    for (;;) {
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid)
            break;
        if (now_seconds() - start > limit_s) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        usleep(2000);
    }
    r->seconds = now_seconds() - start;
    r->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (writer > 0) {
        kill(writer, SIGKILL);
        waitpid(writer, NULL, 0);
    }
    read_back(out_fd, r->out, sizeof r->out);
    read_back(err_fd, r->err, sizeof r->err);
}

/* Endless input is refused with exit 2 and a message about the input, not
 * about memory, within max_s seconds. */
static void expect_refused(char *const argv[], const endless_input *in, double max_s,
                           const char *name, const char *why)
{
    if (UNDER_ASAN)
        max_s *= 10;
    /* Killed a little after the bound: a hang fails the test, it does not stall it. */
    piped_result r;
    run_cli(argv, in, max_s + 5.0, &r);
    cr_expect_eq(r.exit_code, 2, "%s: exit %d after %.3f s, stderr: %s", why, r.exit_code,
                 r.seconds, r.err);
    cr_expect_lt(r.seconds, max_s, "%s: took %.3f s (at most %.1f s)", why, r.seconds, max_s);
    cr_expect(strstr(r.err, name) != NULL, "%s: the message does not name %s: %s", why, name,
              r.err);
    cr_expect(strstr(r.err, "out of memory") == NULL, "%s: refused for memory: %s", why, r.err);
    fprintf(stderr, "%s: refused in %.3f s: %s", why, r.seconds, r.err);
}

/* Endless input on standard input, for the plan every case below asks for. */
static void expect_stdin_refused(const endless_input *in, double max_s, const char *name,
                                 const char *why)
{
    char *argv[] = {"eplb", "plan", "-i", "-", "--replicas", "16", "--gpus", "4", NULL};
    expect_refused(argv, in, max_s, name, why);
}

Test(input_cli, dev_zero_is_refused_within_a_second)
{
    char *argv[] = {"eplb", "plan", "-i", "/dev/zero", "--replicas", "16", "--gpus", "4", NULL};
    expect_refused(argv, NULL, 1.0, "/dev/zero", "/dev/zero");
}

/* The smallest power of two of layers (one expert) or of experts (one layer)
 * that the library refuses, or 0 when it plans 2^24 of them: then an endless
 * stream reaches the size limit first, and the case has nothing to check. */
static int64_t refused_count(int experts_grow)
{
    for (int64_t n = 1; n <= (INT64_C(1) << 24); n *= 2) {
        eplb_shape s = {.layers = experts_grow ? 1 : n, .experts = experts_grow ? n : 1,
                        .replicas = experts_grow ? n : 1, .groups = 1, .nodes = 1, .gpus = 1};
        if (eplb_shape_check(&s, NULL) != EPLB_OK)
            return n;
    }
    return 0;
}

enum beyond_limit { NO_LIMIT, LAYER_LIMIT, EXPERT_LIMIT };

/* Endless streams on standard input: each refused within max_s seconds,
 * the message naming what it names. */
Test(input_cli, endless_streams_on_stdin_are_refused_in_time)
{
    static const struct {
        const char *why;
        endless_input in;
        double max_s;
        const char *names;
        enum beyond_limit needs; /* the library limit that stops it, when not the size limit */
    } streams[] = {
        {"zero bytes on stdin", {"", 0, "\0", 1}, 1.0, "(stdin)", NO_LIMIT},
        {"endless digits", {"", 0, "1234567890", 10}, 1.0, "(stdin)", NO_LIMIT},
        /* Rows that would each be valid: only the size limit stops them. */
        {"endless rows", {"", 0, "1 2 3 4\n", 8}, 10.0, "(stdin)", NO_LIMIT},
        /* Refused once there are more layers (experts) than the library plans,
         * long before the size limit. */
        {"endless one-value rows", {"", 0, "1\n", 2}, 1.0, "more than eplb plans", LAYER_LIMIT},
        {"one endless row", {"", 0, "1 ", 2}, 1.0, "more than eplb plans", EXPERT_LIMIT},
        /* White space alone leaves the format open (text, or JSON after it): the
         * reader must still look at each byte once, not again with every chunk. */
        {"endless blank lines", {"", 0, " \n", 2}, 10.0, "(stdin)", NO_LIMIT},
        {"endless JSON", {"[[", 2, "1, ", 3}, 10.0, "(stdin)", NO_LIMIT},
    };
    for (size_t i = 0; i < sizeof streams / sizeof streams[0]; i++) {
        if (streams[i].needs != NO_LIMIT && !refused_count(streams[i].needs == EXPERT_LIMIT)) {
            cr_log_info("%s: not checked, the library plans 2^24 %s", streams[i].why,
                        streams[i].needs == EXPERT_LIMIT ? "experts" : "layers");
            continue;
        }
        expect_stdin_refused(&streams[i].in, streams[i].max_s, streams[i].names, streams[i].why);
    }
}

/* A .npy version 1.0 header of NPY_HEADER_LEN bytes: magic, length, the
 * dictionary padded with spaces, and the closing newline. */
#define NPY_HEADER_LEN 128
static void npy_header(char header[NPY_HEADER_LEN], const char *dict)
{
    memcpy(header, "\x93NUMPY\x01\x00\x76\x00", 10);
    memset(header + 10, ' ', NPY_HEADER_LEN - 10);
    memcpy(header + 10, dict, strlen(dict));
    header[NPY_HEADER_LEN - 1] = '\n';
}

/* A valid .npy header for 3 x 8 float32, then more data than it declares. */
Test(input_cli, npy_stream_longer_than_its_header_is_refused_within_a_second)
{
    char header[NPY_HEADER_LEN];
    npy_header(header, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 8), }");
    endless_input npy = {header, NPY_HEADER_LEN, "\0\0\x80\x3f", 4};
    expect_stdin_refused(&npy, 1.0, "(stdin)", "npy stream");
}

/* A .npy header whose shape needs far more bytes than the limit. */
Test(input_cli, npy_header_beyond_the_size_limit_is_refused_within_a_second)
{
    char header[NPY_HEADER_LEN];
    npy_header(header, "{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000), }");
    endless_input npy = {header, NPY_HEADER_LEN, "\0\0\0\0\0\0\xf0\x3f", 8};
    expect_stdin_refused(&npy, 1.0, "EPLB_MAX_INPUT_BYTES", "npy beyond the limit");
}

/* ---- control bytes in names and content ------------------------------------------------ */

/* No control byte but newlines and tabs may reach the terminal; the tool's own
 * UTF-8 text (the summary's bars) may. A line that echoes the input's name
 * ("loads") must be printable ASCII through and through. */
static void expect_no_control_bytes(const char *text, const char *what)
{
    const char *line = text;
    while (*line) {
        size_t n = strcspn(line, "\n");
        int echoes_name = memmem(line, n, "loads", 5) != NULL;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)line[i];
            int control = (c < 0x20 && c != '\t') || c == 0x7f;
            cr_expect(!control && !(echoes_name && c > 0x7f),
                      "%s holds the raw byte 0x%02x in the line: %.*s", what, c, (int)n, line);
        }
        line += n + (line[n] == '\n');
    }
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

/* A directory of its own, with a load file whose name holds an ESC sequence. */
static void make_hostile_name(char *dir, size_t dir_len, char *path, size_t path_len)
{
    snprintf(dir, dir_len, "/tmp/eplb-input-names-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, path_len, "%s/loads\x1b[31mred\x07.csv", dir);
}

/* Plans path on `gpus` GPUs: the run exits with want_code, nothing it
 * prints holds a control byte, and escaped stands in its summary (exit 0)
 * or in its error. */
static void expect_escaped_run(const char *what, char *path, char *gpus, int want_code,
                               const char *escaped)
{
    char *argv[] = {"eplb", "plan", "-i", path, "--replicas", "8", "--gpus", gpus, NULL};
    piped_result r;
    run_cli(argv, NULL, 60.0, &r);
    cr_expect_eq(r.exit_code, want_code, "%s: exit %d, stderr: %s", what, r.exit_code, r.err);
    expect_no_control_bytes(r.out, "stdout");
    expect_no_control_bytes(r.err, "stderr");
    const char *shown = want_code == 0 ? r.out : r.err;
    cr_expect(strstr(shown, escaped) != NULL, "%s: no '%s' in: %s", what, escaped, shown);
}

Test(input_cli, a_file_name_with_escape_sequences_is_escaped_in_the_summary)
{
    char dir[64], path[128];
    make_hostile_name(dir, sizeof dir, path, sizeof path);
    write_file(path, "1, 2, 3, 4\n5, 6, 7, 8\n");
    expect_escaped_run("summary", path, "4", 0, "loads\\x1b[31mred\\x07.csv");
    unlink(path);
    rmdir(dir);
}

Test(input_cli, a_file_name_with_escape_sequences_is_escaped_in_errors)
{
    char dir[64], path[128];
    make_hostile_name(dir, sizeof dir, path, sizeof path);
    /* Missing, then malformed, then a shape the input does not allow. */
    static const char *const contents[] = {NULL, "1, 2\n3\n", "1, 2, 3, 4\n5, 6, 7, 8\n"};
    static const char *const whats[] = {"missing", "malformed", "shape not allowed"};
    for (int i = 0; i < 3; i++) {
        if (contents[i])
            write_file(path, contents[i]);
        expect_escaped_run(whats[i], path, "3", 2, "loads\\x1b[31mred\\x07.csv");
    }
    unlink(path);
    rmdir(dir);
}

Test(input_cli, a_token_with_escape_sequences_is_escaped_in_errors)
{
    char dir[] = "/tmp/eplb-input-token-XXXXXX", path[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/loads.csv", dir);
    write_file(path, "1, 2\n3, \x1b]0;owned\x07\x1b[2J\n");
    expect_escaped_run("token", path, "4", 2, "\\x1b]0;owned\\x07\\x1b[2J");
    unlink(path);
    rmdir(dir);
}

Test(input_cli, arguments_and_environment_with_escape_sequences_are_escaped_in_errors)
{
    char data[512];
    snprintf(data, sizeof data, "%s/good-comma.csv", EPLB_TEST_DATA_DIR);
    char *replicas[] = {"eplb", "plan", "-i", data, "--replicas", "\x1b[2J", "--gpus", "1", NULL};
    char *policy[] = {"eplb", "plan", "-i", data, "-r", "8", "-p", "1", "--policy", "\x1b[2J", NULL};
    char *extra[] = {"eplb", "plan", "-i", data, "-r", "8", "-p", "1", "\x1b[2J", NULL};
    char *command[] = {"eplb", "\x1b[2J", NULL};
    char *golden[] = {"eplb", "conformance", "--golden", "/nonexistent/\x1b[2J", NULL};
    char **cases[] = {replicas, policy, extra, command, golden};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        piped_result r;
        run_cli(cases[i], NULL, 60.0, &r);
        cr_expect_eq(r.exit_code, 2, "case %zu: stderr: %s", i, r.err);
        expect_no_control_bytes(r.err, "stderr");
        cr_expect(strstr(r.err, "\\x1b[2J") != NULL, "case %zu: stderr: %s", i, r.err);
    }
    setenv("EPLB_MODULE_DIR", "/nonexistent/\x1b[2J", 1);
    char *module[] = {"eplb", "plan", "-i", data, "-r", "8", "-p", "1", "-b", "opencl", NULL};
    piped_result r;
    run_cli(module, NULL, 60.0, &r);
    cr_expect_eq(r.exit_code, 1, "stderr: %s", r.err);
    expect_no_control_bytes(r.err, "stderr");
    cr_expect(strstr(r.err, "/nonexistent/\\x1b[2J/libeplb_opencl.so") != NULL, "stderr: %s", r.err);
}
