#!/usr/bin/env python3
"""Replaces one results block of docs/benchmarks.md with a file's content.

    python3 bench/splice_results.py SECTION FILE [--doc docs/benchmarks.md]

The block lies between the lines `<!-- BEGIN SECTION-results -->` and
`<!-- END SECTION-results -->`; SECTION is cpu, opencl, cuda or python.
"""
import argparse
import sys


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("section")
    p.add_argument("file", help="text to put in the block (- for stdin)")
    p.add_argument("--doc", default="docs/benchmarks.md")
    args = p.parse_args()
    begin = f"<!-- BEGIN {args.section}-results -->"
    end = f"<!-- END {args.section}-results -->"
    body = sys.stdin.read() if args.file == "-" else open(args.file).read()
    with open(args.doc) as f:
        lines = f.read().split("\n")
    try:
        first = lines.index(begin)
        last = lines.index(end, first)
    except ValueError:
        sys.exit(f"splice_results: {args.doc} has no '{begin}' ... '{end}' block")
    new = lines[:first + 1] + body.strip("\n").split("\n") + lines[last:]
    with open(args.doc, "w") as f:
        f.write("\n".join(new))
    print(f"splice_results: {args.section} block of {args.doc} replaced "
          f"({len(body.splitlines())} lines)")


if __name__ == "__main__":
    main()
