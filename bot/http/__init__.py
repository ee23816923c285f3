"""The bot's HTTP side for operators: health (``/healthz``, ``/readyz``), Prometheus metrics
(``/metrics``) and the live wallboard (``/dashboard``), served on the webhook server or, in
polling mode, on ``CONTACTBOT_HTTP_PORT`` (:mod:`bot.http.server`). Telegram's ``/webhook``
handler itself is the intake's (bot/intake.py): it stores before it confirms."""
