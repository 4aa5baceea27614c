"""The data flow reads top to bottom: a stage of the package imports only itself and earlier stages."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "snncompile"
STAGES = ["resources", "targets", "config", "nn", "zoo", "data", "train", "ir", "sim", "frontend", "passes", "backends", "report", "job", "cli"]


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "snncompile" and len(parts) > 1 else None


def imported_modules(path: Path) -> set[str]:
    module = "snncompile." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            else:
                found.add(node.module)
    return found


def test_every_stage_is_listed():
    stages = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
              if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())) and not p.name.startswith("_")}
    assert stages == set(STAGES)


def test_no_stage_imports_a_later_one():
    problems = []
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("__init__.py", "__main__.py") and path.parent == PACKAGE:
            continue  # the package's public face and entry point re-export everything
        own = stage_of("snncompile." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        for module in imported_modules(path):
            other = stage_of(module)
            if other in STAGES and STAGES.index(other) > STAGES.index(own):
                problems.append(f"{path.relative_to(PACKAGE)} ({own}) imports {module} ({other})")
    assert not problems, "\n".join(problems)


MAX_LINES = 500


def test_no_module_is_a_grab_bag():
    """No module of the package is over MAX_LINES lines: split it by concern instead."""
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
