"""``contactbot policy check``: validate a policy file, one line per problem."""

from __future__ import annotations

import argparse

from bot.cli.output import err, out
from bot.config import Settings
from routing.policy.root import PolicyError, load_policy


def cmd_policy(settings: Settings, args: argparse.Namespace) -> int:
    path = args.file or settings.policy_path()
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        if not exc.problems:  # unreadable, or not TOML: main() prints its one line
            raise
        n = len(exc.problems)
        err.print(
            f"contactbot: {exc.summary} ({n} problem{'s' if n > 1 else ''}):",
            markup=False,
            emoji=False,
        )
        for problem in exc.problems:  # one line each: "[table] key: what is wrong"
            err.print(f"  {problem}", markup=False, emoji=False)
        return 2
    source = str(path) if path else "built-in defaults"
    out.print(
        f"{source}: OK ({len(policy.tiers)} tiers: {', '.join(policy.tier_names)}; "
        f"{len(policy.selfservice.faq)} FAQ entries, {len(policy.selfservice.menus)} menus, "
        f"{len(policy.selfservice.actions)} actions)"
    )
    return 0
