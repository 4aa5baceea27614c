"""Shared test settings: where the project's shared/ folder (specs, real NIR files) is."""
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# CI clones the repository with shared/ beside it, as in the development checkout.
SHARED = ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A file under shared/, or skip the test when this checkout has no shared/ beside it."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available (shared/ is expected beside the repository)")
    return path


@pytest.fixture(autouse=True, scope="session")
def single_thread():
    """The suite's tensors are tiny: on a 2-core machine intra-op threads only add contention (and one
    thread count for the whole run keeps float reductions in the same order in every test)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
