"""One-off: move flat modules into rooms and rewrite every import (kept for the record).

Usage: python tools/relayout.py PLAN.json
PLAN: {"moves": {"old.mod": "new.mod"}, "splits": {"new.mod": {"new.part": [names]}}}
Splits apply after moves, to the moved files.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKGS = ("routing", "surveys", "bot")
SCAN = ("routing", "surveys", "bot", "tests", "bench", "migrations", "tools")


def path_of(mod: str) -> Path:
    p = ROOT / (mod.replace(".", "/") + ".py")
    return p


def mod_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def ensure_pkg(mod: str) -> None:
    parts = mod.split(".")[:-1]
    for i in range(1, len(parts) + 1):
        d = ROOT.joinpath(*parts[:i])
        d.mkdir(exist_ok=True)
        init = d / "__init__.py"
        if not init.exists():
            init.write_text("")
            subprocess.run(["git", "add", str(init)], cwd=ROOT, check=True)


def top_names(tree: ast.Module) -> dict[str, ast.stmt]:
    out: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = node
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out[t.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = node
    return out


def defined(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set(top_names(tree))
    return names


def imported(path: Path) -> dict[str, str]:
    """name -> module it was imported from (absolute from-imports only)."""
    tree = ast.parse(path.read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                out[a.asname or a.name] = node.module
    return out


def block_range(lines: list[str], node: ast.stmt) -> tuple[int, int]:
    start = node.lineno - 1
    decos = getattr(node, "decorator_list", [])
    if decos:
        start = min(d.lineno for d in decos) - 1
    # Take the comment lines directly above.
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    end = node.end_lineno or node.lineno
    return start, end


def header(src: str) -> str:
    tree = ast.parse(src)
    lines = src.splitlines(keepends=True)
    out = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.extend(lines[node.lineno - 1 : node.end_lineno])
        elif out and not isinstance(node, ast.Expr):
            break
    return "".join(out)


def split(src_mod: str, parts: dict[str, list[str]]) -> None:
    src_path = path_of(src_mod)
    text = src_path.read_text()
    lines = text.splitlines(keepends=True)
    tree = ast.parse(text)
    names = top_names(tree)
    remove: list[tuple[int, int]] = []
    for dst_mod, wanted in parts.items():
        blocks = []
        for name in wanted:
            if name not in names:
                sys.exit(f"{src_mod}: no top-level {name}")
            s, e = block_range(lines, names[name])
            blocks.append((s, e))
        blocks = sorted(set(blocks))
        remove.extend(blocks)
        dst_path = path_of(dst_mod)
        ensure_pkg(dst_mod)
        body = "\n\n".join("".join(lines[s:e]).rstrip("\n") + "\n" for s, e in blocks)
        if dst_path.exists():
            dst_path.write_text(dst_path.read_text().rstrip("\n") + "\n\n\n" + body)
        else:
            doc = f'"""{dst_mod}: split out of {src_mod}."""\n\n'
            dst_path.write_text(doc + header(text) + "\n\n" + body)
            subprocess.run(["git", "add", str(dst_path)], cwd=ROOT, check=True)
    keep = [True] * len(lines)
    for s, e in remove:
        for i in range(s, e):
            keep[i] = False
    src_path.write_text("".join(line for line, k in zip(lines, keep, strict=True) if k))


def py_files() -> list[Path]:
    out = []
    for d in SCAN:
        out.extend(p for p in (ROOT / d).rglob("*.py") if ".venv" not in p.parts)
    return out


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    moves: dict[str, str] = plan.get("moves", {})
    splits: dict[str, dict[str, list[str]]] = plan.get("splits", {})
    # old module -> the modules its names now live in
    fragments: dict[str, list[str]] = defaultdict(list)
    for old, new in moves.items():
        ensure_pkg(new)
        subprocess.run(["git", "mv", str(path_of(old)), str(path_of(new))], cwd=ROOT, check=True)
        fragments[old].append(new)
    for mod, parts in splits.items():
        split(mod, parts)
        olds = [o for o, n in moves.items() if n == mod] or [mod]
        for o in olds:
            fragments[o].extend(parts)
            if mod not in fragments[o]:
                fragments[o].append(mod)
    # name lookup
    defs: dict[str, set[str]] = {}
    for frags in fragments.values():
        for f in frags:
            defs[f] = defined(path_of(f))
    global_def: dict[str, list[str]] = defaultdict(list)
    for p in py_files():
        m = mod_of(p)
        if m.split(".")[0] in PKGS:
            for n in defined(p):
                global_def[n].append(m)

    def home(old: str, name: str) -> str:
        for f in fragments[old]:
            if name in defs[f]:
                return f
        # imported into the old module: where does it come from now
        for f in fragments[old]:
            src = imported(path_of(f)).get(name)
            if src:
                return src
        cands = [m for m in global_def.get(name, []) if m.split(".")[0] in PKGS]
        if len(cands) == 1:
            return cands[0]
        sys.exit(f"cannot place {old}.{name}: {cands}")

    for p in py_files():
        rewrite(p, fragments, home)


def rewrite(p: Path, fragments: dict[str, list[str]], home) -> None:  # type: ignore[no-untyped-def]
    text = p.read_text()
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = []  # line ranges (0-based start, end) -> replacement
    attr_edits: list[tuple[int, int, int, str]] = []  # (line, col, end_col, new)
    module_alias: dict[str, str] = {}  # local alias -> old module
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level != 0 or not node.module:
            continue
        indent = lines[node.lineno - 1][: node.col_offset]
        groups: dict[str, list[str]] = defaultdict(list)
        changed = False
        for a in node.names:
            full = f"{node.module}.{a.name}"
            if node.module in fragments:
                new = home(node.module, a.name)
                groups[new].append(a.name + (f" as {a.asname}" if a.asname else ""))
                changed = True
            elif full in fragments:
                local = a.asname or a.name
                frags = fragments[full]
                if len(frags) == 1:
                    new = frags[0]
                    pkg, _, base = new.rpartition(".")
                    groups[pkg].append(base if base == local else f"{base} as {local}")
                else:
                    module_alias[local] = full
                changed = True
            else:
                groups[node.module].append(a.name + (f" as {a.asname}" if a.asname else ""))
        if not changed:
            continue
        new_lines = [f"{indent}from {m} import {', '.join(ns)}\n" for m, ns in groups.items()]
        edits.append((node.lineno - 1, node.end_lineno or node.lineno, "".join(new_lines)))
    if module_alias:
        needed: dict[str, set[str]] = defaultdict(set)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in module_alias
            ):
                old = module_alias[node.value.id]
                new = home(old, node.attr)
                base = new.rpartition(".")[2]
                needed[new.rpartition(".")[0]].add(base)
                v = node.value
                attr_edits.append((v.lineno - 1, v.col_offset, v.end_col_offset or 0, base))
        # the module import line(s) get the fragment imports added
        extra = "".join(f"from {pkg} import {', '.join(sorted(b))}\n" for pkg, b in needed.items())
        # put them after the first edit that dropped a module alias
        for i, (s, e, rep) in enumerate(edits):
            edits[i] = (s, e, rep)
        if edits:
            s, e, rep = edits[0]
            edits[0] = (s, e, rep + extra)
    # apply attribute edits first (they do not change line counts)
    by_line: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for ln, c0, c1, new in attr_edits:
        by_line[ln].append((c0, c1, new))
    for ln, items in by_line.items():
        s = lines[ln]
        for c0, c1, new in sorted(items, reverse=True):
            s = s[:c0] + new + s[c1:]
        lines[ln] = s
    for s, e, rep in sorted(edits, reverse=True):
        lines[s:e] = [rep]
    new_text = "".join(lines)
    # dotted references in strings, e.g. logger names and monkeypatch targets
    for old, frags in fragments.items():
        if len(frags) == 1:
            new_text = re.sub(rf"(?<=[\"']){re.escape(old)}(?=[\"'.])", frags[0], new_text)
    if new_text != text:
        p.write_text(new_text)


if __name__ == "__main__":
    main()
