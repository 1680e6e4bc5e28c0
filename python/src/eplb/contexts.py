"""One libeplb context per (backend, device) per thread: contexts are not
thread-safe, and creating one opens and self-tests its backend."""
import ctypes
import os
import threading

from . import _library
from .errors import EplbError

_lib = _library.lib
_local = threading.local()


class Context:
    """Owns an eplb_context; freed when the last reference goes."""

    def __init__(self, backend):
        handle = ctypes.c_void_p()
        status = _lib.eplb_context_create(ctypes.byref(handle),
                                          backend.encode() if backend else None)
        if status != 0:
            raise EplbError(status, _library.text(_lib.eplb_last_error()))
        self.handle = handle
        self.backend = _library.text(_lib.eplb_context_backend(handle))
        self.device = _library.text(_lib.eplb_context_device(handle))
        # Device calls only: the CUDA stream (its handle) of the last call, and
        # whether its status is still unchecked (check=False).
        self.last_stream = None
        self.unchecked = False

    def fail(self, status):
        """Raises EplbError with this context's last message."""
        raise EplbError(status, _library.text(_lib.eplb_context_last_error(self.handle)))

    def __del__(self):
        handle = getattr(self, "handle", None)
        if handle and _lib is not None:
            _lib.eplb_context_free(handle)
            self.handle = None


def _contexts():
    cache = getattr(_local, "contexts", None)
    if cache is None:
        cache = _local.contexts = {}
    return cache


def host_context(backend):
    """This thread's context for host arrays; backend None follows EPLB_BACKEND, else auto."""
    key = ("host", backend, None if backend else os.environ.get("EPLB_BACKEND", ""))
    cache = _contexts()
    ctx = cache.get(key)
    if ctx is None:
        ctx = cache[key] = Context(backend)
    return ctx


def cuda_context(torch, device_index):
    """This thread's cuda context for one GPU, created while that GPU is current."""
    key = ("cuda", device_index)
    cache = _contexts()
    ctx = cache.get(key)
    if ctx is None:
        with torch.cuda.device(device_index):
            ctx = Context("cuda")
        cache[key] = ctx
    return ctx


def existing_cuda_context(device_index):
    """This thread's cuda context for that GPU, or None if it made none."""
    return _contexts().get(("cuda", device_index))


def clear():
    """Frees this thread's contexts (the next call creates fresh ones)."""
    _contexts().clear()
