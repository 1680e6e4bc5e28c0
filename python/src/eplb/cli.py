"""python -m eplb plan: the C tool's `eplb plan` (docs/cli.md) in Python, with
the same options, exit codes and plan files, which also reads SGLang's .pt
dumps (with torch, where it is installed)."""
import argparse
import ctypes
import math
import os
import sys
import time

import numpy as np

from . import _library, contexts
from . import rebalance as _rebalance
from .errors import EplbError, Status
from .load_file import InputError, read_loads, shown
from .moves import count_moves
from .plan_file import (OutputError, OutputFile, PlanFileError, Stats, eplb_json, read_plan,
                        sglang_json)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
_INT32_MAX = (1 << 31) - 1

PLAN_USAGE = """\
usage: python -m eplb plan --input FILE --replicas R --gpus P [OPTIONS]

Plans expert placement for the loads in FILE (one row per MoE layer, one
column per logical expert): SGLang's .pt dump (torch.save of a dict whose
logical_count is [windows][layers][experts], summed over the windows; read
with torch), SGLang JSON {"logical_count": ...}, a JSON array, CSV/whitespace
text, or a NumPy .npy. The options are those of the C tool `eplb plan`.

  -i, --input FILE      load file ('-' reads standard input)
  -r, --replicas R      physical expert slots per layer (R >= experts, R % P == 0)
  -g, --groups G        expert groups (experts % G == 0 where the hierarchical
                        policy runs; default 1)
  -n, --nodes N         nodes (default 1)
  -p, --gpus P          GPUs (P % N == 0 for the hierarchical policy)
  -c, --candidates C    randomized greedy starts per row, 1..1024 (default 8)
  -I, --iters I         swap iterations per candidate, 0..100000 (default 20)
      --deepseek        DeepSeek's own algorithm: --candidates 1 --iters 0
  -s, --seed S          seed of the random function, unsigned 64-bit (default 0)
      --noise A         relative key noise, >= 0 (default 0.2)
      --tol T           minimum swap gain, >= 0 (default 1e-5)
      --policy P        auto (default), hierarchical or global
      --refine[=N]      after the packing, up to N trades of slots between the
                        GPUs of a row that lower the heavier GPU (docs/spec.md
                        section 10), 0..100000; --refine alone is 256, 0 is off
                        (the default)
      --distinct        no GPU holds two replicas of one expert (docs/spec.md
                        section 11)
      --previous FILE   the running plan (an eplb plan file, or SGLang's
                        {"physical_to_logical_map": ...} as JSON or .pt): plan
                        from it, moving as few experts as keeps every layer's max
                        GPU load within the fresh plan's (docs/spec.md section 13)
      --slack X         with --previous: a layer's max GPU load may reach
                        (1 + X) times the fresh plan's, for fewer moves
                        (default 0)
  -b, --backend B       auto, cpu, opencl or cuda (default: $EPLB_BACKEND, else auto)
  -o, --output FILE     write the plan as JSON ('-': standard output, the summary
                        then goes to standard error)
      --format F        what the plan file holds: eplb (default: the plan with its
                        options and statistics) or sglang (only
                        {"physical_to_logical_map": ...}, which SGLang's
                        --init-expert-location reads from a file named *.json)
  -q, --quiet           no summary
  -h, --help            this help

--candidates 1 --iters 0 is DeepSeek's own algorithm.
Long options are spelled out in full.
exit codes: 0 planned, 1 planning or writing failed, 2 usage or input error
"""

USAGE = """\
usage: python -m eplb COMMAND [OPTIONS]

commands:
  plan      plan expert placement for a load file (python -m eplb plan --help)
  plot      draw a plan's per-layer GPU loads as a PNG (python -m eplb plot --help;
            needs matplotlib: pip install 'eplb[plot]')
  backends  list libeplb's backends
  --version the package's and the library's version
"""


