"""Running the command line in-process, for tests."""


def run_cli(argv, capsys):
    """`hf-colorize ARGV` in this process -> `(exit code, stdout, stderr lines)`."""
    from hf_colorize.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as done:  # argparse's usage errors exit (code 2) after printing their one line
        code = done.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()
