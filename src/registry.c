/* Backend registry. The cpu backend is compiled in; opencl and cuda are
 * modules (libeplb_opencl.so, libeplb_cuda.so) opened with dlopen from the
 * directory that holds libeplb itself, or from EPLB_MODULE_DIR, so that
 * libeplb has no link-time dependency on any vendor runtime.
 *
 * A module is opened only when its backend is asked for (by name, or by auto
 * in its turn), after cheap checks of its file, so that a damaged or hostile
 * module never harms a process that plans with another backend. Start-up is
 * serialised by one lock (see startup_lock), so that any number of threads
 * may create contexts at once. */
#define _GNU_SOURCE
#include "registry.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eplb/eplb.h"
#include "common/text_escape.h"
#include "cpu_backend.h"
#include "self_test.h"

static const char *const backend_names[EPLB_REGISTRY_COUNT] = {"cuda", "opencl", "cpu"};

const char *eplb_registry_name(int index)
{
    return index >= 0 && index < EPLB_REGISTRY_COUNT ? backend_names[index] : NULL;
}

/* Directory of the file that holds this function (libeplb.so or a program
 * that links eplb statically), with a trailing slash. */
static void own_directory(char *dir, size_t len)
{
    Dl_info info;
    dir[0] = '\0';
    if (dladdr((void *)own_directory, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        if (slash && (size_t)(slash - info.dli_fname + 2) <= len) {
            memcpy(dir, info.dli_fname, (size_t)(slash - info.dli_fname + 1));
            dir[slash - info.dli_fname + 1] = '\0';
        }
    }
}

/* ---- module files ------------------------------------------------------- */

/* The ELF header of the file that holds this function, as mapped in memory,
 * or NULL where it is not at the start of the mapping. */
static const ElfW(Ehdr) *own_elf_header(void)
{
    Dl_info info;
    if (!dladdr((void *)own_elf_header, &info) || !info.dli_fbase)
        return NULL;
    const ElfW(Ehdr) *header = info.dli_fbase;
    return memcmp(header->e_ident, ELFMAG, SELFMAG) == 0 ? header : NULL;
}

/* Reads program header i of the ELF file open at fd; 0 (why written) when it cannot. */
static int read_segment(int fd, const ElfW(Ehdr) *header, unsigned i, ElfW(Phdr) *segment,
                        char *why, size_t len)
{
    off_t at = (off_t)(header->e_phoff + (unsigned long long)i * sizeof *segment);
    if (pread(fd, segment, sizeof *segment, at) == (ssize_t)sizeof *segment)
        return 1;
    snprintf(why, len, "cannot read program header %u: %s", i, strerror(errno));
    return 0;
}

/* Why an ELF file of `size` bytes open at fd cannot be loaded into this
 * process, or NULL. Checks only what dlopen would trust: the identification,
 * that every segment lies within the file (a segment past the end is mapped
 * all the same, and touching it raises SIGBUS), and that the dynamic section
 * lies inside a loaded segment (the loader reads it through the mapping). */
static const char *elf_problem(int fd, off_t size, char *why, size_t len)
{
    ElfW(Ehdr) header;
    if ((size_t)size < sizeof header ||
        pread(fd, &header, sizeof header, 0) != (ssize_t)sizeof header) {
        snprintf(why, len, "%lld bytes, too short for an ELF header", (long long)size);
        return why;
    }
    if (memcmp(header.e_ident, ELFMAG, SELFMAG) != 0)
        return "not an ELF file";
    const ElfW(Ehdr) *own = own_elf_header();
    const int own_class = sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32;
    const int own_data = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? ELFDATA2LSB : ELFDATA2MSB;
    if (header.e_ident[EI_CLASS] != own_class)
        return own_class == ELFCLASS64 ? "a 32-bit ELF file, this process is 64-bit"
                                       : "a 64-bit ELF file, this process is 32-bit";
    if (header.e_ident[EI_DATA] != own_data)
        return "an ELF file of the other byte order";
    if (own && header.e_machine != own->e_machine) {
        snprintf(why, len, "an ELF file for machine %u, this process runs on machine %u",
                 (unsigned)header.e_machine, (unsigned)own->e_machine);
        return why;
    }
    if (header.e_type != ET_DYN) {
        snprintf(why, len, "an ELF file of type %u, not a shared library", (unsigned)header.e_type);
        return why;
    }
    if (header.e_phentsize != sizeof(ElfW(Phdr)) || header.e_phnum == 0 ||
        header.e_phnum == PN_XNUM)
        return "an ELF file with a malformed program header table";
    const unsigned long long file_size = (unsigned long long)size;
    if (header.e_phoff > file_size ||
        (unsigned long long)header.e_phnum * sizeof(ElfW(Phdr)) > file_size - header.e_phoff) {
        snprintf(why, len, "%llu bytes, cut short: its program headers lie past the end",
                 file_size);
        return why;
    }
    /* Every segment with bytes in the file must find them there. */
    ElfW(Phdr) segment, dynamic = {.p_type = PT_NULL};
    unsigned loads = 0;
    for (unsigned i = 0; i < header.e_phnum; i++) {
        if (!read_segment(fd, &header, i, &segment, why, len))
            return why;
        if (segment.p_type == PT_LOAD) {
            loads++;
            if (segment.p_filesz > segment.p_memsz)
                return "an ELF file with a segment larger on disk than in memory";
        }
        if (segment.p_type == PT_DYNAMIC)
            dynamic = segment;
        if ((segment.p_type == PT_LOAD || segment.p_filesz > 0) &&
            (segment.p_offset > file_size || segment.p_filesz > file_size - segment.p_offset)) {
            snprintf(why, len, "%llu bytes, cut short: segment %u needs bytes up to %llu",
                     file_size, i,
                     (unsigned long long)segment.p_offset + (unsigned long long)segment.p_filesz);
            return why;
        }
    }
    if (loads == 0)
        return "an ELF file with no loadable segment";
    if (dynamic.p_type != PT_DYNAMIC)
        return NULL;
    /* The loader reads the dynamic section through the mapping: it must lie
     * in the file-backed part of a loaded segment. */
    for (unsigned i = 0; i < header.e_phnum; i++) {
        if (!read_segment(fd, &header, i, &segment, why, len))
            return why;
        if (segment.p_type == PT_LOAD && dynamic.p_vaddr >= segment.p_vaddr &&
            dynamic.p_vaddr - segment.p_vaddr <= segment.p_filesz &&
            dynamic.p_filesz <= segment.p_filesz - (dynamic.p_vaddr - segment.p_vaddr))
            return NULL;
    }
    return "an ELF file whose dynamic section lies outside its loaded segments";
}

/* Why the file at path cannot be a module, checked without running any of
 * it, or NULL when it looks loadable. The open never blocks (a FIFO would
 * block dlopen's own open for ever), and only a regular file is accepted. */
static const char *module_file_problem(const char *path, char *why, size_t len)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, len, "%s", strerror(errno));
        return why;
    }
    struct stat st;
    const char *problem = NULL;
    if (fstat(fd, &st) != 0) {
        snprintf(why, len, "%s", strerror(errno));
        problem = why;
    } else if (S_ISFIFO(st.st_mode)) {
        problem = "a FIFO, not a regular file";
    } else if (S_ISDIR(st.st_mode)) {
        problem = "a directory, not a regular file";
    } else if (!S_ISREG(st.st_mode)) {
        problem = "not a regular file";
    } else {
        problem = elf_problem(fd, st.st_size, why, len);
    }
    close(fd);
    return problem;
}

