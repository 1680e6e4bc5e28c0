"""python -m eplb plot: a picture of a plan's per-layer GPU loads on a load file
(docs/python.md, "python -m eplb plot"). matplotlib is an optional extra
(pip install 'eplb[plot]'); nothing here imports it before the command runs."""
import argparse
import json
import sys

import numpy as np

from .load_file import InputError, read_loads, shown

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
# Fixed figure sizes (inches at DPI), so the PNG's size is known: one plan, or two side by side.
DPI = 100
SIZE_ONE, SIZE_TWO = (8, 8), (14, 8)

USAGE = """\
usage: python -m eplb plot LOADS PLAN [--previous PLAN] [-p GPUS] -o FILE.png

Draws the per-layer GPU loads of PLAN on the loads in LOADS: a heat map (layers
x GPUs; a GPU's load is the sum of its slots' loads, each expert's load split
evenly over its replicas, docs/spec.md section 8) and the largest and mean GPU
load per layer. With --previous, the old plan is drawn beside the new one on the
same scale. Needs matplotlib (pip install 'eplb[plot]', or apt-get install
python3-matplotlib).

  LOADS                 a load file, as python -m eplb plan --input reads it
  PLAN                  an eplb plan file (eplb-plan v2 JSON) or SGLang's
                        {"physical_to_logical_map": ...} JSON
      --previous PLAN   the running plan, drawn beside PLAN
  -p, --gpus P          GPUs; needed for SGLang plan files, which do not say
  -o, --output FILE     the PNG to write
  -h, --help            this help

exit codes: 0 written, 1 writing failed, 2 usage or input error
"""


class PlotError(Exception):
    """Bad input; the message says what (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise PlotError(message)


def _parser():
    p = _Parser(prog="python -m eplb plot", add_help=False, allow_abbrev=False)
    p.add_argument("loads")
    p.add_argument("plan")
    p.add_argument("--previous")
    p.add_argument("-p", "--gpus", type=int)
    p.add_argument("-o", "--output")
    return p


def _matplotlib():
    """pyplot on the Agg backend (no display needed), or PlotError saying how to install it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("matplotlib is not installed: pip install 'eplb[plot]' "
                        "(or apt-get install python3-matplotlib)") from None
    return plt


