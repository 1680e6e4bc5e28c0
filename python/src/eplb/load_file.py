"""Load files for `python -m eplb plan`: the formats the C tool reads (docs/cli.md,
"Input formats") and SGLang's .pt dumps, read with torch where it is installed."""
import io
import json
import math
import re

import numpy as np

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
# torch.save before PyTorch 1.6: a pickle that starts with torch's magic number.
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_BOM = b"\xef\xbb\xbf"
# A plain decimal: 12, +0.5, 3., .5, 1e3, 2E-1 (no hexadecimal, inf or nan).
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_SEPARATOR = re.compile(r"[ \t]*,[ \t]*|[ \t]+")


class InputError(Exception):
    """The load file cannot be read as loads; the message says why."""


def shown(text):
    """text with every byte outside printable ASCII written as \\xHH, as the C tool
    prints names and tokens, so that neither can drive the terminal."""
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    return "".join(chr(b) if 0x20 <= b < 0x7F else "\\x%02x" % b for b in data)


def detect(name, data):
    """The format of a load file: "npy", "pt", "npz", "json" or "text"; the
    content decides first, then the name's extension."""
    lower = name.lower()
    if data.startswith(_NPY_MAGIC):
        return "npy"
    if data.startswith(_ZIP_MAGIC):
        return "npz" if lower.endswith(".npz") else "pt"
    if data.startswith(_TORCH_LEGACY_MAGIC):
        return "pt"
    text = data[len(_BOM):] if data.startswith(_BOM) else data
    first = text.lstrip()[:1]
    if first in (b"{", b"["):
        return "json"
    for ext, kind in ((".npy", "npy"), (".json", "json"), (".pt", "pt"), (".pth", "pt")):
        if lower.endswith(ext):
            return kind
    return "text"


def _value_problem(where, v):
    """What is wrong with one load (the C tool's words), or None."""
    if math.isnan(v):
        return "%s is NaN" % where
    if math.isinf(v):
        return "%s is infinite" % where
    if v < 0:
        return "%s is negative (%g); loads must be >= 0" % (where, v)
    with np.errstate(over="ignore"):
        beyond = v > _FLOAT32_MAX and np.isinf(np.float32(v))
    if beyond:
        return "%s (%g) is beyond the float32 range" % (where, v)
    return None


def _checked(arr, where):
    """arr as float64 after checking each value is a finite number >= 0 within
    float32's range; where(index) names a value in the message."""
    with np.errstate(over="ignore"):
        values = np.asarray(arr, dtype=np.float64)
        bad = ~np.isfinite(values) | (values < 0) | np.isinf(values.astype(np.float32))
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(_value_problem(where(index), float(values[index])))
    return values


def _matrix(arr, what):
    """A [layers, experts] float32 array from a 2-D array, or from a 3-D window
    [T, layers, experts] summed over T in float64 (as SGLang's recorder dumps)."""
    if arr.ndim == 3:
        values = _checked(arr, lambda i: "%s[%d][%d][%d]" % ((what,) + i))
        if values.shape[0] == 0:
            raise InputError("%s has no window to sum (shape %s)" % (what, values.shape))
        values = _checked(values.sum(axis=0),
                          lambda i: "the summed load of layer %d, expert %d" % i)
    elif arr.ndim == 2:
        values = _checked(arr, lambda i: "%s[%d][%d]" % ((what,) + i))
    else:
        raise InputError("%s must be 2-D [layers][experts] or 3-D [windows][layers][experts], "
                         "got shape %s" % (what, tuple(arr.shape)))
    if values.shape[0] == 0 or values.shape[1] == 0:
        raise InputError("no loads (shape %s): at least one layer and one expert"
                         % (tuple(values.shape),))
    return values.astype(np.float32)


def _read_npy(data):
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # numpy says what is wrong with the header or data
        raise InputError("not a readable .npy file: %s" % exc)
    if arr.dtype.kind not in "iuf":
        raise InputError(".npy dtype %s: loads must be integers or real numbers" % arr.dtype)
    if arr.ndim != 2:
        raise InputError(".npy array of shape %s: loads are 2-D [layers][experts]"
                         % (tuple(arr.shape),))
    return _matrix(arr, "element "), "npy"


def _torch_error(message):
    return InputError("a PyTorch file (torch.save), such as SGLang's expert-distribution dump: "
                      + message)


def load_torch(data, error, without_torch):
    """(torch, the object a torch.save file holds), loaded safely (weights_only).
    error(message) makes the exception raised; without_torch says what to do
    where torch is not installed."""
    try:
        import torch
    except ImportError:
        raise error("reading it needs torch, which is not installed (pip install torch); "
                    + without_torch)
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except TypeError:
        raise error("torch %s cannot load it safely (weights_only): use torch >= 1.13"
                    % torch.__version__)
    except Exception as exc:  # torch's unpickler says what it refused
        raise error("torch.load failed: %s" % (str(exc).splitlines() or [exc])[0])
    return torch, obj


