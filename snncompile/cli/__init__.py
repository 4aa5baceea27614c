"""The ``snncompile`` command line (console entry point :func:`main`).

- ``commands``: the commands (``app``), each a thin wrapper over one library function, importing the stages
  it uses when it runs: ``snncompile --help`` and ``--version`` load no torch.
- ``options``: the checks that refuse a bad option value while the command line is parsed, before any work
  (output files and folders that cannot be written, names not in a registry, targets, times).
- ``errors``: the one way a user error is reported, wherever it is raised: ``error: <message>`` on one line of
  stderr, naming the file, option or node at fault, and exit code 2 (``EXIT_USER_ERROR``); a bug keeps its
  traceback.
"""
from .commands import app
from .errors import EXIT_USER_ERROR


def main() -> None:
    """Console entry point."""
    app()


__all__ = ["app", "main", "EXIT_USER_ERROR"]
