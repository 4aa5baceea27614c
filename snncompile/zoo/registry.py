"""The shipped model zoo: every ``models/*.yaml``, looked up by name or path."""
from __future__ import annotations

from pathlib import Path

from ..resources import shipped_dir
from ..config import ConfigError, ZooEntry, load_entry_file

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
