"""The shipped model zoo: every ``models/*.yaml``, looked up by name or path, and an entry's checkpoint loaded
with its YAML checked against it."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..resources import shipped_dir
from ..config import ConfigError, ZooEntry, load_entry_file

if TYPE_CHECKING:
    from .checkpoint import LoadedCheckpoint

DEFAULT_MODEL = "statten-digits"


def list_entries() -> list[ZooEntry]:
    return [load_entry_file(p) for p in sorted(shipped_dir("models").glob("*.yaml"))]


def find_entry(name_or_path: str | Path) -> ZooEntry:
    """A zoo entry by its ``name:`` or by the path of a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return load_entry_file(path)
    entries = list_entries()
    for entry in entries:
        if entry.name == str(name_or_path):
            return entry
    raise ConfigError(f"no model named {str(name_or_path)!r} in the zoo ({shipped_dir('models')}); "
                      f"known: {', '.join(e.name for e in entries)}")


def load_entry_checkpoint(entry: ZooEntry, attention: str | None = None) -> LoadedCheckpoint:
    """``entry``'s checkpoint, loaded (``attention``: run it with another attention, as
    :func:`~snncompile.zoo.checkpoint.load_checkpoint`). The architecture is the checkpoint's: every field
    the YAML's ``model:`` section gives must equal it (``attention`` too, unless overridden here), else a
    :class:`ConfigError` names the YAML and each differing field."""
    if entry.checkpoint is None:
        raise ConfigError(f"zoo model {entry.name!r} ships no trained weights; pass an upstream checkpoint "
                          f"file, or train one with `snncompile train {entry.name}`")
    from .checkpoint import load_checkpoint  # torch: loaded with a checkpoint, not with the zoo's list
    loaded = load_checkpoint(entry.checkpoint, attention=attention)
    compared = sorted(entry.model_fields - ({"attention"} if attention else set()))
    differing = [f"model.{name}: {getattr(entry.model, name)!r} here, {getattr(loaded.config, name)!r} in the "
                 f"checkpoint" for name in compared if getattr(entry.model, name) != getattr(loaded.config, name)]
    if differing:
        raise ConfigError(f"{entry.source or entry.name}: the model section does not describe its checkpoint "
                          f"{entry.checkpoint} (the checkpoint's architecture is the one its weights were trained "
                          f"with; to run another attention pass --attention):\n  - " + "\n  - ".join(differing))
    return loaded


__all__ = ["DEFAULT_MODEL", "list_entries", "find_entry", "load_entry_checkpoint"]