class UsageError(Exception):
    """A bad command line; the message says why (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


class _DeepSeekMode(argparse.Action):
    """--deepseek: DeepSeek's own algorithm, --candidates 1 --iters 0 at its place on
    the command line (a later --candidates or --iters still changes them), as the
    C tool reads it."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.candidates = 1
        namespace.iters = 0


def _integer(option, lo, hi):
    def parse(text):
        try:
            value = int(text, 10)
        except ValueError:
            raise UsageError("bad value '%s' for %s: not an integer" % (shown(text), option))
        if not lo <= value <= hi:
            raise UsageError("bad value '%s' for %s: must be in %d..%d"
                             % (shown(text), option, lo, hi))
        return value
    return parse


def _seed(text):
    try:
        hexadecimal = text[:2].lower() == "0x"
        value = int(text[2:] if hexadecimal else text, 16 if hexadecimal else 10)
        if text.startswith(("-", "+")) or not 0 <= value < (1 << 64):
            raise ValueError
    except ValueError:
        raise UsageError("bad value '%s' for --seed: not an unsigned 64-bit integer" % shown(text))
    return value


def _real(option):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        with np.errstate(over="ignore"):
            beyond_float32 = bool(np.isinf(np.float32(value)))
        if not math.isfinite(value) or value < 0 or beyond_float32:
            raise UsageError("bad value '%s' for %s: must be a finite number >= 0"
                             % (shown(text), option))
        return value
    return parse


def _choice(option, choices):
    def parse(text):
        if text not in choices:
            raise UsageError("bad value '%s' for %s: use %s" % (shown(text), option,
                                                                 " or ".join(choices)))
        return text
    return parse


def _plan_parser():
    p = _Parser(prog="python -m eplb plan", add_help=False, allow_abbrev=False)
    p.add_argument("-i", "--input")
    p.add_argument("-r", "--replicas", type=_integer("--replicas", 1, _INT32_MAX))
    p.add_argument("-g", "--groups", type=_integer("--groups", 1, _INT32_MAX), default=1)
    p.add_argument("-n", "--nodes", type=_integer("--nodes", 1, _INT32_MAX), default=1)
    p.add_argument("-p", "--gpus", type=_integer("--gpus", 1, _INT32_MAX))
    p.add_argument("-c", "--candidates", type=_integer("--candidates", 1, 1024), default=8)
    p.add_argument("-I", "--iters", type=_integer("--iters", 0, 100000), default=20)
    p.add_argument("--deepseek", action=_DeepSeekMode, nargs=0)
    p.add_argument("-s", "--seed", type=_seed, default=0)
    p.add_argument("--noise", type=_real("--noise"), default=0.2)
    p.add_argument("--tol", type=_real("--tol"), default=1e-5)
    p.add_argument("--policy", type=_choice("--policy", ("auto", "hierarchical", "global")),
                   default="auto")
    p.add_argument("--refine", nargs="?", const=_rebalance.REFINE_DEFAULT,
                   type=_integer("--refine", 0, 100000), default=0)
    p.add_argument("--distinct", action="store_true")
    p.add_argument("--previous")
    p.add_argument("--slack", type=_real("--slack"))
    p.add_argument("-b", "--backend")
    p.add_argument("-o", "--output")
    p.add_argument("--format", type=_choice("--format", ("eplb", "sglang")))
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-h", "--help", action="store_true")
    return p


def _backend_names():
    lib = _library.lib
    return [_library.text(lib.eplb_backend_name(i)) for i in range(lib.eplb_backend_count())]


def _check_backend(name, source):
    names = _backend_names()
    if name != "auto" and name not in names:
        raise UsageError("unknown backend '%s' (from %s): use auto, %s or %s"
                         % (shown(name), source, ", ".join(names[:-1]), names[-1]))