static const eplb_backend_module *load_module(const char *name, char *error, size_t error_len)
{
    char file[64], path[4096], dir[4096], why[512];
    snprintf(file, sizeof file, "libeplb_%s.so", name);
    const char *env_dir = getenv("EPLB_MODULE_DIR");
    if (env_dir && *env_dir)
        snprintf(dir, sizeof dir, "%s/", env_dir);
    else
        own_directory(dir, sizeof dir);
    snprintf(path, sizeof path, "%s%s", dir, file);
    /* Messages quote the path (and dlerror's text, which quotes it too) with
     * control bytes escaped: EPLB_MODULE_DIR comes from outside. */
    char shown[4096], reason_shown[1024];
    eplb_text_escape(shown, sizeof shown, path);

    const char *problem = module_file_problem(path, why, sizeof why);
    if (problem) {
        snprintf(error, error_len, "cannot load %s: %s", shown, problem);
        return NULL;
    }
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *reason = dlerror();
        snprintf(error, error_len, "cannot load %s: %s", shown,
                 reason ? eplb_text_escape(reason_shown, sizeof reason_shown, reason) : "unknown error");
        return NULL;
    }
    eplb_backend_module_get_fn get = (eplb_backend_module_get_fn)dlsym(handle, EPLB_MODULE_ENTRY);
    const eplb_backend_module *module = get ? get() : NULL;
    if (!module) {
        snprintf(error, error_len, "%s does not export %s", shown, EPLB_MODULE_ENTRY);
        dlclose(handle);
        return NULL;
    }
    if (module->api_version != EPLB_BACKEND_API_VERSION) {
        snprintf(error, error_len, "%s was built for backend API %d, this libeplb has %d: rebuild it",
                 shown, module->api_version, EPLB_BACKEND_API_VERSION);
        dlclose(handle);
        return NULL;
    }
    /* Modules stay loaded for the life of the process: instances point into them. */
    return module;
}

/* ---- opening a backend -------------------------------------------------- */

/* Held while a module is loaded and while an instance of any backend is
 * created and self-tested. Neither is safe from several threads at once:
 * dlopen runs the constructors of vendor runtimes, and OpenCL ICD loaders and
 * platforms (ocl-icd, PoCL) discover platforms and devices on first use
 * without a lock of their own, so concurrent first calls crash or find no
 * device. Creation is rare and short next to planning, which never takes
 * this lock. */
static pthread_mutex_t startup_lock = PTHREAD_MUTEX_INITIALIZER;

/* Module of each backend, loaded on the first request for that backend and
 * kept, with the reason when it could not be loaded. Under startup_lock. */
