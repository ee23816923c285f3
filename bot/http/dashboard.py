"""``/dashboard``: the live wallboard, and ``/dashboard/data``, the JSON it refreshes from.

Behind ``CONTACTBOT_DASHBOARD_TOKEN``, given as ``Authorization: Bearer <token>``, as
``?token=<token>``, or as the password of HTTP basic auth (any user name). No token
configured: both routes answer 404 (the wallboard is off, never open). A missing or wrong
token: 401 (the page's 401 carries a basic-auth challenge, so a browser asks).

The page is one self-contained HTML document (no CDN, no external file): its script fetches
``/dashboard/data`` every :data:`REFRESH_SECONDS` with the same credentials (the ``token`` of
its own URL as a Bearer header; a browser resends basic auth by itself) and ticks the SLA
clocks every second in between. Everything shown is inserted as text, never as HTML.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from routing.policy.root import Policy
from routing.reports import live

__all__ = ["REFRESH_SECONDS", "authorized", "board_json", "dashboard_routes"]

REFRESH_SECONDS = 5


def authorized(request: web.Request, token: str) -> bool:
    """The request carries ``token`` (Bearer header, ``?token=``, or basic-auth password)."""
    expected = token.encode()
    given: list[str] = []
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        given.append(value.strip())
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        given.append(decoded.partition(":")[2])
    if "token" in request.query:
        given.append(request.query["token"])
    # Every candidate is compared (in constant time each), none short-circuits.
    return any([hmac.compare_digest(g.encode(), expected) for g in given if g])


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def board_json(b: live.Board) -> dict[str, Any]:
    """The wallboard's data as JSON-ready values (datetimes as ISO 8601, seconds rounded)."""
    return {
        "now": _iso(b.now),
        "since": _iso(b.since),
        "refresh_seconds": REFRESH_SECONDS,
        "tiers": b.tiers,
        "queue": [
            {"tier": t.tier, "waiting": t.waiting, "oldest_wait_s": _round(t.oldest_wait(b.now))}
            for t in b.queue.tiers
        ],
        "agents_online": b.queue.agents_online,
        "chats_assigned": b.queue.chats_assigned,
        "waiting": [
            {
                "id": w.conversation_id,
                "tier": w.tier,
                "customer": w.customer,
                "queued_at": _iso(w.queued_at),
                "waited_s": _round(w.waited_s),
                "target_s": w.target_s,
                "warn_s": _round(w.warn_s),
                "sla": w.sla,
                "reserved_for": w.reserved_for,
            }
            for w in b.waiting
        ],
        "agents": [{**asdict(a), "last_active_at": _iso(a.last_active_at)} for a in b.agents],
        "today": [
            {
                "tier": d.tier,
                "chats": d.chats,
                "sla_met": d.met,
                "sla_missed": d.missed,
                "sla_pending": d.pending,
                "sla_met_share": _round(d.sla_met_share, 4),
                "csat_average": _round(d.csat_average, 2),
                "csat_answers": d.csat_answers,
                "csat_sent": d.csat_sent,
                "csat_response_rate": _round(d.csat_response_rate, 4),
                "breaches": d.breaches,
                "complaint_breaches": d.complaint_breaches,
            }
            for d in b.today
        ],
        "breaches": [{**asdict(x), "at": _iso(x.at)} for x in b.breaches],
        "complaints_open": b.complaints_open,
        "complaints": [
            {**asdict(c), "opened_at": _iso(c.opened_at), "due_at": _iso(c.due_at)}
            for c in b.complaints
        ],
    }


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def dashboard_routes(
    token: str | None,
    sessions: async_sessionmaker[AsyncSession],
    policy: Policy,
    clock: Callable[[], datetime],
) -> list[web.RouteDef]:
    """``GET /dashboard`` and ``GET /dashboard/data``."""

    def guarded(handler: Handler, *, challenge: bool) -> Handler:
        async def guard(request: web.Request) -> web.StreamResponse:
            if not token:
                raise web.HTTPNotFound(text="the dashboard is off: set CONTACTBOT_DASHBOARD_TOKEN")
            if not authorized(request, token):
                headers = (
                    {"WWW-Authenticate": 'Basic realm="contactbot dashboard", charset="UTF-8"'}
                    if challenge
                    else {}
                )
                raise web.HTTPUnauthorized(text="a dashboard token is needed", headers=headers)
            response = await handler(request)
            response.headers["Cache-Control"] = "no-store"
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers["X-Content-Type-Options"] = "nosniff"
            return response

        return guard

    async def page(_request: web.Request) -> web.StreamResponse:
        nonce = secrets.token_urlsafe(16)
        html = PAGE.replace("{nonce}", nonce).replace("{refresh}", str(REFRESH_SECONDS))
        response = web.Response(text=html, content_type="text/html", charset="utf-8")
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'"
        )
        return response

    async def data(_request: web.Request) -> web.StreamResponse:
        async with sessions() as s:
            b = await live.board(s, policy, clock())
        return web.json_response(board_json(b), dumps=lambda v: json.dumps(v, ensure_ascii=False))

    return [
        web.get("/dashboard", guarded(page, challenge=True)),
        web.get("/dashboard/data", guarded(data, challenge=False)),
    ]


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>contactbot wallboard</title>
<style nonce="{nonce}">
:root { --bg:#0f1419; --panel:#182028; --line:#2a3642; --text:#e6edf3; --dim:#8b98a5;
        --ok:#3fb950; --warn:#d29922; --bad:#f85149; --accent:#58a6ff; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       background:var(--bg); color:var(--text); }
header { display:flex; align-items:baseline; gap:1rem; padding:.8rem 1.2rem;
         border-bottom:1px solid var(--line); }
header h1 { font-size:1.2rem; margin:0; }
#status { color:var(--dim); font-size:.9rem; }
#status.stale { color:var(--bad); font-weight:600; }
main { display:grid; grid-template-columns: 2fr 1fr; gap:1rem; padding:1rem 1.2rem; }
section { background:var(--panel); border:1px solid var(--line); border-radius:8px;
          padding:.8rem 1rem; min-width:0; }
section.wide { grid-column: 1 / -1; }
h2 { font-size:.95rem; margin:0 0 .6rem; color:var(--dim); text-transform:uppercase;
     letter-spacing:.05em; }
#tiers { display:flex; gap:.8rem; flex-wrap:wrap; }
.tier { flex:1 1 10rem; background:var(--bg); border:1px solid var(--line); border-radius:8px;
        padding:.6rem .8rem; }
.tier .name { font-weight:700; color:var(--accent); }
.tier .big { font-size:2.2rem; font-weight:700; line-height:1.1; }
.tier .small { color:var(--dim); font-size:.85rem; }
table { width:100%; border-collapse:collapse; }
th, td { text-align:left; padding:.3rem .4rem; border-bottom:1px solid var(--line);
         white-space:nowrap; overflow:hidden; text-overflow:ellipsis; max-width:16rem; }
th { color:var(--dim); font-weight:500; font-size:.85rem; }
td.num, th.num { text-align:right; font-variant-numeric: tabular-nums; }
.sla-ok { color:var(--ok); } .sla-warn { color:var(--warn); } .sla-breach { color:var(--bad); }
.bar { height:.45rem; background:var(--line); border-radius:3px; overflow:hidden; min-width:5rem; }
.bar > span { display:block; height:100%; background:var(--ok); }
.bar.sla-warn > span { background:var(--warn); } .bar.sla-breach > span { background:var(--bad); }
.empty { color:var(--dim); font-style:italic; }
.pill { display:inline-block; padding:0 .4rem; border-radius:.6rem; font-size:.8rem;
        background:var(--line); }
@media (max-width: 900px) { main { grid-template-columns: 1fr; } }
</style>
</head>
<body data-loaded="0">
<header>
  <h1>contactbot wallboard</h1>
  <span id="status">loading&hellip;</span>
</header>
<main>
  <section class="wide"><h2>Queue by tier</h2><div id="tiers"></div></section>
  <section><h2>Waiting chats <span id="waiting-count" class="pill">0</span></h2>
    <table id="waiting"><thead><tr><th>#</th><th>Tier</th><th>Customer</th>
      <th class="num">Waited</th><th class="num">Target</th><th>SLA clock</th><th>Held for</th>
    </tr></thead><tbody></tbody></table></section>
  <section><h2>Agents online <span id="agents-count" class="pill">0</span></h2>
    <table id="agents"><thead><tr><th>Agent</th><th class="num">Load</th><th></th>
      <th>Tiers</th></tr></thead><tbody></tbody></table></section>
  <section class="wide"><h2>Today (UTC) by tier</h2>
    <table id="today"><thead><tr><th>Tier</th><th class="num">Chats</th>
      <th class="num">SLA met</th><th class="num">Met / missed / open</th>
      <th class="num">CSAT</th><th class="num">Answers / sent</th>
      <th class="num">Breaches</th><th class="num">Complaint breaches</th>
    </tr></thead><tbody></tbody></table></section>
  <section><h2>Breaches today</h2>
    <table id="breaches"><thead><tr><th>When</th><th>What</th><th>Tier</th><th>Target</th>
    </tr></thead><tbody></tbody></table></section>
  <section><h2>Open complaints <span id="complaints-count" class="pill">0</span></h2>
    <table id="complaints"><thead><tr><th>Case</th><th>Tier</th><th>Customer</th>
      <th>Category</th><th>Status</th><th>Next due</th></tr></thead><tbody></tbody></table>
  </section>
</main>
<script nonce="{nonce}">
"use strict";
(function () {
  const REFRESH_MS = {refresh} * 1000;
  const token = new URLSearchParams(location.search).get("token");
  const dataUrl = location.pathname.replace(/\\/+$/, "") + "/data";
  let data = null, fetchedAt = 0, failures = 0;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "class") node.className = v; else node.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  function clock(s) {
    if (s === null || s === undefined) return "\\u2013";
    s = Math.max(0, Math.floor(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const mm = String(m).padStart(h ? 2 : 1, "0"), ss = String(sec).padStart(2, "0");
    return h ? h + ":" + mm + ":" + ss : mm + ":" + ss;
  }
  function pct(x) { return x === null || x === undefined ? "\\u2013" : Math.round(x * 100) + "%"; }
  function time(iso) { return iso ? new Date(iso).toISOString().slice(11, 16) : "\\u2013"; }
  function elapsed() { return data ? (Date.now() - fetchedAt) / 1000 : 0; }
  function slaState(w, waited) {
    if (w.target_s === null) return "ok";
    if (waited >= w.target_s) return "breach";
    return waited >= w.warn_s ? "warn" : "ok";
  }
  function fill(id, rows, cols) {
    const body = document.querySelector("#" + id + " tbody");
    body.replaceChildren(...(rows.length ? rows :
      [el("tr", {}, el("td", {colspan: cols, class: "empty"}, "none"))]));
  }

  function renderTiers() {
    const box = document.getElementById("tiers");
    const today = Object.fromEntries(data.today.map(d => [d.tier, d]));
    box.replaceChildren(...data.queue.map(q => {
      const d = today[q.tier] || {};
      const oldest = q.waiting ? q.oldest_wait_s + elapsed() : null;
      return el("div", {class: "tier", "data-tier": q.tier},
        el("div", {class: "name"}, q.tier),
        el("div", {class: "big", "data-waiting": q.waiting}, q.waiting),
        el("div", {class: "small"}, "waiting \\u00b7 oldest " + clock(oldest)),
        el("div", {class: "small"}, "SLA met " + pct(d.sla_met_share) + " \\u00b7 CSAT " +
          (d.csat_average === null || d.csat_average === undefined ? "\\u2013" : d.csat_average)));
    }));
  }
  function renderWaiting() {
    document.getElementById("waiting-count").textContent = data.waiting.length;
    fill("waiting", data.waiting.map(w => {
      const waited = w.waited_s + elapsed();
      const state = slaState(w, waited);
      const share = w.target_s ? Math.min(waited / w.target_s, 1) : 0;
      const left = w.target_s === null ? "no target" :
        (waited >= w.target_s ? "over by " + clock(waited - w.target_s)
                              : clock(w.target_s - waited) + " left");
      const bar = el("div", {class: "bar sla-" + state}, el("span"));
      bar.firstChild.style.width = Math.round(share * 100) + "%";
      return el("tr", {class: "chat", "data-id": w.id, "data-tier": w.tier, "data-sla": state},
        el("td", {}, w.id), el("td", {}, w.tier), el("td", {class: "customer"}, w.customer),
        el("td", {class: "num sla-" + state}, clock(waited)),
        el("td", {class: "num"}, clock(w.target_s)),
        el("td", {}, bar, el("span", {class: "small sla-" + state}, left)),
        el("td", {}, w.reserved_for || ""));
    }), 7);
  }
  function renderAgents() {
    document.getElementById("agents-count").textContent = data.agents.length;
    fill("agents", data.agents.map(a => {
      const bar = el("div", {class: "bar" + (a.load >= a.max_chats ? " sla-warn" : "")},
        el("span"));
      bar.firstChild.style.width = Math.round(Math.min(a.load / a.max_chats, 1) * 100) + "%";
      const star = a.role === "supervisor" ? " \\u2605" : "";
      return el("tr", {class: "agent"}, el("td", {}, a.name + star),
        el("td", {class: "num"}, a.load + "/" + a.max_chats), el("td", {}, bar),
        el("td", {}, a.tiers ? a.tiers.join(", ") : "all"));
    }), 4);
  }
  function renderToday() {
    fill("today", data.today.map(d => el("tr", {"data-tier": d.tier},
      el("td", {}, d.tier), el("td", {class: "num"}, d.chats),
      el("td", {class: "num"}, pct(d.sla_met_share)),
      el("td", {class: "num"}, d.sla_met + " / " + d.sla_missed + " / " + d.sla_pending),
      el("td", {class: "num"}, d.csat_average === null ? "\\u2013" : d.csat_average),
      el("td", {class: "num"}, d.csat_answers + " / " + d.csat_sent),
      el("td", {class: "num" + (d.breaches ? " sla-breach" : "")}, d.breaches),
      el("td", {class: "num" + (d.complaint_breaches ? " sla-breach" : "")},
        d.complaint_breaches))), 8);
  }
  function renderBreaches() {
    fill("breaches", data.breaches.map(b => el("tr", {},
      el("td", {}, time(b.at)),
      el("td", {}, (b.what === "chat" ? "chat #" : "case #") + b.ref),
      el("td", {}, b.tier), el("td", {class: "sla-breach"}, b.kind.replace("_", " ")))), 4);
  }
  function renderComplaints() {
    document.getElementById("complaints-count").textContent = data.complaints_open;
    fill("complaints", data.complaints.map(c => el("tr", {class: "complaint"},
      el("td", {}, "#" + c.case), el("td", {}, c.tier), el("td", {}, c.customer),
      el("td", {}, c.category), el("td", {}, c.status),
      el("td", {class: c.overdue ? "sla-breach" : ""},
        c.due ? c.due + " " + time(c.due_at) + (c.overdue ? " (overdue)" : "") : "\\u2013"))), 6);
  }
  function render() {
    if (!data) return;
    renderTiers(); renderWaiting(); renderAgents(); renderToday(); renderBreaches();
    renderComplaints();
  }
  function setStatus(text, stale) {
    const s = document.getElementById("status");
    s.textContent = text;
    s.className = stale ? "stale" : "";
  }
  async function refresh() {
    try {
      const headers = token ? {Authorization: "Bearer " + token} : {};
      const r = await fetch(dataUrl, {headers, cache: "no-store", credentials: "same-origin"});
      if (r.status === 401) { setStatus("not authorised: check the token", true); return; }
      if (!r.ok) throw new Error("HTTP " + r.status);
      data = await r.json();
      fetchedAt = Date.now();
      failures = 0;
      render();
      document.body.dataset.loaded = "1";
      setStatus("updated " + new Date().toLocaleTimeString() + " \\u00b7 " +
        data.agents_online + " agents online, " + data.chats_assigned + " chats held", false);
    } catch (e) {
      failures += 1;
      setStatus("cannot refresh (" + e.message + "); showing data from " +
        (data ? new Date(fetchedAt).toLocaleTimeString() : "never"), true);
    }
  }
  refresh();
  setInterval(refresh, REFRESH_MS);
  setInterval(render, 1000);
})();
</script>
</body>
</html>
"""
