"""Checks shared by the policy models, and the one-line wording of every policy problem.

Everything ``contactbot run`` later hands to a library is checked here with that library's
own parser, so that a file ``contactbot policy check`` accepts cannot crash the bot:

* time zones with :class:`zoneinfo.ZoneInfo` (what APScheduler and the survey code use);
* crontabs with APScheduler's ``CronTrigger.from_crontab`` (each field's range), plus a
  check that the expression fires at all (``0 0 31 2 *`` never does);
* tier names: a reference to a tier the ``[[tiers]]`` list does not define.

A problem is a location (pydantic's ``loc``: a path of keys and list indices from the top of
the file) and a message. :func:`describe` turns it into one line that names the key as the
file spells it: ``[scoring] schedule: "0 25 1 * *": hour 25 is out of range 0-23``,
``[queue.sla] first_response_seconds.A: no such tier (tiers: VIP, Gold, B, C)``,
``[[surveys.nps.campaigns]] #2 tier: no such tier "A" (tiers: VIP, Gold, B, C)``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.cron.fields import MAX_VALUES, MIN_VALUES
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]

# --- time zones -------------------------------------------------------------------------


def check_zone(value: str) -> str:
    """``value`` if it is a time zone the bot can load (an IANA name), else ValueError."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        hint = difflib.get_close_matches(value, sorted(available_timezones()), n=1)
        also = f'; did you mean "{hint[0]}"?' if hint else ""
        raise ValueError(
            f'"{value}" is not a time zone (an IANA name, e.g. "Europe/Berlin"{also})'
        ) from None
    return value


# --- crontabs ---------------------------------------------------------------------------

# Crontab order; APScheduler's name for each field and how the docs call it.
_CRON_FIELDS = (
    ("minute", "minute"),
    ("hour", "hour"),
    ("day", "day"),
    ("month", "month"),
    ("day_of_week", "day-of-week"),
)
_BOUND = re.compile(r"\((\d+)\) is (?:higher|lower) than the (?:maximum|minimum) value")
# Any fixed start works: a schedule that fires at all fires within a few years of it.
_EPOCH = datetime(2001, 1, 1, tzinfo=UTC)


def _field_problem(value: str, fields: Sequence[str]) -> str:
    """Which field of a crontab APScheduler refuses, and why, in the file's terms."""
    for (name, label), text in zip(_CRON_FIELDS, fields, strict=True):
        try:
            CronTrigger(**{name: text}, timezone=UTC)
        except ValueError as exc:
            lo, hi = MIN_VALUES[name], MAX_VALUES[name]
            span = f"{lo}-{hi}" + (" (0 = Monday) or mon-sun" if name == "day_of_week" else "")
            bound = _BOUND.search(str(exc))
            if bound and text.isdigit():
                return f"{label} {text} is out of range {span}"
            if bound:
                return f'{label} {bound[1]} (in "{text}") is out of range {span}'
            reason = str(exc)
            if reason.startswith("Unrecognized expression"):
                return f'{label} "{text}" is not a cron field (numbers {span}, *, a-b, */n, a,b)'
            return f'{label} "{text}": {reason[:1].lower()}{reason[1:]}'
    return "not a valid crontab"  # pragma: no cover - from_crontab failed on some field


def check_cron(value: str) -> str:
    """A 5-field crontab exactly as the scheduler reads it, blanks normalised; else ValueError
    naming the field: ``"0 25 1 * *": hour 25 is out of range 0-23``."""
    value = " ".join(value.split())
    fields = value.split()
    if len(fields) != 5:
        raise ValueError(
            f'"{value}": a crontab has 5 fields (minute hour day month day-of-week, '
            f'e.g. "0 3 1 * *"), got {len(fields)}'
        )
    try:
        trigger = CronTrigger.from_crontab(value, timezone=UTC)
    except ValueError:
        raise ValueError(f'"{value}": {_field_problem(value, fields)}') from None
    if trigger.get_next_fire_time(None, _EPOCH) is None:
        raise ValueError(f'"{value}": never fires (no month has that day)')
    return value


# --- tiers ------------------------------------------------------------------------------


def no_such_tier(tiers: Iterable[str], name: str | None = None) -> str:
    """``no such tier "A" (tiers: VIP, Gold, B, C)``; without ``name`` when the key is it."""
    what = "no such tier" if name is None else f'no such tier "{name}"'
    return f"{what} (tiers: {', '.join(tiers)})"


def raise_problems(title: str, problems: Sequence[Problem]) -> None:
    """Raise every problem at once, each at its own location (relative to the model whose
    validator calls this; pydantic prefixes the enclosing fields)."""
    if not problems:
        return
    raise ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("policy", "{problem}", {"problem": message}),
                loc=loc,
                input=None,
            )
            for loc, message in problems
        ],
    )


