"""The checks that refuse a bad option value while the command line is parsed, before a command does any work.

Each is a typer callback that returns the value or raises ``typer.BadParameter`` (a user error, see
:mod:`.errors`, naming the option): ``output_file`` and ``output_dir`` for what a command writes (a file or
folder that cannot be written is refused now, not after minutes of work), ``one_of`` for names from a registry,
``chip_target`` and ``any_target`` for targets, ``positive`` for a time. Registries load when an option is
checked, never when the command line starts (``snncompile --help`` imports no stage).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Optional

import typer


def unwritable(path: Path, *, directory: bool) -> str | None:
    """Why ``path`` cannot be written as a file (or, with ``directory``, as a folder to write files in), as
    ``<path>: <reason>``: it is the other kind, a name in it is too long, or no file can be created where it
    would go (read-only, not a folder, no permission: tried, so it holds for root too); None if it can. Nothing
    is left behind."""
    try:
        reason = _reason(path, directory)
    except OSError as e:  # a name the file system refuses to look up (too long, a loop)
        reason = e.strerror or str(e)
    return reason and f"{path}: {reason}"


def _reason(path: Path, directory: bool) -> str | None:
    if path.exists():
        if path.is_dir() != directory:
            return "is a directory, not a file" if path.is_dir() else "is not a directory"
        if path.is_file():
            with open(path, "ab"):  # appending nothing leaves the file as it is
                pass
        return _cannot_create_in(path) if directory else None
    existing = next(p for p in path.absolute().parents if p.exists())
    if not existing.is_dir():
        return f"{existing} is not a directory"
    longest = os.pathconf(existing, "PC_NAME_MAX")
    if any(len(os.fsencode(part)) > longest for part in path.absolute().relative_to(existing).parts):
        return f"a name in it is longer than the {longest} bytes the file system takes"
    return _cannot_create_in(existing)


def _cannot_create_in(folder: Path) -> str | None:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as e:
        return f"cannot create files in {folder} ({e.strerror or e})"


def output_file(path: Optional[Path]) -> Optional[Path]:
    """Refuse an output file that cannot be written (``unwritable``)."""
    if path is not None and (reason := unwritable(path, directory=False)):
        raise typer.BadParameter(reason)
    return path


def output_dir(path: Optional[Path]) -> Optional[Path]:
    """Refuse an output folder that cannot be written in (``unwritable``)."""
    if path is not None and (reason := unwritable(path, directory=True)):
        raise typer.BadParameter(reason)
    return path


def one_of(names: Callable[[], Iterable[str]]) -> Callable[..., Optional[str]]:
    """A check that a value given on the command line is one of ``names()`` (a registry's names, read then:
    an option left at its default loads no registry)."""
    def check(ctx: typer.Context, param: typer.CallbackParam, value: Optional[str]) -> Optional[str]:
        if value is None or ctx.get_parameter_source(param.name).name == "DEFAULT":
            return value
        known = list(names())
        if value not in known:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(known)}")
        return value
    return check


def _target(value: Optional[str], *, chip: bool) -> Optional[str]:
    from ..targets import TargetError, list_targets, load_target
    if value is None:
        return None
    try:
        kind = load_target(value).kind
    except TargetError as e:
        problems = "; ".join(e.problems)
        raise typer.BadParameter(problems if repr(value) in problems else f"{value}: {problems}") from None
    if kind == "system":
        raise typer.BadParameter(f"{value} is a system of {load_target(value).chip_target} chips, not a target: "
                                 f"pass its chip as the target (a system bounds compile's --max-chips)")
    if chip and kind != "chip":
        chips = [name for name in list_targets() if load_target(name).kind == "chip"]
        article = "an" if kind[0] in "aeiou" else "a"
        raise typer.BadParameter(f"{value} is {article} {kind}, not a chip: pass {', '.join(chips)} or a target file")
    return value


def chip_target(value: Optional[str]) -> Optional[str]:
    """A target with cores (a shipped name or a ``.toml`` file), not an energy convention."""
    return _target(value, chip=True)


def any_target(value: Optional[str]) -> Optional[str]:
    """A target or energy convention (a shipped name or a ``.toml`` file)."""
    return _target(value, chip=False)


def positive(value: Optional[float]) -> Optional[float]:
    """Refuse a number that is not more than 0 (an option left out, None, passes)."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"{value} is not more than 0")
    return value


__all__ = ["unwritable", "output_file", "output_dir", "one_of", "chip_target", "any_target", "positive"]


def chip_count(value: str, target: str) -> int:
    """``--max-chips``: a count, or a named system of ``target``'s chips (its chip count)."""
    from ..targets import TargetError, load_target, system_chips
    if value.isdigit():
        return int(value)
    try:
        return system_chips(value, load_target(target))
    except TargetError as e:
        raise typer.BadParameter(f"{value}: {'; '.join(e.problems)}", param_hint="'--max-chips'") from None
