"""One-off: add imports for names ruff reports undefined (F821), from their single home."""

from __future__ import annotations

import ast
import json
import subprocess
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mod_of(p: Path) -> str:
    parts = list(p.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


defs: dict[str, list[str]] = defaultdict(list)
for d in ("routing", "surveys", "bot"):
    for p in (ROOT / d).rglob("*.py"):
        tree = ast.parse(p.read_text())
        for n in tree.body:
            names = []
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [n.name]
            elif isinstance(n, ast.Assign):
                names = [t.id for t in n.targets if isinstance(t, ast.Name)]
            elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
                names = [n.target.id]
            for x in names:
                defs[x].append(mod_of(p))
out = subprocess.run(
    ["ruff", "check", "--select", "F821", "--output-format", "json", "."],
    cwd=ROOT,
    capture_output=True,
    text=True,
).stdout
need: dict[str, set[str]] = defaultdict(set)
for e in json.loads(out):
    name = e["message"].split("`")[1]
    need[e["filename"]].add(name)
left = []
for fn, names in need.items():
    p = Path(fn)
    text = p.read_text()
    me = mod_of(p)
    lines = []
    for n in sorted(names):
        homes = [m for m in defs.get(n, []) if m != me]
        if len(homes) == 1:
            lines.append(f"from {homes[0]} import {n}\n")
        else:
            left.append((fn, n, homes))
    if lines:
        i = text.find("from __future__ import annotations\n")
        i = i + len("from __future__ import annotations\n") if i >= 0 else 0
        p.write_text(text[:i] + "".join(lines) + text[i:])
for x in left:
    print("UNRESOLVED", *x)
