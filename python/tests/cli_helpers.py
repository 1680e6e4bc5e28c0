"""Shared by the tests of python -m eplb's subcommands."""
import re
import subprocess
import sys

from eplb import cli


def run(argv, capsys):
    """Runs python -m eplb with argv in this process: (exit code, stdout, stderr)."""
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def plan_files_of_both_tools(c_tool, plan_args, tmp_path):
    """The plan files that the C tool and python -m eplb write for the same
    `plan` arguments (after them, -o FILE), without their plan times."""
    files = []
    for tool in ([c_tool], [sys.executable, "-m", "eplb"]):
        out = tmp_path / ("plan%d.json" % len(files))
        result = subprocess.run(tool + ["plan"] + plan_args + ["-o", str(out)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        files.append(re.sub(r'"plan_us":[^,]*,', "", out.read_text()))
    return files
