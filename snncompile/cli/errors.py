"""The command line's one way of reporting a user error: one line on stderr, ``error: <message>``, exit code 2.

A user error is a command-line mistake (an unknown option, a value out of range, a name that is not one of
the choices: typer's own errors and the options' checks, raised before the command does any work), one of
the library's errors for bad input (``USER_ERRORS``: their messages name the file, option or node at fault)
or an operating-system error on a named path (``[Errno 13] Permission denied`` on an output file). Anything
else is a bug and keeps its traceback. :class:`Commands` applies this to every command, whether it runs from
the console entry point or from typer's ``CliRunner``.
"""
from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

try:  # typer 0.2x carries its own copy of click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # older typer uses click itself
    from click.exceptions import ClickException, UsageError

EXIT_USER_ERROR = 2

#: The library's errors for bad input, by the qualified name of the class (or a base class), so that
#: naming them imports none of the stages they come from.
USER_ERRORS = frozenset({
    "snncompile.config.ConfigError", "snncompile.targets.TargetError", "snncompile.zoo.torchfile.CheckpointError",
    "snncompile.data.common.DataError", "snncompile.ir.graph.GraphError", "snncompile.ir.io.values.IRFileError",
    "snncompile.frontend.builder.ExportError", "snncompile.frontend.nir_graph.NIRImportError",
    "snncompile.frontend.netx_import.NetxImportError",
    "snncompile.passes.pipeline.PassError", "snncompile.passes.quantize_lowering.QuantizeError",
    "snncompile.backends.nir_export.NIRExportError", "snncompile.backends.onnx.export.OnnxExportError",
    "snncompile.backends.design_rules.DesignRuleError", "snncompile.backends.placement_model.PlacementError",
    "snncompile.backends.protocol.BackendError", "snncompile.backends.lava.session.LavaBackendError",
    "snncompile.report.document.ReportError", "snncompile.job.artifact.ArtifactError",
    "builtins.FileNotFoundError",
})


def user_error_message(error: BaseException) -> str | None:
    """The one line to show for a user error (empty where typer has shown all there is to show: the help of a
    command given no arguments); None for anything else, a bug."""
    if isinstance(error, ClickException):
        message = error.format_message()
        context = getattr(error, "ctx", None)
        if isinstance(error, UsageError) and context is not None and message:
            message = f"{message.rstrip('.')} (see `{context.command_path} --help`)"
        return message
    if isinstance(error, OSError) and error.filename is not None:
        also = f" -> {error.filename2}" if error.filename2 is not None else ""
        return f"{error.filename}{also}: {error.strerror or error}"
    if any(f"{cls.__module__}.{cls.__qualname__}" in USER_ERRORS for cls in type(error).__mro__):
        return str(error)
    return None


class Commands(TyperGroup):
    """The group of ``snncompile`` commands: a user error in parsing, in an option's check or in a command
    prints ``error: <message>`` on stderr and exits with ``EXIT_USER_ERROR``; any other exception propagates."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:  # typer's own reporting off: its errors come here, to go the same way as the library's
            code = super().main(*args, standalone_mode=False, **kwargs)
        except Exception as error:
            message = user_error_message(error)
            if message is None:
                raise
            if message:  # one physical line: the terminal wraps it, rich does not break it
                Console(stderr=True).print(f"[red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
            code = EXIT_USER_ERROR
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


__all__ = ["EXIT_USER_ERROR", "USER_ERRORS", "Commands", "user_error_message"]