def _read_pt(data):
    torch, obj = load_torch(data, _torch_error,
                            "or save its logical_count with numpy.save and plan the .npy file")
    if isinstance(obj, dict):
        if "logical_count" not in obj:
            raise _torch_error("it holds no 'logical_count' (keys: %s)"
                               % ", ".join(sorted(repr(k) for k in obj)))
        count, kind, what = obj["logical_count"], "sglang-pt", "logical_count"
    else:
        count, kind, what = obj, "pt-tensor", "tensor"
    if not isinstance(count, torch.Tensor):
        raise _torch_error("%s is a %s, not a tensor" % (what, type(count).__name__))
    if count.dtype.is_complex or count.dtype == torch.bool:
        raise _torch_error("%s has dtype %s: loads must be integers or real numbers"
                           % (what, count.dtype))
    return _matrix(count.detach().to(torch.float64).numpy(), what), kind


def _reject_constant(name):
    raise InputError("JSON value %s: loads must be finite numbers" % name)


def _nested(value, depth, where):
    """A JSON array of `depth` levels of numbers as a list of lists, with its shape
    checked (no ragged rows, numbers only)."""
    if depth == 0:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError("%s is %s, not a number" % (where, json.dumps(value)[:40]))
        return value
    if not isinstance(value, list):
        raise InputError("%s is not an array" % where)
    rows = [_nested(v, depth - 1, "%s[%d]" % (where, i)) for i, v in enumerate(value)]
    if depth > 1 and rows:
        width = len(rows[0])
        for i, row in enumerate(rows):
            if len(row) != width:
                raise InputError("ragged rows: %s[%d] has %d values but %s[0] has %d"
                                 % (where, i, len(row), where, width))
    return rows


def _depth(value):
    depth = 0
    while isinstance(value, list) and value:
        depth, value = depth + 1, value[0]
    return depth


def _read_json(data):
    try:
        obj = json.loads(data.decode("utf-8-sig"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise InputError("not UTF-8 text: %s" % exc)
    except ValueError as exc:
        raise InputError("malformed JSON: %s" % exc)
    if isinstance(obj, dict):
        if "logical_count" not in obj:
            raise InputError("a JSON object without 'logical_count' (SGLang's format); a plain "
                             "2-D array is read too")
        value, kind, what = obj["logical_count"], "sglang-json", "logical_count"
        depth = _depth(value)
        if depth not in (2, 3):
            raise InputError("logical_count must be 2-D [layers][experts] or 3-D "
                             "[windows][layers][experts]")
    elif isinstance(obj, list):
        value, kind, what, depth = obj, "json-array", "array", 2
    else:
        raise InputError("JSON %s: expected a 2-D array or SGLang's {\"logical_count\": ...}"
                         % type(obj).__name__)
    rows = _nested(value, depth, what)
    with np.errstate(over="ignore"):
        arr = np.array(rows, dtype=np.float64) if rows else np.zeros((0, 0))
    return _matrix(arr, what), kind


def _read_text(data):
    if b"\0" in data:
        raise InputError("NUL byte at offset %d: a text or JSON load file holds none"
                         % data.index(b"\0"))
    text = data[len(_BOM):] if data.startswith(_BOM) else data
    try:
        lines = text.decode("ascii").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError("line %d: byte 0x%02x is not part of a number"
                         % (text[:exc.start].count(b"\n") + 1, text[exc.start]))
    rows, first = [], None
    for number, line in enumerate(lines, 1):
        line = line.strip(" \t\r")
        if not line or line.startswith("#"):
            continue
        row = []
        tokens = _SEPARATOR.split(line)
        for field, token in enumerate(tokens, 1):
            where = "line %d, field %d" % (number, field)
            if not token:
                if field == len(tokens):
                    raise InputError("line %d ends with a comma (empty field %d)"
                                     % (number, field))
                raise InputError("%s is empty (leading or doubled comma)" % where)
            if _DECIMAL.match(token) or token.lstrip("+-").lower() in ("nan", "inf", "infinity"):
                value = float(token)
            elif token.lstrip("+-")[:2].lower() == "0x":
                raise InputError("%s: hexadecimal number '%s' is not accepted; write loads in "
                                 "decimal" % (where, shown(token[:60])))
            else:
                raise InputError("%s: non-numeric token '%s'" % (where, shown(token[:60])))
            problem = _value_problem(where, value)
            if problem:
                raise InputError(problem)
            row.append(value)
        if first is None:
            first = (number, len(row))
        elif len(row) != first[1]:
            raise InputError("ragged rows: line %d has %d values but line %d (the first layer) "
                             "has %d" % (number, len(row), first[0], first[1]))
        rows.append(row)
    if not rows:
        raise InputError("no data: the file holds only blank or comment lines")
    return _matrix(np.array(rows, dtype=np.float64), "value"), "text"


def read_loads(name, data):
    """(weight float32 [layers, experts], format name) from the bytes of a load
    file; raises InputError naming what is wrong."""
    if not data:
        raise InputError("the file is empty")
    kind = detect(name, data)
    if kind == "npz":
        raise InputError("a NumPy .npz archive, which is not read: save the array with "
                         "numpy.save as a .npy file")
    return {"npy": _read_npy, "pt": _read_pt, "json": _read_json, "text": _read_text}[kind](data)