static const eplb_backend_module *modules[EPLB_REGISTRY_COUNT];
static int module_tried[EPLB_REGISTRY_COUNT];
static char module_errors[EPLB_REGISTRY_COUNT][1024];

/* eplb_registry_open with startup_lock held; for_auto: refuse a device that
 * is a CPU before the self-test (which is what compiles a module's kernels). */
static eplb_status open_locked(int index, int for_auto, eplb_backend **out, char *error,
                               size_t error_len)
{
    if (!module_tried[index]) {
        module_tried[index] = 1;
        modules[index] = index == EPLB_REGISTRY_CPU
                             ? eplb_cpu_backend_module()
                             : load_module(backend_names[index], module_errors[index],
                                           sizeof module_errors[index]);
    }
    const eplb_backend_module *module = modules[index];
    if (!module) {
        snprintf(error, error_len, "%s", module_errors[index]);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    /* Fault injection for tests (docs/reliability.md). */
    const char *inject = getenv("EPLB_TEST_FAIL_BACKEND");
    if (inject && strcmp(inject, backend_names[index]) == 0) {
        snprintf(error, error_len, "initialisation failure injected by EPLB_TEST_FAIL_BACKEND");
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    eplb_backend *backend = NULL;
    char why[512] = "";
    eplb_status st = module->create(&backend, why, sizeof why);
    /* A module may fill the whole buffer: never read past it. */
    why[sizeof why - 1] = '\0';
    if (st != EPLB_OK || !backend) {
        snprintf(error, error_len, "%s", why[0] ? why : "initialisation failed");
        return st == EPLB_OK ? EPLB_ERR_BACKEND_UNAVAILABLE : st;
    }
    if (backend->api_version != EPLB_BACKEND_API_VERSION) {
        snprintf(error, error_len, "instance built for backend API %d, expected %d",
                 backend->api_version, EPLB_BACKEND_API_VERSION);
        backend->iface->free(backend);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    /* auto prefers the cpu backend to another backend's CPU device; the
     * module has compiled nothing yet, so passing over it costs no build. */
    if (for_auto && index != EPLB_REGISTRY_CPU && backend->iface->is_accelerator &&
        !backend->iface->is_accelerator(backend)) {
        snprintf(error, error_len, "device %.*s is a CPU; the cpu backend is faster there",
                 (int)error_len - 1, backend->iface->device_name(backend));
        backend->iface->free(backend);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    if (index != EPLB_REGISTRY_CPU && (st = eplb_self_test(backend, error, error_len)) != EPLB_OK) {
        backend->iface->free(backend);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    *out = backend;
    return EPLB_OK;
}

static eplb_status open_backend(int index, int for_auto, eplb_backend **out, char *error,
                                size_t error_len)
{
    *out = NULL;
    if (index < 0 || index >= EPLB_REGISTRY_COUNT) {
        snprintf(error, error_len, "no backend %d", index);
        return EPLB_ERR_BACKEND_UNAVAILABLE;
    }
    pthread_mutex_lock(&startup_lock);
    eplb_status st = open_locked(index, for_auto, out, error, error_len);
    pthread_mutex_unlock(&startup_lock);
    return st;
}

eplb_status eplb_registry_open(int index, eplb_backend **out, char *error, size_t error_len)
{
    return open_backend(index, 0, out, error, error_len);
}

eplb_status eplb_registry_open_for_auto(int index, eplb_backend **out, char *error,
                                        size_t error_len)
{
    return open_backend(index, 1, out, error, error_len);
}

static int probe_result[EPLB_REGISTRY_COUNT];
static char probe_detail[EPLB_REGISTRY_COUNT][1024];
static pthread_once_t probe_once[EPLB_REGISTRY_COUNT] = {PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT,
                                                         PTHREAD_ONCE_INIT};

static void probe(int index)
{
    eplb_backend *backend = NULL;
    char error[1024] = "";
    if (eplb_registry_open(index, &backend, error, sizeof error) == EPLB_OK) {
        probe_result[index] = 1;
        /* The module's string: copied up to the room there is, never further. */
        snprintf(probe_detail[index], sizeof probe_detail[index], "%.*s",
                 (int)sizeof probe_detail[index] - 1, backend->iface->device_name(backend));
        backend->iface->free(backend);
    } else {
        probe_result[index] = 0;
        snprintf(probe_detail[index], sizeof probe_detail[index], "%s", error);
    }
}
static void probe_cuda(void) { probe(EPLB_REGISTRY_CUDA); }
static void probe_opencl(void) { probe(EPLB_REGISTRY_OPENCL); }
static void probe_cpu(void) { probe(EPLB_REGISTRY_CPU); }

int eplb_registry_probe(int index, const char **detail)
{
    static void (*const probes[EPLB_REGISTRY_COUNT])(void) = {probe_cuda, probe_opencl, probe_cpu};
    if (index < 0 || index >= EPLB_REGISTRY_COUNT)
        return 0;
    pthread_once(&probe_once[index], probes[index]);
    if (detail)
        *detail = probe_detail[index];
    return probe_result[index];
}