def read_plan(path, gpus):
    """(phy2log int64 [layers, replicas], gpus) from an eplb or SGLang plan file."""
    try:
        with open(path, "rb") as f:
            record = json.loads(f.read())
    except OSError as exc:
        raise PlotError("%s: cannot open: %s" % (shown(path), exc.strerror)) from None
    except ValueError as exc:
        raise PlotError("%s: not a JSON plan file: %s" % (shown(path), exc)) from None
    if isinstance(record, dict) and "phy2log" in record:
        matrix = record["phy2log"]
        shape = record.get("shape")
        if gpus is None and isinstance(shape, dict) and isinstance(shape.get("gpus"), int):
            gpus = shape["gpus"]
    elif isinstance(record, dict) and "physical_to_logical_map" in record:
        matrix = record["physical_to_logical_map"]
    else:
        raise PlotError("%s: neither an eplb plan (\"phy2log\") nor SGLang's "
                        "(\"physical_to_logical_map\")" % shown(path))
    try:
        phy2log = np.array(matrix, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise PlotError("%s: the plan is not a matrix of integers" % shown(path)) from None
    if phy2log.ndim != 2 or phy2log.size == 0:
        raise PlotError("%s: the plan is not a non-empty [layers][replicas] matrix" % shown(path))
    if gpus is None:
        raise PlotError("%s: the file does not say how many GPUs: pass -p/--gpus" % shown(path))
    if gpus < 1 or phy2log.shape[1] % gpus:
        raise PlotError("%s: %d slots per layer do not divide among %d GPUs"
                        % (shown(path), phy2log.shape[1], gpus))
    return phy2log, gpus


def gpu_loads(weight, phy2log, gpus, label="plan"):
    """float64 [layers, gpus]: each GPU's load, an expert's load split evenly
    over its replicas (docs/spec.md section 8)."""
    layers, experts = weight.shape
    if phy2log.shape[0] != layers:
        raise PlotError("%s has %d layers, the loads %d" % (label, phy2log.shape[0], layers))
    bad = np.argwhere((phy2log < 0) | (phy2log >= experts))
    if bad.size:
        l, s = bad[0]
        raise PlotError("%s: phy2log[%d][%d] = %d is not an expert (0..%d)"
                        % (label, l, s, phy2log[l, s], experts - 1))
    counts = np.zeros((layers, experts), dtype=np.int64)
    rows = np.arange(layers)[:, None]
    np.add.at(counts, (rows, phy2log), 1)
    missing = np.argwhere(counts == 0)
    if missing.size:
        raise PlotError("%s: expert %d of layer %d has no slot"
                        % (label, missing[0][1], missing[0][0]))
    slot = weight.astype(np.float64)[rows, phy2log] / counts[rows, phy2log]
    return slot.reshape(layers, gpus, -1).sum(axis=2)


def draw(path, panels):
    """Writes the PNG: per panel (title, loads [layers, gpus]) a heat map, and
    below them the largest GPU load per layer of every panel and the mean in one line plot."""
    plt = _matplotlib()
    from matplotlib.ticker import MaxNLocator
    whole = MaxNLocator(integer=True)  # layers and GPUs are counted, not measured
    size = SIZE_ONE if len(panels) == 1 else SIZE_TWO
    fig = plt.figure(figsize=size, dpi=DPI)
    grid = fig.add_gridspec(2, len(panels), height_ratios=(3, 1.4))
    top = max(float(loads.max()) for _, loads in panels) or 1.0
    image = None
    for i, (title, loads) in enumerate(panels):
        ax = fig.add_subplot(grid[0, i])
        image = ax.imshow(loads, aspect="auto", interpolation="nearest", cmap="viridis",
                          vmin=0.0, vmax=top)
        ax.set_title(title)
        ax.set_xlabel("GPU")
        ax.set_ylabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.colorbar(image, ax=[fig.axes[i] for i in range(len(panels))], label="GPU load")
    ax = fig.add_subplot(grid[1, :])
    layer = np.arange(panels[0][1].shape[0])
    for title, loads in panels:
        ax.plot(layer, loads.max(axis=1), marker=".", label="max GPU load, " + title)
    # The mean is the same for every plan of these loads: one line.
    ax.plot(layer, panels[0][1].mean(axis=1), color="gray", linestyle="--", label="mean GPU load")
    ax.xaxis.set_major_locator(whole)
    ax.set_xlabel("layer")
    ax.set_ylabel("GPU load")
    ax.legend()
    fig.savefig(path, dpi=DPI, format="png")
    plt.close(fig)


def plot_command(argv):
    """`python -m eplb plot ...`; returns the exit code."""
    if any(a in ("-h", "--help") for a in argv):
        sys.stdout.write(USAGE)
        return EXIT_OK
    try:
        args = _parser().parse_args(argv)
        if args.output is None:
            raise PlotError("the option -o/--output FILE.png is required")
        _matplotlib()  # before any reading, so a missing matplotlib is said first
        try:
            with open(args.loads, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise PlotError("%s: cannot open: %s" % (shown(args.loads), exc.strerror)) from None
        try:
            weight, _ = read_loads(args.loads, data)
        except InputError as exc:
            raise PlotError("%s: %s" % (shown(args.loads), exc)) from None
        panels = []
        if args.previous is not None:
            phy2log, gpus = read_plan(args.previous, args.gpus)
            panels.append(("previous plan",
                           gpu_loads(weight, phy2log, gpus, shown(args.previous))))
        phy2log, gpus = read_plan(args.plan, args.gpus)
        panels.append(("plan" if not panels else "new plan",
                       gpu_loads(weight, phy2log, gpus, shown(args.plan))))
    except PlotError as exc:
        sys.stderr.write("eplb plot: %s\n" % exc)
        return EXIT_USAGE
    try:
        draw(args.output, panels)
    except OSError as exc:
        sys.stderr.write("eplb plot: cannot write %s: %s\n"
                         % (shown(args.output), exc.strerror or exc))
        return EXIT_FAILURE
    return EXIT_OK
