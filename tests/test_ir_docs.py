"""docs/ir.md is generated from the node types: the committed page must equal ``render_markdown()``."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from snncompile.ir.docs import main, render_markdown
from snncompile.ir.ops import OPS

PAGE = Path(__file__).resolve().parents[1] / "docs" / "ir.md"


@pytest.fixture(scope="module")
def page() -> str:
    return render_markdown()


def test_committed_page_is_up_to_date(page):
    assert PAGE.read_text() == page, "docs/ir.md is stale: regenerate it with `python -m snncompile.ir.docs`"


def _section(page: str, name: str) -> str:
    match = re.search(rf"^### {name}\n(.*?)(?=^### |\Z)", page, re.S | re.M)
    assert match, f"no section for {name}"
    return match.group(1)


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.type_name())
def test_every_op_documented_with_every_field(page, op):
    assert f"| [{op.type_name()}](#{op.type_name().lower()}) |" in page  # in the index
    section = _section(page, op.type_name())
    assert "Semantics" in section, f"{op.type_name()}'s docstring gives no semantics"
    fields = dataclasses.fields(op)
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [f.name for f in fields]
    for f, row in zip(fields, rows):
        meaning = row.rstrip(" |").rsplit(" | ", 1)[-1]
        assert f.metadata.get("doc") and meaning.strip(), f"{op.type_name()}.{f.name} has no meaning"
    if not fields:
        assert "No fields." in section


def test_conventions_and_generator(page, tmp_path):
    for topic in ("## Conventions", "time-major", "`time=\"static\"`", "Dtypes", "latency", "node naming",
                  "block.0.attn.q_lif", "Repeat(T)"):
        assert topic in page, topic
    assert main([str(tmp_path / "ir.md")]) == 0
    assert (tmp_path / "ir.md").read_text() == page
