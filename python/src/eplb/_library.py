"""Loads libeplb with ctypes and declares the C API's signatures (include/eplb/eplb.h)."""
import ctypes
import ctypes.util
import os

_HERE = os.path.dirname(os.path.abspath(__file__))


# Major version this binding was written for; the C API is stable within it.
_ABI_MAJOR = 0


class Options(ctypes.Structure):
    """struct eplb_options."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("candidates", ctypes.c_int32),
        ("iterations", ctypes.c_int32),
        ("noise", ctypes.c_float),
        ("tolerance", ctypes.c_float),
        ("seed", ctypes.c_uint64),
        ("policy", ctypes.c_int),
        ("refine", ctypes.c_int32),
        ("distinct", ctypes.c_int32),
        ("slack", ctypes.c_float),
    ]


class Shape(ctypes.Structure):
    """struct eplb_shape."""

    _fields_ = [
        ("layers", ctypes.c_int64),
        ("experts", ctypes.c_int64),
        ("replicas", ctypes.c_int64),
        ("groups", ctypes.c_int64),
        ("nodes", ctypes.c_int64),
        ("gpus", ctypes.c_int64),
    ]


class Moves(ctypes.Structure):
    """struct eplb_moves."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("moved_slots", ctypes.c_int64),
        ("max_moved_per_gpu", ctypes.c_int64),
        ("cross_node_moves", ctypes.c_int64),
    ]


