"""Where the shipped model zoo (``models/``) and target descriptions (``targets/``) are.

In a source checkout they are the top-level folders; an installed wheel carries them as package
data under ``snncompile/_shipped/`` (see ``pyproject.toml``).
"""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped_dir(kind: str) -> Path:
    """The folder of shipped ``models`` or ``targets``."""
    if kind not in ("models", "targets"):
        raise ValueError(f"unknown shipped resource {kind!r}")
    checkout = _PACKAGE.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / kind).is_dir():
        return checkout / kind
    installed = _PACKAGE / "_shipped" / kind
    if installed.is_dir():
        return installed
    raise FileNotFoundError(f"the shipped {kind}/ folder is missing from this installation "
                            f"(looked in {checkout / kind} and {installed})")
