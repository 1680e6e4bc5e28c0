#!/usr/bin/env python3
"""Regenerates the input files of tests/test_input.c (needs numpy).

good-*: the 3 x 8 matrix WEIGHTS (or WEIGHTS_INT) in every input format.
bad-*:  one malformed file per error the loader must name.
"""
import json
import os

import numpy as np

WEIGHTS = [[10, 0, 3.5, 7, 1, 0, 2.25, 40],
           [0, 0, 0, 0, 0, 0, 0, 0],
           [5, 5, 5, 5, 6, 6, 6, 0.125]]
WEIGHTS_INT = [[10, 0, 3, 7, 1, 0, 2, 40],
               [0, 0, 0, 0, 0, 0, 0, 0],
               [5, 5, 5, 5, 6, 6, 6, 16777216]]

here = os.path.dirname(os.path.abspath(__file__))


def write(name, data, mode="w"):
    with open(os.path.join(here, name), mode) as f:
        f.write(data)


def npy_bytes(array, version=None):
    import io
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, version=version)
    return buf.getvalue()


# ---- good files
write("good-comma.csv", "\n".join(", ".join(repr(float(v)) for v in row) for row in WEIGHTS) + "\n")
write("good-space.txt", "# layer loads, one layer per line\n\n" +
      "\r\n".join("\t ".join(str(v) for v in row) for row in WEIGHTS) + "\r\n\n")
write("good-sglang.json", json.dumps({"logical_count": WEIGHTS}))
write("good-array.json", json.dumps(WEIGHTS, indent=2))
half = [[v / 2 for v in row] for row in WEIGHTS]
write("good-sglang-windows.json", json.dumps({"logical_count": [half, half]}))
for dtype in ("float32", "float64"):
    write(f"good-{dtype}.npy", npy_bytes(np.array(WEIGHTS, dtype=dtype)), "wb")
for dtype in ("int32", "int64"):
    write(f"good-{dtype}.npy", npy_bytes(np.array(WEIGHTS_INT, dtype=dtype)), "wb")
write("good-v2.npy", npy_bytes(np.array(WEIGHTS, dtype="float32"), version=(2, 0)), "wb")

# ---- bad text
write("bad-ragged.csv", "1, 2, 3\n4, 5\n")
write("bad-token.csv", "1, 2, 3\n4, x5, 6\n")
write("bad-nan.txt", "1 2 3\n4 nan 6\n")
write("bad-inf.txt", "1 2 inf\n")
write("bad-negative.csv", "1, 2, 3\n4, -5, 6\n")
write("bad-huge.txt", "1 2 1e39\n")
write("bad-empty.csv", "")
write("bad-comments.txt", "# nothing but a comment\n\n")
write("bad-double-comma.csv", "1,,3\n")
write("bad-trailing-comma.csv", "1, 2, 3,\n")
# ---- bad JSON
write("bad-syntax.json", '{"logical_count": [[1, 2], [3, 4]]')
write("bad-ragged.json", '{"logical_count": [[1, 2, 3], [4, 5]]}')
write("bad-string.json", '[[1, 2], [3, "4"]]')
write("bad-nokey.json", '{"counts": [[1, 2]]}')
write("bad-negative.json", '[[1, 2], [3, -4]]')
write("bad-empty.json", '[]')
write("bad-empty-row.json", '[[]]')
write("bad-scalar.json", '[1, 2, 3]')
# ---- bad .npy
write("bad-fortran.npy", npy_bytes(np.asfortranarray(np.array(WEIGHTS, dtype="float32"))), "wb")
write("bad-float16.npy", npy_bytes(np.array(WEIGHTS, dtype="float16")), "wb")
write("bad-bigendian.npy", npy_bytes(np.array(WEIGHTS, dtype=">f4")), "wb")
write("bad-3d.npy", npy_bytes(np.zeros((2, 3, 4), dtype="float32")), "wb")
write("bad-1d.npy", npy_bytes(np.zeros(5, dtype="float32")), "wb")
write("bad-zero-rows.npy", npy_bytes(np.zeros((0, 8), dtype="float32")), "wb")
write("bad-truncated.npy", npy_bytes(np.array(WEIGHTS, dtype="float32"))[:-5], "wb")
write("bad-trailing.npy", npy_bytes(np.array(WEIGHTS, dtype="float32")) + b"\0\0\0\0", "wb")
write("bad-nan.npy", npy_bytes(np.array([[1, float("nan")]], dtype="float64")), "wb")
write("bad-negative.npy", npy_bytes(np.array([[1, -2]], dtype="int64")), "wb")
write("bad-magic.npy", "1 2 3\n")
good = npy_bytes(np.array(WEIGHTS, dtype="float32"))
write("bad-header.npy", good[:10] + good[10:].replace(b"'shape'", b"'shope'"), "wb")
write("bad-short-header.npy", good[:30], "wb")


def npy_with_dict(header_dict, data):
    """A .npy file (format 1.0) with header_dict as its header text verbatim, padded as
    numpy pads it; for headers numpy itself would never write."""
    text = header_dict.encode("ascii")
    padded = text + b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(padded).to_bytes(2, "little") + padded + data


# ---- bad input that the reader refuses (issue 19)
write("bad-hex.csv", "1, 0x1p3, 2\n")
write("bad-nul.csv", "1, 2\n3,\0 4\n")
payload = good[128:]  # the 3 x 8 float32 data of good-float32.npy
write("bad-duplicate-descr.npy", npy_with_dict(
    "{'descr': '<f4', 'fortran_order': False, 'descr': '<f8', 'shape': (3, 8), }", payload), "wb")
write("bad-unknown-key.npy", npy_with_dict(
    "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 8), 'order': 'C', }", payload), "wb")
