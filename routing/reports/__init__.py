"""Reports: the figures behind ``contactbot report`` (and /stats and the wallboard).

  period         the period ``[since, until)`` from ``--since 30d`` / ``--until DATE``
  stats          percentiles, SLA shares, CSAT, NPS (pure arithmetic)
  conversations  one row per conversation of the period, judged against the SLA targets
  feedback       NPS, self-service deflection, complaints
  revenue        tier distribution and movements, revenue concentration, revenue at risk
  build          the whole report (``build(session, policy, period)``)
  export         JSON (every figure) and CSV (summary rows, then one row per conversation)
  charts, page   the self-contained HTML page with inline SVG charts
  columns, formatting  how figures read in the terminal table and the page
  live           the figures of right now, for the wallboard and /metrics

Each module's docstring defines its figures exactly. Nothing here writes to the database.
"""