def _unknown(arg, parser):
    """The C tool's words for an argument that is no option."""
    if not arg.startswith("-") or arg == "-":
        return "unexpected argument '%s' (see python -m eplb plan --help)" % shown(arg)
    name = arg.split("=", 1)[0]
    longs = [o for action in parser._actions for o in action.option_strings
             if o.startswith("--")]
    matches = [o for o in longs if name.startswith("--") and len(name) > 2 and o.startswith(name)]
    if not matches:
        return "unknown option '%s' (see python -m eplb plan --help)" % shown(name)
    listed = ", ".join(matches[:-1]) + " or " + matches[-1] if len(matches) > 1 else matches[0]
    return ("unknown option '%s': long options are spelled out in full: %s"
            % (shown(name), listed))


def _parse_plan_args(argv):
    parser = _plan_parser()
    args, rest = parser.parse_known_args(argv)
    if rest:
        raise UsageError(_unknown(rest[0], parser))
    if args.help:
        return args
    for option, value in (("--input", args.input), ("--replicas", args.replicas),
                          ("--gpus", args.gpus)):
        if value is None:
            raise UsageError("%s is required (see python -m eplb plan --help)" % option)
    if args.slack is not None and args.previous is None:
        raise UsageError("--slack needs --previous FILE: it is how far above the fresh plan's "
                         "max GPU load a plan from the running one may stay")
    if args.slack is None:
        args.slack = 0.0
    if args.format is not None and args.output is None:
        raise UsageError("--format says what the plan file holds: it needs --output FILE")
    if args.backend is not None:
        _check_backend(args.backend, "--backend")
    elif os.environ.get("EPLB_BACKEND"):
        _check_backend(os.environ["EPLB_BACKEND"], "EPLB_BACKEND")
    return args


def _plural(n, one, many):
    return "%d %s" % (n, one if n == 1 else many)