class Evaluation(ctypes.Structure):
    """struct eplb_evaluation."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("policy", ctypes.c_int),
        ("bound_exact", ctypes.c_int32),
        ("balancedness", ctypes.c_double),
        ("balancedness_min_layer", ctypes.c_double),
        ("min_layer", ctypes.c_int64),
        ("mean_load_sum", ctypes.c_double),
        ("max_load_sum", ctypes.c_double),
        ("bound", ctypes.c_double),
        ("balancedness_bound", ctypes.c_double),
        ("bound_gap", ctypes.c_double),
        ("global_balancedness_bound", ctypes.c_double),
        ("duplicates", ctypes.c_int64),
    ]


def _candidate_paths():
    """Where libeplb may be, in the order documented in docs/python.md."""
    explicit = os.environ.get("EPLB_LIBRARY", "")
    if explicit:
        if os.path.isdir(explicit):
            explicit = os.path.join(explicit, "libeplb.so")
        return [explicit], True
    paths = [os.path.join(_HERE, "libeplb.so")]
    system = ctypes.util.find_library("eplb")
    if system:
        paths.append(system)
    return paths, False


def _load():
    paths, explicit = _candidate_paths()
    errors = []
    for path in paths:
        if not explicit and os.path.sep in path and not os.path.exists(path):
            errors.append("%s: not found" % path)
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as exc:
            errors.append("%s: %s" % (path, exc))
    hint = ("EPLB_LIBRARY is set: check that it names libeplb.so or its folder"
            if explicit else
            "install the package with 'pip install ./python' from the eplb checkout, "
            "or set EPLB_LIBRARY to a built libeplb.so")
    raise ImportError("eplb: cannot load libeplb (%s); %s" % ("; ".join(errors), hint))


def _declare(lib):
    c_char_p_p = ctypes.POINTER(ctypes.c_char_p)
    ctx_p = ctypes.c_void_p
    i64_p = ctypes.POINTER(ctypes.c_int64)
    sigs = {
        "eplb_version_number": (ctypes.c_uint, []),
        "eplb_version_string": (ctypes.c_char_p, []),
        "eplb_status_string": (ctypes.c_char_p, [ctypes.c_int]),
        "eplb_options_init": (None, [ctypes.c_void_p]),
        "eplb_shape_check": (ctypes.c_int, [ctypes.POINTER(Shape), c_char_p_p]),
        "eplb_context_create": (ctypes.c_int, [ctypes.POINTER(ctx_p), ctypes.c_char_p]),
        "eplb_context_free": (None, [ctx_p]),
        "eplb_context_backend": (ctypes.c_char_p, [ctx_p]),
        "eplb_context_device": (ctypes.c_char_p, [ctx_p]),
        "eplb_context_last_error": (ctypes.c_char_p, [ctx_p]),
        "eplb_last_error": (ctypes.c_char_p, []),
        "eplb_rebalance": (ctypes.c_int, [ctx_p, ctypes.c_void_p, ctypes.POINTER(Shape),
                                          ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                          ctypes.c_void_p, ctypes.c_int64, i64_p]),
        "eplb_rebalance_device": (ctypes.c_int, [ctx_p, ctypes.c_void_p, ctypes.POINTER(Shape),
                                                 ctypes.c_void_p, ctypes.c_void_p,
                                                 ctypes.c_void_p, ctypes.c_void_p,
                                                 ctypes.c_int64, ctypes.c_void_p]),
        "eplb_device_status": (ctypes.c_int, [ctx_p, ctypes.c_void_p]),
        "eplb_backend_count": (ctypes.c_int, []),
        "eplb_backend_name": (ctypes.c_char_p, [ctypes.c_int]),
        "eplb_backend_available": (ctypes.c_int, [ctypes.c_int, c_char_p_p]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


def _declare_later(name, restype, argtypes):
    """A C function declared on its first call, so that `import eplb` works with a
    library that predates it and only a call that needs it says so."""
    declared = []

    def call(*args):
        if not declared:
            try:
                fn = getattr(lib, name)
            except AttributeError:
                raise RuntimeError("eplb: %s (libeplb %s) has no %s: rebuild or reinstall the "
                                   "package" % (path, version, name)) from None
            fn.restype, fn.argtypes = restype, argtypes
            declared.append(fn)
        return declared[0](*args)
    return call


lib, path = _load()
_declare(lib)

_i64_p = ctypes.POINTER(ctypes.c_int64)
eplb_rebalance_incremental = _declare_later(
    "eplb_rebalance_incremental", ctypes.c_int,
    [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(Shape), ctypes.c_void_p, ctypes.c_void_p,
     ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, _i64_p])
_double_p = ctypes.POINTER(ctypes.c_double)
eplb_evaluate = _declare_later(
    "eplb_evaluate", ctypes.c_int,
    [ctypes.c_void_p, ctypes.POINTER(Shape), ctypes.c_int, ctypes.c_void_p,
     ctypes.POINTER(Evaluation), _double_p, _double_p, _double_p])
eplb_device_log2phy_width = _declare_later(
    "eplb_device_log2phy_width", ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p, _i64_p])
# eplb_rebalance_device's log2phy_width that lets the device choose the width.
LOG2PHY_WIDTH_NEEDED = -1
eplb_moves_init = _declare_later("eplb_moves_init", None, [ctypes.POINTER(Moves)])
eplb_count_moves = _declare_later(
    "eplb_count_moves", ctypes.c_int,
    [ctypes.POINTER(Shape), ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(Moves)])

version_number = lib.eplb_version_number()
version = lib.eplb_version_string().decode()
if version_number // 10000 != _ABI_MAJOR:
    raise ImportError("eplb: %s is libeplb %s, this package needs major version %d"
                      % (path, version, _ABI_MAJOR))


def text(ptr):
    """A C string from the library as str ('' for NULL)."""
    return ptr.decode("utf-8", "replace") if ptr else ""


def new_options():
    """eplb_options filled by eplb_options_init.

    The struct lives in a buffer larger than this binding's view of it, so a
    library whose struct grew cannot write past it; a size mismatch is then an
    ImportError-style failure rather than memory corruption."""
    buf = ctypes.create_string_buffer(256)
    lib.eplb_options_init(buf)
    opts = Options.from_buffer(buf)
    if opts.struct_size != ctypes.sizeof(Options):
        raise RuntimeError("eplb: %s has a %d-byte eplb_options, this package expects %d: "
                           "rebuild or reinstall the package" % (path, opts.struct_size,
                                                                 ctypes.sizeof(Options)))
    return opts  # from_buffer keeps buf alive
