"""Benchmark 2: VIP routing latency under a background load of ordinary traffic.

    python -m bench latency [--size tiny|default] [--json FILE]

The bot runs as its own process (``python -m bot run``) on a seeded SQLite file. A paced
driver queues ordinary messages (self-service and relays both ways) at a steady rate and,
interleaved, VIP first messages, each from a different VIP, so each opens a chat and pages
the online agents. Latency is measured inside the fake API on one clock: from the moment a
VIP's update is put into a ``getUpdates`` response to the moment the first page for that VIP
(a ``sendMessage`` to an agent naming the VIP) arrives at the fake.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    BenchAPI,
    Figure,
    Traffic,
    bot_process,
    percentile,
    processed_count,
    seed,
    wait_done,
)


@dataclass(frozen=True)
class Size:
    vips: int
    vip_rate: float  # VIP messages per second
    background_rate: float  # ordinary messages per second
    customers: int


SIZES = {
    "tiny": Size(vips=20, vip_rate=20, background_rate=40, customers=2000),
    "default": Size(vips=1000, vip_rate=10, background_rate=10, customers=30_000),
}


async def run(size_name: str = "default", workdir: Path | None = None) -> list[Figure]:
    size = SIZES[size_name]
    with tempfile.TemporaryDirectory(prefix="contactbot-bench-") as tmp:
        wd = workdir or Path(tmp)
        world = await seed(wd / "latency.db", size.customers)
        if len(world.vips) < size.vips:
            raise RuntimeError(f"only {len(world.vips)} VIPs seeded; need {size.vips}")
        traffic = Traffic(world)
        vip_update: dict[int, int] = {}  # VIP Telegram id -> update id
        agents = set(world.agents)
        async with (
            BenchAPI() as api,
            bot_process(api, wd / "latency.log", db_url=world.db_url) as _bot,
        ):
            base = processed_count(world.db_path)
            mark = api.mark()
            sent = 0
            total_rate = size.vip_rate + size.background_rate
            vip_share = size.vip_rate / total_rate
            duration = size.vips / size.vip_rate
            t0 = time.monotonic()
            vips_sent = 0
            # A paced open loop: the driver queues on schedule whether or not the bot keeps up.
            while vips_sent < size.vips:
                due = t0 + sent / total_rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                # Deterministic interleaving: VIPs get their share of the slots.
                if int((sent + 1) * vip_share) > int(sent * vip_share):
                    vip = traffic.next_vip()
                    msg = api.user_message(vip, "my order arrived broken")
                    vip_update[vip] = api._next_update_id - 1
                    vips_sent += 1
                else:
                    user, text, _ = traffic.ordinary()
                    msg = api.user_message(user, text)
                del msg
                sent += 1
            send_span = time.monotonic() - t0
            await wait_done(lambda: processed_count(world.db_path) - base, sent, timeout=120)
            await api.wait_idle(quiet=0.3, timeout=30)
        # Match each page to its VIP by name ("Customer 123") in the notification text.
        first_page: dict[int, float] = {}
        name_to_vip = {f"Customer {vip - 100_000_000}": vip for vip in vip_update}
        for call in api.calls[mark:]:
            if call.method != "sendMessage" or call.chat_id not in agents:
                continue
            head = (call.text or "").split("\n", 1)[0]
            for name, vip in _names_in(head, name_to_vip):
                first_page.setdefault(vip, call.at)
                del name
        lat_ms = []
        missing = 0
        for vip, update_id in vip_update.items():
            handed = api.handed_at.get(update_id)
            page = first_page.get(vip)
            if handed is None or page is None:
                missing += 1
                continue
            lat_ms.append((page - handed) * 1000)
    if not lat_ms:
        raise RuntimeError("no VIP page was observed")
    p50, p99, worst = percentile(lat_ms, 50), percentile(lat_ms, 99), max(lat_ms)
    achieved = sent / send_span if send_span else 0.0
    print(
        f"  {len(lat_ms)} VIP pages over {duration:.0f}s at {achieved:.0f} msg/s offered "
        f"({size.vip_rate:.0f} VIP/s + {size.background_rate:.0f} ordinary/s); missing {missing}"
    )
    return [
        Figure("latency_vip_p50_ms", p50, "ms"),
        Figure("latency_vip_p99_ms", p99, "ms", goal="< 50 ms", met=p99 < 50),
        Figure("latency_vip_max_ms", worst, "ms"),
        Figure("latency_vip_messages", float(len(lat_ms)), "messages"),
        Figure("latency_vip_missing_pages", float(missing), "messages"),
    ]


def _names_in(head: str, names: dict[str, int]) -> list[tuple[str, int]]:
    """The VIP named in a notification's first line ("New chat #12 · VIP · Customer 123")."""
    idx = head.rfind("Customer ")
    if idx < 0:
        return []
    digits = ""
    for ch in head[idx + len("Customer ") :]:
        if not ch.isdigit():
            break
        digits += ch
    name = f"Customer {digits}"
    return [(name, names[name])] if name in names else []