def _balance_marks(weight, max_load, gpus, out):
    """The C tool's per-layer picture of max/mean GPU load."""
    marks_max = 64
    means = np.cumsum(weight.astype(np.float64), axis=1)[:, -1] / gpus
    ratio = [m / mean if mean > 0 else 1.0 for m, mean in zip(max_load, means)]
    ordered = sorted(ratio)
    layers = len(ratio)
    top = ordered[-1]
    median = (ordered[layers // 2] if layers % 2
              else (ordered[layers // 2 - 1] + ordered[layers // 2]) / 2.0)
    per_mark = (layers + marks_max - 1) // marks_max
    line = "  max/mean      per layer: min %.4f, median %.4f, max %.4f" % (ordered[0], median, top)
    if per_mark > 1:
        line += " (one mark per %d layers, their worst)" % per_mark
    locale = next((os.environ[v] for v in ("LC_ALL", "LC_CTYPE", "LANG") if os.environ.get(v)),
                  "")
    utf8 = "utf-8" in locale.lower() or "utf8" in locale.lower()
    symbols = "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588" if utf8 else "_.:-=+*#"
    picture = []
    for first in range(0, layers, per_mark):
        worst = max([1.0] + ratio[first:first + per_mark])
        level = int(np.floor((worst - 1.0) / (top - 1.0) * 7.0 + 0.5)) if top > 1.0 else 0
        picture.append(symbols[min(7, max(0, level))])
    out.write(line + "\n                " + "".join(picture) + "\n")


def _moves_lines(out, args, layers, previous):
    """The C tool's lines on a plan from the running one (docs/spec.md 13.3)."""
    path, kind, moves = previous
    slots = layers * args.replicas
    out.write("  previous      %s (%s), slack %g\n" % (shown(path), kind,
                                                      float(np.float32(args.slack))))
    out.write("  moved         %d of %s (%.1f%%), at most %d to one GPU%s\n"
              % (moves.moved_slots, _plural(slots, "slot", "slots"),
                 100.0 * moves.moved_slots / slots, moves.max_moved_per_gpu,
                 ", %d across nodes" % moves.cross_node_moves
                 if args.nodes > 1 and moves.cross_node_moves is not None else ""))


def _summary(out, args, label, input_format, ctx, policy_used, stats, plan_us, weight,
             previous=None):
    layers, experts = weight.shape
    out.write("eplb plan: %s (%s), %s x %s\n" % (label, input_format,
                                                 _plural(layers, "layer", "layers"),
                                                 _plural(experts, "expert", "experts")))
    out.write("  shape         %s on %s (%d per GPU), %s, %s\n"
              % (_plural(args.replicas, "slot", "slots"), _plural(args.gpus, "GPU", "GPUs"),
                 args.replicas // args.gpus, _plural(args.nodes, "node", "nodes"),
                 _plural(args.groups, "group", "groups")))
    if args.policy == "auto" and args.groups % args.nodes != 0:
        out.write("  policy        %s (requested auto; hierarchical needs groups (%d) divisible "
                  "by nodes (%d))\n" % (policy_used, args.groups, args.nodes))
    else:
        out.write("  policy        %s (requested %s)\n" % (policy_used, args.policy))
    out.write("  options       candidates %d, iterations %d, noise %g, tolerance %g, seed %d%s%s\n"
              % (args.candidates, args.iters, float(np.float32(args.noise)),
                 float(np.float32(args.tol)), args.seed,
                 ", refine %d" % args.refine if args.refine > 0 else "",
                 ", distinct" if args.distinct else ""))
    if previous is not None:
        _moves_lines(out, args, layers, previous)
    out.write("  backend       %s on %s\n" % (ctx.backend, ctx.device))
    out.write("  balancedness  %.4f (worst layer %d: %.4f; best possible %.4f for any %s plan%s)\n"
              % (stats.balancedness, stats.min_layer, stats.balancedness_min_layer,
                 stats.balancedness_bound, policy_used,
                 "" if stats.bound_exact else ", relaxed bound"))
    out.write("  max GPU load  %.6g summed over layers, lower bound %.6g: %.2f%% above it\n"
              % (stats.max_load_sum, stats.bound, 100.0 * stats.bound_gap))
    _global_policy_note(out, policy_used, stats)
    _balance_marks(weight, stats.max_load_per_layer, args.gpus, out)
    out.write("  plan time     %.3f ms (%s, first call: sets up the workspace)\n"
              % (plan_us / 1000.0, "eplb_rebalance" if previous is None
                 else "eplb_rebalance_incremental"))
    if args.output and args.output != "-":
        out.write("  plan file     %s%s\n" % (shown(args.output),
                                              " (SGLang: physical_to_logical_map)"
                                              if args.format == "sglang" else ""))


def _plan(args, weight, label, previous=None):
    """(phy2log, logcnt, context, policy that ran, microseconds in eplb_rebalance),
    planned from the running plan previous (int64 [layers, replicas]) when given."""
    layers, experts = weight.shape
    opts = _rebalance._options(args.candidates, args.iters, args.seed, args.noise, args.tol,
                               args.policy)
    opts.refine = args.refine
    opts.distinct = int(args.distinct)
    opts.slack = args.slack
    groups = _rebalance._global_without_groups(experts, args.groups, args.nodes, opts)
    shape = _library.Shape(layers, experts, args.replicas, groups, args.nodes, args.gpus)
    why = ctypes.c_char_p()
    if _library.lib.eplb_shape_check(ctypes.byref(shape), ctypes.byref(why)) != 0:
        raise UsageError("invalid shape for %s (%d layers x %d experts, %d replicas, %d groups, "
                         "%d nodes, %d GPUs): %s" % (label, layers, experts, args.replicas,
                                                     args.groups, args.nodes, args.gpus,
                                                     _library.text(why.value)))
    hierarchical = groups % args.nodes == 0 and opts.policy != _rebalance._POLICIES["global"]
    if args.policy == "hierarchical" and args.groups % args.nodes != 0:
        raise UsageError("--policy hierarchical needs groups (%d) divisible by nodes (%d)"
                         % (args.groups, args.nodes))
    if hierarchical and args.gpus % args.nodes != 0:
        raise UsageError("the hierarchical policy needs gpus (%d) divisible by nodes (%d); pass "
                         "--policy global to ignore nodes" % (args.gpus, args.nodes))
    ctx = contexts.host_context(args.backend)
    phy2log = np.empty((layers, args.replicas), dtype=np.int64)
    logcnt = np.empty((layers, experts), dtype=np.int64)
    inputs = (ctx.handle, weight.ctypes.data, ctypes.byref(shape), ctypes.byref(opts))
    outputs = (phy2log.ctypes.data, logcnt.ctypes.data, None, 0, None)
    start = time.perf_counter()
    if previous is None:
        status = _library.lib.eplb_rebalance(*inputs, *outputs)
    else:
        status = _library.eplb_rebalance_incremental(*inputs, previous.ctypes.data, *outputs)
    plan_us = (time.perf_counter() - start) * 1e6
    if status != 0:
        ctx.fail(status)
    return phy2log, logcnt, ctx, "hierarchical" if hierarchical else "global", plan_us


def _read_previous(args, layers, label):
    """(phy2log int64 [layers, replicas], its format) of --previous, which must
    have the loads' layers and --replicas slots per layer; else UsageError."""
    try:
        running, kind = read_plan(args.previous)
    except PlanFileError as exc:
        raise UsageError("--previous %s" % exc) from None
    shown_name = shown(args.previous)
    if running.shape[0] != layers:
        raise UsageError("--previous %s has %s, the loads of %s %d"
                         % (shown_name, _plural(running.shape[0], "layer", "layers"), label,
                            layers))
    if running.shape[1] != args.replicas:
        raise UsageError("--previous %s has %d slots per layer, --replicas is %d"
                         % (shown_name, running.shape[1], args.replicas))
    return running, kind


def _stats(args, weight, phy2log, logcnt, policy_used):
    """The plan's Stats; the global policy ignores groups and nodes (and may run
    with groups that do not divide the experts), so it is evaluated without them."""
    hierarchical = policy_used == "hierarchical"
    shape = dict(replicas=args.replicas, gpus=args.gpus,
                 groups=args.groups if hierarchical else 1, nodes=args.nodes if hierarchical else 1)
    return Stats(weight, phy2log, logcnt, shape, policy_used)


def _global_policy_note(out, policy_used, stats):
    """As the C tool: one line when the hierarchical bound is more than a point
    below the global policy's."""
    if (policy_used == "hierarchical"
            and stats.global_balancedness_bound - stats.balancedness_bound > 0.01):
        out.write("  global policy up to %.4f on these loads (--policy global); no %s plan "
                  "passes %.4f\n" % (stats.global_balancedness_bound, policy_used,
                                      stats.balancedness_bound))


def _exit_code(error):
    usage = (Status.INVALID_ARGUMENT, Status.INVALID_SHAPE, Status.INVALID_WEIGHT, Status.POLICY)
    return EXIT_USAGE if error.status in usage else EXIT_FAILURE


def plan_command(argv):
    """`python -m eplb plan ...`; returns the exit code."""
    try:
        args = _parse_plan_args(argv)
    except UsageError as exc:
        sys.stderr.write("eplb plan: %s\n" % exc)
        return EXIT_USAGE
    if args.help:
        sys.stdout.write(PLAN_USAGE)
        return EXIT_OK
    label = "(stdin)" if args.input == "-" else shown(args.input)
    try:
        if args.input == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(args.input, "rb") as f:
                data = f.read()
    except MemoryError:
        sys.stderr.write("eplb plan: %s: out of memory reading the input\n" % label)
        return EXIT_FAILURE
    except OSError as exc:
        sys.stderr.write("eplb plan: %s: cannot open: %s\n" % (label, exc.strerror))
        return EXIT_USAGE
    try:
        weight, input_format = read_loads(args.input, data)
    except InputError as exc:
        sys.stderr.write("eplb plan: %s: %s\n" % (label, exc))
        return EXIT_USAGE
    del data
    running = previous = None
    try:
        if args.previous is not None:
            running, kind = _read_previous(args, weight.shape[0], label)
        phy2log, logcnt, ctx, policy_used, plan_us = _plan(args, weight, label, running)
    except UsageError as exc:
        sys.stderr.write("eplb plan: %s\n" % exc)
        return EXIT_USAGE
    except EplbError as exc:
        sys.stderr.write("eplb plan: planning %s failed: %s\n" % (label, exc))
        return _exit_code(exc)
    stats = _stats(args, weight, phy2log, logcnt, policy_used)
    if running is not None:
        previous = (args.previous, kind, count_moves(running, phy2log, args.gpus, args.nodes))
    output = None
    try:
        if args.output is not None:
            output = OutputFile(args.output)
            if args.format == "sglang":
                output.write(sglang_json(phy2log))
            else:
                output.write(eplb_json({
                    "version": _library.version, "input": args.input,
                    "input_format": input_format,
                    "shape": dict(layers=weight.shape[0], experts=weight.shape[1],
                                  replicas=args.replicas, groups=args.groups, nodes=args.nodes,
                                  gpus=args.gpus),
                    "options": dict(candidates=args.candidates, iterations=args.iters,
                                    noise=args.noise, tolerance=args.tol, seed=args.seed,
                                    policy=args.policy, refine=args.refine,
                                    distinct=args.distinct, slack=args.slack),
                    "policy": policy_used, "phy2log": phy2log, "logcnt": logcnt,
                    "stats": stats, "plan_us": plan_us, "backend": ctx.backend,
                    "device": ctx.device, "previous": args.previous,
                    "moves": previous and previous[2]}))
        if not args.quiet:
            out = sys.stderr if args.output == "-" else sys.stdout
            try:
                _summary(out, args, label, input_format, ctx, policy_used, stats, plan_us, weight,
                         previous)
                out.flush()
            except OSError as exc:
                sys.stderr.write("eplb plan: cannot write the summary to %s: %s%s\n"
                                 % ("standard error" if out is sys.stderr else "standard output",
                                    exc.strerror, "; the plan file was not written"
                                    if output is not None and output.temporary else ""))
                return EXIT_FAILURE
        if output is not None:
            output.commit()
    except OutputError as exc:
        sys.stderr.write("eplb plan: %s\n" % exc)
        return EXIT_FAILURE
    finally:
        if output is not None:
            output.discard()
    if args.format == "sglang" and args.output != "-" and not args.output.endswith(".json"):
        sys.stderr.write("eplb plan: note: SGLang's --init-expert-location reads a file only "
                         "when its name ends in .json\n")
    return EXIT_OK


def backends_command(argv):
    from . import backends
    if argv:
        sys.stderr.write("eplb backends: unexpected argument '%s'\n" % shown(argv[0]))
        return EXIT_USAGE
    usable = False
    for name, available, detail in backends():
        usable |= available
        sys.stdout.write("%-8s %-11s %s\n" % (name, "available" if available else "unavailable",
                                              detail))
    return EXIT_OK if usable else EXIT_FAILURE


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        (sys.stdout if argv else sys.stderr).write(USAGE)
        return EXIT_OK if argv else EXIT_USAGE
    command, rest = argv[0], argv[1:]
    if command == "plan":
        return plan_command(rest)
    if command == "backends":
        return backends_command(rest)
    if command == "plot":
        from .plot import plot_command
        return plot_command(rest)
    if command == "--version":
        from ._version import __version__
        sys.stdout.write("eplb %s (libeplb %s at %s)\n" % (__version__, _library.version,
                                                          _library.path))
        return EXIT_OK
    sys.stderr.write("eplb: unknown command '%s' (see python -m eplb --help)\n" % shown(command))
    return EXIT_USAGE