# --- wording ----------------------------------------------------------------------------


def _kind(annotation: Any) -> tuple[str, type[BaseModel] | None]:
    """How a field nests: ("model", M), ("seq", M) for tuple[M, ...], ("map", M) for
    dict[str, M], ("union", None) for a union pydantic tags in ``loc``, else ("leaf", None)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _kind(get_args(annotation)[0])
    if origin in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        return _kind(members[0]) if len(members) == 1 else ("union", None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "model", annotation
    args = get_args(annotation)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        kind, model = _kind(args[0])
        return ("seq", model) if kind == "model" else ("leaf", None)
    if origin is dict and len(args) == 2:
        kind, model = _kind(args[1])
        return ("map", model) if kind == "model" else ("leaf", None)
    return "leaf", None


def _where(root: type[BaseModel], loc: Loc) -> tuple[str, str, type[BaseModel] | None, bool]:
    """(table, key, model holding the key, whether pydantic named a union member) for a
    location: ``("[queue.sla]", "first_response_seconds.A", SlaPolicy, False)``."""
    # Each step: (text, is a table header, list index if an array-of-tables element).
    steps: list[tuple[str, bool, int | None]] = []
    model: type[BaseModel] | None = root
    holder: type[BaseModel] | None = root
    parts = list(loc)
    i = 0
    skip_tag = tagged = False
    while i < len(parts):
        part = parts[i]
        i += 1
        if skip_tag and isinstance(part, str):
            skip_tag = False  # pydantic names the union member it tried: not a key
            tagged = True
            continue
        if model is not None and isinstance(part, str) and part in model.model_fields:
            holder = model
            kind, inner = _kind(model.model_fields[part].annotation)
            model = None
            if kind == "model":
                steps.append((part, True, None))
                model = holder = inner
            elif kind == "seq" and i < len(parts) and isinstance(parts[i], int):
                steps.append((part, True, int(parts[i])))
                i += 1
                model = holder = inner
            elif kind == "map" and i < len(parts):
                steps.append((part, False, None))
                steps.append((str(parts[i]), True, None))
                i += 1
                model = holder = inner
            else:
                steps.append((part, False, None))
                skip_tag = kind == "union"
            continue
        model = None
        steps.append((f"#{part + 1}" if isinstance(part, int) else str(part), False, None))
    last = max((n for n, s in enumerate(steps) if s[1]), default=-1)
    head, rest = steps[: last + 1], steps[last + 1 :]
    if head and not rest and head[-1][2] is None and len(head) > 1 and not head[-2][1]:
        # [selfservice.tiers.A] as a whole: say "[selfservice.tiers] A".
        head, rest = head[:-1], [(head[-1][0], False, None)]
    table = ""
    if head:
        path = ".".join(text for text, _, _ in head)
        index = head[-1][2]
        table = f"[{path}]" if index is None else f"[[{path}]] #{index + 1}"
    key = ""
    for text, _, _ in rest:
        key += (" " if text.startswith("#") else ".") + text if key else text
    return table, key, holder, tagged


def _message(error: ErrorDetails, holder: type[BaseModel] | None, key: str) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        known = sorted(holder.model_fields) if holder is not None else []
        hint = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=1)
        return "unknown key" + (f" (did you mean {hint[0]}?)" if hint else "")
    if kind == "missing":
        return "required"
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def _line(table: str, key: str, message: str) -> str:
    if key:
        line = f"{table} {key}: {message}" if table else f"{key}: {message}"
    else:
        line = f"{table} {message}" if table else message
    return " ".join(line.splitlines())


def describe(root: type[BaseModel], error: ErrorDetails) -> str:
    """One line for one pydantic error: ``[table] key: message``."""
    table, key, holder, _ = _where(root, tuple(error["loc"]))
    return _line(table, key, _message(error, holder, key))


def problems(root: type[BaseModel], err: ValidationError) -> list[str]:
    """Every problem in ``err``, one line each, in file order, without repeats. A value
    that fits no member of a union (a text: a string or a table) is one line."""
    found: list[tuple[str, str, list[str]]] = []  # table, key, messages
    union: dict[tuple[str, str], list[str]] = {}
    for error in err.errors():
        table, key, holder, tagged = _where(root, tuple(error["loc"]))
        message = _message(error, holder, key)
        if tagged and (table, key) in union:
            if message not in union[(table, key)]:
                union[(table, key)].append(message)
            continue
        found.append((table, key, [message]))
        if tagged:
            union[(table, key)] = found[-1][2]
    lines: list[str] = []
    for table, key, messages in found:
        line = _line(table, key, " or ".join(messages))
        if line not in lines:
            lines.append(line)
    return lines
