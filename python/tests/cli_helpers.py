"""Shared by the tests of python -m eplb's subcommands."""
from eplb import cli


def run(argv, capsys):
    """Runs python -m eplb with argv in this process: (exit code, stdout, stderr)."""
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err
