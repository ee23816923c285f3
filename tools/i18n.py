"""The gettext catalogs' workflow (development only; the bot itself needs only ``bot/i18n.py``
and the compiled ``.mo`` files)::

    python -m tools.i18n extract   # list every _()/__()/N_() string of bot/, routing/, surveys/
    python -m tools.i18n update    # merge them into each bot/locales/*/LC_MESSAGES/contactbot.po
    (translate the new entries in bot/locales/zh_Hans/LC_MESSAGES/contactbot.po)
    python -m tools.i18n compile   # write the .mo files beside the .po files
    python -m tools.i18n check     # what tests/unit/test_i18n.py checks: every string in every
                                   # catalog, translated (zh_Hans), same placeholders, compiled

Built on Babel's own extractor, catalog merge and ``.mo`` writer (what ``pybabel extract``,
``update`` and ``compile`` run), with the project's settings in one place: the keywords, no
template file (``update`` extracts straight into the catalogs), no line numbers in the
``.po`` files (several people edit the sources, and a moved line is no change), and a
``check`` that pybabel does not have.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po, write_po

from bot.i18n import DOMAIN, LOCALES_DIR

ROOT = Path(__file__).resolve().parents[1]
# Where user-facing strings live (bot/texts/ above all). routing/ and surveys/ are scanned
# too, in case.
SOURCE_DIRS = ("bot", "routing", "surveys")
# Locales whose every message must be translated (en is the source language).
TRANSLATED = ("zh_Hans",)
FIX_HINT = (
    "run `python -m tools.i18n update`, translate the new entries in "
    "bot/locales/zh_Hans/LC_MESSAGES/contactbot.po, then `python -m tools.i18n compile`"
)

# bot.i18n's names: _ (now), __ (lazy), N_ (mark only), and their long forms.
_SINGULAR: dict[str, Any] = {
    "_": None,
    "__": None,
    "N_": None,
    "gettext": None,
    "lazy_gettext": None,
}
_PLURAL: dict[str, Any] = {"_": (1, 2), "__": (1, 2), "gettext": (1, 2), "lazy_gettext": (1, 2)}
_PLACEHOLDER = re.compile(r"\{(\w*)[^{}]*\}")


def extract(root: Path = ROOT) -> Catalog:
    """Every translatable string in the source, as a Babel catalog (the template)."""
    template = Catalog(project="contactbot", domain=DOMAIN, charset="utf-8")
    found: dict[str, tuple[Any, list[tuple[str, int]], list[str]]] = {}
    for sub in SOURCE_DIRS:
        base = root / sub
        if not base.is_dir():
            continue
        for keywords in (_PLURAL, _SINGULAR):
            for filename, lineno, message, comments, _ctx in extract_from_dir(
                base, method_map=[("**.py", "python")], keywords=keywords, comment_tags=("i18n:",)
            ):
                key = message[0] if isinstance(message, tuple) else message
                loc = (f"{sub}/{filename}", lineno)
                if key in found:
                    msg, locs, comm = found[key]
                    if isinstance(message, tuple):
                        msg = message
                    if loc not in locs:
                        locs.append(loc)
                    found[key] = (msg, locs, comm)
                else:
                    found[key] = (message, [loc], list(comments))
    for key in sorted(found):
        msg, locs, comments = found[key]
        template.add(msg, locations=sorted(locs), auto_comments=comments)
    return template


def po_path(locale: str) -> Path:
    return LOCALES_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


def locales() -> list[str]:
    return sorted(p.parent.parent.name for p in LOCALES_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def read(locale: str) -> Catalog:
    with po_path(locale).open("rb") as f:
        return read_po(f, locale=locale, domain=DOMAIN)


def _write_po(catalog: Catalog, path: Path) -> None:
    buf = io.BytesIO()
    catalog.fuzzy = False
    write_po(
        buf,
        catalog,
        width=100,
        sort_output=True,
        omit_header=False,
        ignore_obsolete=True,
        include_lineno=False,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def update(root: Path = ROOT) -> dict[str, int]:
    """Merge the source's strings into every catalog; returns untranslated counts."""
    template = extract(root)
    result: dict[str, int] = {}
    for locale in locales():
        catalog = read(locale)
        catalog.update(template, no_fuzzy_matching=True)
        _write_po(catalog, po_path(locale))
        result[locale] = len(untranslated(catalog)) if locale in TRANSLATED else 0
    return result


def _msgid(message: Any) -> str:
    """A message's id (the singular of a plural message)."""
    return str(message.id[0] if isinstance(message.id, (tuple, list)) else message.id)


def untranslated(catalog: Catalog) -> list[str]:
    out = []
    for m in catalog:
        if not m.id:
            continue
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        if m.fuzzy or not all(strings):
            out.append(_msgid(m))
    return out


def compiled(locale: str) -> bytes:
    buf = io.BytesIO()
    write_mo(buf, read(locale), use_fuzzy=False)
    return buf.getvalue()


def mo_content(data: bytes) -> dict[tuple[Any, Any], Any]:
    """The messages a compiled catalog holds, without its header.

    The header records the Babel version and the compile date, so two .mo files built from
    the same .po by different Babel releases differ byte for byte; what a reader sees does not.
    """
    return {(m.id, m.context): m.string for m in read_mo(io.BytesIO(data)) if m.id}


def compile_all() -> list[Path]:
    written = []
    for locale in locales():
        mo = po_path(locale).with_suffix(".mo")
        mo.write_bytes(compiled(locale))
        written.append(mo)
    return written


def problems(root: Path = ROOT, translate: Sequence[str] = TRANSLATED) -> list[str]:
    """What is wrong with the catalogs, one line each (empty: all good)."""
    out: list[str] = []
    source = {_msgid(m): m for m in extract(root) if m.id}
    for locale in locales():
        catalog = read(locale)
        have = {_msgid(m): m for m in catalog if m.id}
        missing = sorted(set(source) - set(have))
        for msgid in missing:
            out.append(f"{locale}: not in the catalog: {msgid!r}")
        if locale in translate:
            for msgid in untranslated(catalog):
                if msgid in source:
                    out.append(f"{locale}: no translation for {msgid!r}")
            for msgid, m in have.items():
                raw = m.string if isinstance(m.string, (tuple, list)) else (m.string,)
                want = set(_PLACEHOLDER.findall(msgid))
                for s in (str(x) for x in raw if x):
                    if set(_PLACEHOLDER.findall(s)) != want:
                        out.append(f"{locale}: placeholders differ in the translation of {msgid!r}")
        mo = po_path(locale).with_suffix(".mo")
        if not mo.exists() or mo_content(mo.read_bytes()) != mo_content(compiled(locale)):
            out.append(f"{locale}: {mo.relative_to(root)} is not compiled from the current .po")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.i18n", description="gettext catalogs")
    p.add_argument(
        "action",
        choices=["extract", "update", "compile", "check"],
        help="extract: list the source's strings; update: merge them into every .po; "
        "compile: write the .mo files; check: report missing translations and stale .mo",
    )
    args = p.parse_args(argv)
    if args.action == "extract":
        for m in extract():
            if m.id:
                print(_msgid(m))
        return 0
    if args.action == "update":
        for locale, n in update().items():
            print(f"{po_path(locale).relative_to(ROOT)}: {n} untranslated")
        return 0
    if args.action == "compile":
        for path in compile_all():
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    found = problems()
    for line in found:
        print(line)
    if found:
        print(f"\nTo fix: {FIX_HINT}.", file=sys.stderr)
        return 1
    print("catalogs complete and compiled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
