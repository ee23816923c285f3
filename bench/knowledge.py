"""Benchmark: FAQ search (routing/selfservice/knowledge.py): accuracy, index build and query
time, and
character bigrams against jieba word segmentation for Chinese.

    python -m bench.knowledge [--entries 500] [--queries 2000] [--no-jieba]

Accuracy is measured on a labelled set of customer questions (English and Chinese, some with
typos) against the shipped FAQ: top-1 (the best match is the right entry) and answered (a
confident answer, and the right one). Build and query times use the shipped FAQ replicated
to ``--entries`` entries. jieba's cold load time is measured in a fresh process.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from routing.policy.root import Policy
from routing.policy.selfservice import SelfServicePolicy
from routing.policy.selfservice_parts import FaqEntry
from routing.selfservice.knowledge import _CJK_STOP, KnowledgeIndex, decide, tokens

LABELLED: list[tuple[str, str]] = [
    ("when will my parcel arive?", "delivery"),
    ("my package is late", "delivery"),
    ("how long does shipping take", "delivery"),
    ("how do I get a refnd", "refunds"),
    ("I want my money back", "refunds"),
    ("can I pay with paypal", "payment"),
    ("do you take credit cards", "payment"),
    ("I want to return shoes, wrong size", "returns"),
    ("can I exchange an item", "returns"),
    ("change my adress please", "address"),
    ("I moved, new address", "address"),
    ("what are your opening hours", "hours"),
    ("are you open on the weekend", "hours"),
    ("快递什么时候到", "delivery"),
    ("包裹到哪了", "delivery"),
    ("物留太慢了", "delivery"),  # 物留 mistyped for 物流
    ("我想退款", "refunds"),
    ("退钱要多久", "refunds"),
    ("可以用支付宝吗", "payment"),
    ("怎么付欵", "payment"),  # 付欵 mistyped for 付款
    ("我想退货", "returns"),
    ("尺码不对可以换货吗", "returns"),
    ("怎么修改收获地址", "address"),  # 收获 mistyped for 收货
    ("我搬家了", "address"),
    ("你们几点上班", "hours"),
    ("周末营业吗", "hours"),
]


def jieba_tokens() -> Callable[[str], list[str]]:
    import jieba

    jieba.setLogLevel(60)
    cjk = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")

    def tokenize(text: str) -> list[str]:
        out: list[str] = []
        for part in re.split(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)", text):
            if cjk.fullmatch(part):
                out += [w for w in jieba.lcut(part) if w not in _CJK_STOP]
            elif part:
                out += tokens(part)
        return out

    return tokenize


def accuracy(
    ss: SelfServicePolicy, tokenize: Callable[[str], list[str]], items: Sequence[tuple[str, str]]
) -> tuple[float, float]:
    index = KnowledgeIndex.build(ss.faq, ss.search, tokenize)
    top1 = answered = 0
    for query, want in items:
        matches = index.search(query)
        top1 += bool(matches) and matches[0].entry_id == want
        best = decide(matches, ss.search).best
        answered += best is not None and best.entry_id == want
    return top1 / len(items), answered / len(items)


def scaled(ss: SelfServicePolicy, n: int) -> list[FaqEntry]:
    return [
        e.model_copy(update={"id": f"{e.id}-{i}"})
        for i in range(n // len(ss.faq) + 1)
        for e in ss.faq
    ][:n]


def jieba_load_seconds() -> float:
    code = "import time; t=time.perf_counter(); import jieba; jieba.setLogLevel(60); "
    code += "jieba.initialize(); print(time.perf_counter()-t)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(run.stdout.strip())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.knowledge")
    p.add_argument("--entries", type=int, default=500)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--no-jieba", action="store_true", help="skip the jieba comparison")
    args = p.parse_args(argv)
    ss = Policy().selfservice
    en = [x for x in LABELLED if x[0].isascii()]
    zh = [x for x in LABELLED if not x[0].isascii()]

    top1, answered = accuracy(ss, tokens, LABELLED)
    zh_top1, zh_answered = accuracy(ss, tokens, zh)
    en_top1, _ = accuracy(ss, tokens, en)
    print(f"labelled questions: {len(LABELLED)} ({len(en)} English, {len(zh)} Chinese)")
    print(
        f"bigrams: top-1 {top1:.0%} (en {en_top1:.0%}, zh {zh_top1:.0%}); answered {answered:.0%}"
    )
    figures = {
        "knowledge_top1": top1,
        "knowledge_answered": answered,
        "knowledge_zh_top1_bigrams": zh_top1,
        "knowledge_zh_answered_bigrams": zh_answered,
    }
    if not args.no_jieba:
        j_top1, j_answered = accuracy(ss, jieba_tokens(), zh)
        load = jieba_load_seconds()
        print(
            f"jieba (zh only): top-1 {j_top1:.0%}; answered {j_answered:.0%}; "
            f"cold load {load:.2f} s"
        )
        figures |= {
            "knowledge_zh_top1_jieba": j_top1,
            "knowledge_zh_answered_jieba": j_answered,
            "knowledge_jieba_load_s": load,
        }

    entries = scaled(ss, args.entries)
    t = time.perf_counter()
    index = KnowledgeIndex.build(entries, ss.search)
    build_ms = (time.perf_counter() - t) * 1000
    times = []
    for i in range(args.queries):
        q = LABELLED[i % len(LABELLED)][0]
        t = time.perf_counter()
        index.search(q)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    p50 = statistics.median(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(
        f"{len(entries)} entries: build {build_ms:.1f} ms; query p50 {p50:.3f} ms, p99 {p99:.3f} ms"
    )
    figures |= {
        "knowledge_build_ms": build_ms,
        "knowledge_query_p50_ms": p50,
        "knowledge_query_p99_ms": p99,
    }
    for name, value in figures.items():
        print(f"{name}: {value:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
