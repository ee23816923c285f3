"""What customers read about surveys: the questions, the thanks, the opt-out.

(The CSAT figures supervisors see are in :mod:`bot.texts.supervisor`, the page to a VIP's
account manager in :mod:`bot.texts.agent`.) Every text is a function translating at call
time (see :mod:`bot.texts`).
"""

from __future__ import annotations

from bot.i18n import _


def csat_question() -> str:
    return _("How satisfied were you with our help? Tap a score from 1 (poor) to 5 (excellent).")


def nps_question() -> str:
    return _(
        "How likely are you to recommend us to a friend or colleague? "
        "Tap a score from 0 (not at all likely) to 10 (extremely likely)."
    )


def thanks_score(score: int, high: int) -> str:
    return _("Thank you! You rated us {score}/{high}.").format(score=score, high=high)


def csat_comment_prompt() -> str:
    return _("Anything you would like to add? Send it as a message, or tap Skip.")


def nps_followup() -> str:
    return _("What is the main reason for your score? Send it as a message, or tap Skip.")


def skip_button() -> str:
    return _("Skip")


def comment_thanks() -> str:
    return _("Thank you for your feedback, we read every comment.")


def skipped_thanks() -> str:
    return _("Thank you for your feedback!")


def recovery_note() -> str:
    return _("We are sorry we let you down. A member of our team will contact you shortly.")


def already_answered() -> str:
    return _("You have already answered this survey. Thank you!")


def expired() -> str:
    return _("This survey has closed. Thank you all the same!")


def unknown_survey() -> str:
    return _("This survey is no longer available.")


def comment_done() -> str:
    return _("Your comment was already recorded or skipped.")


def stopped(skipped: int) -> str:
    return _("You will receive no more surveys. Send /start_surveys to receive them again.")


def started() -> str:
    return _("Surveys are on again. Send /stop_surveys to turn them off.")
