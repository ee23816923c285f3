"""Print every pair of first-party modules that import each other (directly or through others)."""

from __future__ import annotations

import grimp


def main() -> int:
    graph = grimp.build_graph("routing", "surveys", "bot")
    found = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if graph.chain_exists(importer=imported, imported=module):
                found.add(tuple(sorted((module, imported))))
    for a, b in sorted(found):
        print(f"cycle: {a} <-> {b}")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
