"""Shared test settings: where the project's shared/ folder (specs, real NIR files) is."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# CI clones the repository with shared/ beside it, as in the development checkout.
SHARED = ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A file under shared/, or skip the test when this checkout has no shared/ beside it."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available (shared/ is expected beside the repository)")
    return path
