"""FAQ search: ranking, synonyms, typos, Chinese, confidence and the next-best answers."""

from __future__ import annotations

import pytest

from routing.policy.root import Policy
from routing.policy.selfservice_parts import FaqEntry, SearchPolicy
from routing.selfservice.knowledge import KnowledgeIndex, decide, tokens

SS = Policy().selfservice
INDEX = KnowledgeIndex.build(SS.faq, SS.search)


def _best(query: str) -> str | None:
    answer = decide(INDEX.search(query), SS.search)
    return answer.best.entry_id if answer.best else None


@pytest.mark.parametrize(
    ("query", "entry"),
    [
        ("when will my parcel arive?", "delivery"),  # synonym (parcel) + typo (arive)
        ("how do I get a refnd", "refunds"),  # typo
        ("can I pay with paypal", "payment"),
        ("I want to return shoes, wrong size", "returns"),
        ("change my adress please", "address"),
        ("快递什么时候到", "delivery"),
        ("怎么修改收获地址", "address"),  # 收获 mistyped for 收货
        ("你们几点上班", "hours"),
        ("可以用支付宝吗", "payment"),
        ("我想退款", "refunds"),
    ],
)
def test_confident_answers_in_english_and_chinese(query: str, entry: str) -> None:
    assert _best(query) == entry


def test_no_match_and_ambiguous_questions_are_not_answered_outright() -> None:
    assert INDEX.search("what is the meaning of life") == []
    # "order" is in several answers: offered as choices, not answered.
    ambiguous = decide(INDEX.search("where is my order"), SS.search)
    assert ambiguous.best is None and len(ambiguous.suggestions) >= 2


def test_after_no_the_shown_answer_is_excluded_and_the_next_best_offered() -> None:
    matches = INDEX.search("refund for my return")
    after_no = decide(matches, SS.search, exclude="refunds")
    ids = [m.entry_id for m in after_no.suggestions]
    assert "refunds" not in ids and ids[0] == "returns"
    assert len(ids) <= SS.search.suggestions


def test_synonyms_rank_an_entry_that_never_uses_the_customers_word() -> None:
    entries = (
        FaqEntry(id="ship", question="Delivery", answer="We deliver in 3 days."),
        FaqEntry(id="other", question="Gift cards", answer="Gift cards never expire."),
    )
    plain = KnowledgeIndex.build(entries, SearchPolicy(synonyms=()))
    with_syn = KnowledgeIndex.build(entries, SearchPolicy(synonyms=(("delivery", "courier"),)))
    assert plain.search("courier") == []
    assert [m.entry_id for m in with_syn.search("courier")] == ["ship"]


def test_visibility_filters_entries_per_tier() -> None:
    assert "payment" in [m.entry_id for m in INDEX.search("paypal or card")]
    hidden = INDEX.search("paypal or card", visible=lambda e: e != "payment")
    assert "payment" not in [m.entry_id for m in hidden]


def test_tokens_split_words_and_chinese_bigrams() -> None:
    assert tokens("Shipping the parcels!") == ["shipp", "parcel"]
    assert tokens("修改地址") == ["修", "改", "地", "址", "修改", "改地", "地址"]
