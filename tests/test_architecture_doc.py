"""docs/architecture.md says which files a change touches: every file and folder it names must exist."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "architecture.md"


def _named_paths(text: str) -> set[str]:
    """Backticked names that look like paths: a folder (``x/``) or a file with an extension (``.py``, ``.toml`` ...)."""
    names = set()
    for code in re.findall(r"`([^`\s]+)`", text):
        if "<" in code or "*" in code:  # a pattern (`targets/<name>.toml`, `models/*.yaml`): its folder
            code = code.rsplit("/", 1)[0] + "/"
        if code.endswith("/") or re.search(r"\.(py|toml|json|md|yaml)$", code):
            names.add(code)
    return names


def _exists(name: str) -> bool:
    candidates = [ROOT / name, ROOT / "snncompile" / name, ROOT / "tests" / name]
    return any(p.exists() for p in candidates)


def test_every_named_file_exists():
    missing = sorted(n for n in _named_paths(PAGE.read_text()) if not _exists(n.rstrip(",")))
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


def test_the_page_names_every_stage():
    text = PAGE.read_text()
    stages = [p.name for p in (ROOT / "snncompile").iterdir()
              if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and not p.name.startswith("_"))]
    assert all(f"`{s}`" in text or f"`{s}/`" in text for s in stages), stages
