"""Plan files of `python -m eplb plan`, as the C tool writes them (docs/cli.md,
"Output file"): the statistics, the "eplb-plan v2" JSON, SGLang's
{"physical_to_logical_map": ...}, and the file replaced only once all is well;
and plan files read back, for --previous."""
import json
import os
import stat
import sys
import tempfile

import numpy as np

from .evaluation import evaluate
from .load_file import detect, load_torch, shown


class Stats:
    """Plan statistics (SPEC.md section 8), summed in the C tool's order so that
    both write the same numbers; the bound of the policy (section 12) and the
    duplicates (section 11.1) come from the library's eplb_evaluate, as there."""

    def __init__(self, weight, phy2log, logcnt, shape, policy):
        layers, experts = weight.shape
        gpus, replicas = shape["gpus"], shape["replicas"]
        w = weight.astype(np.float64)
        per_slot = (np.take_along_axis(w, phy2log, axis=1)
                    / np.take_along_axis(logcnt, phy2log, axis=1).astype(np.float64))
        # cumsum adds in index order, as the C loops do (numpy's sum would pair).
        gpu_load = np.cumsum(per_slot.reshape(layers, gpus, replicas // gpus), axis=2)[:, :, -1]
        mean = np.cumsum(gpu_load, axis=1)[:, -1] / gpus
        worst = gpu_load.max(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            balance = np.where(worst > 0, mean / worst, 1.0)
        self.min_layer = int(np.argmin(balance))
        self.balancedness_min_layer = float(min(1.0, balance[self.min_layer]))
        if self.balancedness_min_layer == 1.0:
            self.min_layer = 0
        evaluation = evaluate(weight, phy2log, shape["groups"], shape["nodes"], gpus,
                              policy=policy)
        self.max_load_per_layer = [float(x) for x in worst]
        self.bound_per_layer = [float(x) for x in evaluation.layer_floor]
        self.mean_load_sum = float(np.cumsum(mean)[-1])
        self.max_load_sum = float(np.cumsum(worst)[-1])
        self.bound = float(np.cumsum(self.bound_per_layer)[-1])
        self.balancedness = (self.mean_load_sum / self.max_load_sum
                             if self.max_load_sum > 0 else 1.0)
        self.balancedness_bound = self.mean_load_sum / self.bound if self.bound > 0 else 1.0
        self.bound_gap = self.max_load_sum / self.bound - 1.0 if self.bound > 0 else 0.0
        self.bound_exact = evaluation.bound_exact
        self.global_balancedness_bound = evaluation.global_balancedness_bound
        self.duplicates = evaluation.duplicates


class PlanFileError(Exception):
    """A file that cannot be read as a plan; the message names it and says why."""


def _plan_matrix(matrix, key):
    """The rectangular integer matrix under key as int64 [layers, replicas]; the
    C tool's reader (src/tools/lib/plan_read.c) refuses the same faults."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(matrix, torch.Tensor):
        if matrix.is_floating_point() or matrix.is_complex() or matrix.dim() != 2:
            raise ValueError('"%s" must be a [layers][replicas] tensor of integers, got %s %s'
                             % (key, matrix.dtype, tuple(matrix.shape)))
        matrix = matrix.tolist()
    if not isinstance(matrix, list) or not matrix or not isinstance(matrix[0], list) \
            or not matrix[0]:
        raise ValueError('"%s" must be a non-empty array of non-empty arrays [layers][replicas]'
                         % key)
    replicas = len(matrix[0])
    for l, row in enumerate(matrix):
        if not isinstance(row, list) or len(row) != replicas:
            raise ValueError('"%s"[%d] is not an array of %d entries like row 0'
                             % (key, l, replicas))
        for q, x in enumerate(row):
            if not isinstance(x, int) or isinstance(x, bool):
                raise ValueError('"%s"[%d][%d] is not an integer' % (key, l, q))
    try:
        return np.array(matrix, dtype=np.int64)
    except OverflowError:
        raise ValueError('"%s" holds an integer beyond int64' % key) from None


def read_plan(path):
    """(phy2log int64 [layers, replicas], format) of a plan file: an eplb plan
    file ("eplb-plan": its "phy2log"), SGLang's {"physical_to_logical_map": ...}
    as JSON ("sglang") or as a torch.save .pt file ("sglang-pt", read with
    torch). Raises PlanFileError."""
    def error(message):
        return PlanFileError("%s: %s" % (shown(path), message))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise error("cannot read the plan: %s" % exc.strerror) from None
    if detect(path, data) == "pt":
        _, record = load_torch(data, error, "or save its physical_to_logical_map as JSON "
                                            "{\"physical_to_logical_map\": ...}")
        kind = "sglang-pt"
    else:
        try:
            record = json.loads(data)
        except ValueError as exc:
            raise error("invalid JSON: %s" % exc) from None
        kind = None
    for key, name in (("physical_to_logical_map", "sglang"), ("phy2log", "eplb-plan")):
        if isinstance(record, dict) and key in record:
            try:
                return _plan_matrix(record[key], key), kind or name
            except ValueError as exc:
                raise error(str(exc)) from None
    raise error('not a plan: expected a JSON object with "phy2log" (eplb plan -o) or '
                '"physical_to_logical_map" (SGLang)')


def json_real(x):
    """x as jansson writes a real with JSON_REAL_PRECISION(15)."""
    text = "%.15g" % x
    if "." not in text and "e" not in text:
        text += ".0"
    if "e" in text:
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else ""
        text = "%se%s%s" % (mantissa, sign, exponent.lstrip("+-").lstrip("0") or "0")
    return text


def float32_real(x):
    """A float32 option as its shortest decimal that reads back to it (0.2f: 0.2)."""
    for digits in range(6, 10):
        text = "%.*g" % (digits, x)
        if np.float32(float(text)) == np.float32(x):
            break
    return json_real(float(text))


def _string(text):
    try:
        return json.dumps(text, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a file name that is not UTF-8
        return json.dumps(text).encode("ascii")


def _matrix(rows):
    return b"[" + b",".join(b"[" + ",".join(map(str, r)).encode() + b"]"
                            for r in rows.tolist()) + b"]"


def _log2phy(phy2log, logcnt):
    """Each expert's slots in ascending order, one list per expert (no padding)."""
    layers = []
    for p2l, cnt in zip(phy2log, logcnt):
        slots = np.argsort(p2l, kind="stable").tolist()
        ends = np.cumsum(cnt).tolist()
        starts = [0] + ends[:-1]
        layers.append(b"[" + b",".join(
            b"[" + ",".join(map(str, slots[a:b])).encode() + b"]"
            for a, b in zip(starts, ends)) + b"]")
    return b"[" + b",".join(layers) + b"]"


def eplb_json(record):
    """The "eplb-plan v2" file (docs/cli.md) as bytes. record: a dict with input,
    input_format, shape (a dict), options (a dict), policy, phy2log, logcnt,
    stats (a Stats), plan_us, backend, device, version, and with --previous
    previous (its file name) and moves (an eplb.Moves from it)."""
    o, s = record["options"], record["stats"]
    seed = o["seed"] if o["seed"] <= (1 << 63) - 1 else str(o["seed"])
    shape = b",".join(b'"%s":%d' % (k.encode(), record["shape"][k])
                      for k in ("layers", "experts", "replicas", "groups", "nodes", "gpus"))
    options = b'"candidates":%d,"iterations":%d,"noise":%s,"tolerance":%s,"seed":%s,"policy":%s' % (
        o["candidates"], o["iterations"], float32_real(o["noise"]).encode(),
        float32_real(o["tolerance"]).encode(), json.dumps(seed).encode(), _string(o["policy"]))
    # As the C tool: each named only when on.
    if o.get("refine", 0) > 0:
        options += b',"refine":%d' % o["refine"]
    if o.get("distinct"):
        options += b',"distinct":true'
    previous = record.get("previous")
    if previous is not None and o.get("slack", 0.0) > 0.0:
        options += b',"slack":' + float32_real(o["slack"]).encode()
    moves = record.get("moves")

    def reals(values):
        return b"[" + b",".join(json_real(v).encode() for v in values) + b"]"

    stats = b",".join([
        b'"balancedness":' + json_real(s.balancedness).encode(),
        b'"balancedness_min_layer":' + json_real(s.balancedness_min_layer).encode(),
        b'"min_layer":%d' % s.min_layer,
        b'"balancedness_bound":' + json_real(s.balancedness_bound).encode(),
        b'"bound":' + json_real(s.bound).encode(),
        b'"bound_per_layer":' + reals(s.bound_per_layer),
        b'"max_load_sum":' + json_real(s.max_load_sum).encode(),
        b'"max_load_per_layer":' + reals(s.max_load_per_layer),
        b'"mean_load_sum":' + json_real(s.mean_load_sum).encode(),
        b'"bound_gap":' + json_real(s.bound_gap).encode(),
        b'"bound_exact":' + (b"true" if s.bound_exact else b"false"),
        b'"global_balancedness_bound":' + json_real(s.global_balancedness_bound).encode(),
        b'"duplicates":%d' % s.duplicates,
    ] + ([] if moves is None else [
        b'"moved_slots":%d' % moves.moved_slots,
        b'"max_moved_per_gpu":%d' % moves.max_moved_per_gpu,
        b'"cross_node_moves":' + (b"null" if moves.cross_node_moves is None
                                  else b"%d" % moves.cross_node_moves),
    ]) + [
        b'"plan_us":' + json_real(record["plan_us"]).encode(),
        b'"backend":' + _string(record["backend"]),
        b'"device":' + _string(record["device"]),
    ])
    return b"".join([
        b'{"format":"eplb-plan v2","version":', _string(record["version"]),
        b',"input":', _string(record["input"]),
        b',"input_format":', _string(record["input_format"]),
        b',"shape":{', shape, b'},"options":{', options, b'},"policy":', _string(record["policy"]),
        b"" if previous is None else b',"previous":' + _string(previous),
        b',"phy2log":', _matrix(record["phy2log"]),
        b',"log2phy":', _log2phy(record["phy2log"], record["logcnt"]),
        b',"logcnt":', _matrix(record["logcnt"]),
        b',"stats":{', stats, b"}}\n"])


def sglang_json(phy2log):
    """SGLang's --init-expert-location file: the plan's phy2log and nothing else."""
    return b'{"physical_to_logical_map":' + _matrix(phy2log) + b"}\n"


class OutputError(Exception):
    """The plan file cannot be written; the message says why."""


class OutputFile:
    """A plan file written beside its target and renamed over it by commit(), so
    that a failed run leaves no file created or changed. "-" is standard output;
    an existing path that is not a regular file (a device, a FIFO) is written in
    place; a symbolic link is written through."""

    def __init__(self, path):
        self.path, self.temporary = path, None
        if path == "-":
            self.target = None
            return
        self.target = os.path.realpath(path)
        if os.path.islink(self.target):
            raise OutputError("cannot write %s: a loop of symbolic links" % path)
        try:
            self.existing = os.stat(self.target)
        except FileNotFoundError:
            self.existing = None
        except OSError as exc:
            raise OutputError("cannot write %s: %s" % (path, exc.strerror))

    def write(self, data):
        try:
            if self.target is None:
                sys.stdout.flush()
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            elif self.existing is not None and not stat.S_ISREG(self.existing.st_mode):
                with open(self.target, "wb") as f:
                    f.write(data)
            else:
                self._write_temporary(data)
        except OSError as exc:
            self.discard()
            raise OutputError("cannot write %s: write failed: %s" % (self.path, exc.strerror))

    def _write_temporary(self, data):
        fd, self.temporary = tempfile.mkstemp(prefix=".eplb-", dir=os.path.dirname(self.target))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if self.existing is not None:
            os.chmod(self.temporary, stat.S_IMODE(self.existing.st_mode))
            try:
                os.chown(self.temporary, self.existing.st_uid, self.existing.st_gid)
            except OSError:
                pass  # not allowed: the file becomes the caller's, as an editor leaves it
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.temporary, 0o666 & ~umask)

    def commit(self):
        if self.temporary:
            try:
                os.replace(self.temporary, self.target)
            except OSError as exc:
                self.discard()
                raise OutputError("cannot write %s: %s" % (self.path, exc.strerror))
            self.temporary = None

    def discard(self):
        if self.temporary:
            try:
                os.unlink(self.temporary)
            except OSError:
                pass
            self.temporary = None
