"""What must match exactly for a semantic hit (the partition), and the pairwise checks (no model needed)."""

from __future__ import annotations

from tollgate.policies.cache import _normalise_field
from tollgate.policies.semantic_cache import compatible, guards, last_user_text, names, semantic_query
from tollgate.providers.base import Deployment
from tollgate.routing.resolver import Route


def _route(model: str = "gpt-4o-mini") -> Route:
    return Route(
        "fast", (Deployment(provider="openai", provider_type="openai", model=model, base_url="http://x"),), True
    )


def _part(body: dict, scope: str = "org:a", fmt: str = "openai", route: Route | None = None) -> str | None:  # type: ignore[type-arg]
    q = semantic_query(fmt, route or _route(), scope, body, 0.85, _normalise_field)
    return q.partition if q is not None else None


def _body(last: str, **extra: object) -> dict:  # type: ignore[type-arg]
    return {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": last}], **extra}


def test_only_the_last_user_message_may_differ() -> None:
    base = _part(_body("Can dogs eat grapes?"))
    assert base is not None and base == _part(_body("Are grapes safe for dogs?"))
    assert base == _part(_body("Are grapes safe for dogs?", stream=True, user="u1", metadata={"x": "y"}))
    different = [
        _part(_body("Can dogs eat grapes?"), scope="org:b"),
        _part(_body("Can dogs eat grapes?"), fmt="anthropic"),
        _part(_body("Can dogs eat grapes?"), route=_route("gpt-4o")),
        _part(_body("Can dogs eat grapes?", temperature=0.5)),
        _part(_body("Can dogs eat grapes?", max_tokens=10)),
        _part(_body("Can dogs eat grapes?", tools=[{"type": "function", "function": {"name": "f"}}])),
        _part(
            {
                "messages": [
                    {"role": "system", "content": "Be long."},
                    {"role": "user", "content": "Can dogs eat grapes?"},
                ]
            }
        ),
        _part(
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "Can dogs eat grapes?"},
                ]
            }
        ),
        _part(_body("Can dogs eat 3 grapes?")),
        _part(_body("Can't dogs eat grapes?")),
    ]
    assert base not in different and len(set(different)) == len(different)


def test_what_is_compared() -> None:
    assert (
        last_user_text([{"role": "user", "content": [{"type": "text", "text": " a "}, {"type": "text", "text": "b"}]}])[
            0
        ]
        == "a \nb"
    )  # type: ignore[index]
    assert last_user_text([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]) is None
    assert last_user_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]) is None
    assert last_user_text([{"role": "tool", "content": "42", "tool_call_id": "c"}]) is None
    assert last_user_text([{"role": "user", "content": "   "}]) is None
    assert last_user_text("not a list") is None


def test_guards_read_numbers_in_order_and_negation() -> None:
    assert guards("What is 24 minus 17?") != guards("What is 17 minus 24?")
    assert guards("Refund order 12,345 now") == {"numbers": ["12,345"], "times": [], "units": [], "negated": False}
    for negated in ("Don't cancel it", "do not cancel it", "I never did", "Why can\u2019t I log in?", "No refund"):
        assert guards(negated)["negated"] is True, negated
    assert guards("Cancel it, nowhere else") == {"numbers": [], "times": [], "units": [], "negated": False}


def test_guards_read_number_words_and_time_expressions() -> None:
    assert guards("Reserve a room for two nights")["numbers"] == guards("Reserve a room for 2 nights")["numbers"]
    assert guards("Give me five tips") != guards("Give me ten tips")
    assert guards("Summarize the second chapter")["numbers"] == ["2th"]
    assert guards("Show my calendar for this week")["times"] == ["this week"]
    assert guards("Show my calendar for next  Week") != guards("Show my calendar for this week")
    assert guards("What did the stock close at today?") != guards("What did the stock close at yesterday?")
    assert guards("Store hours on weekdays") != guards("Store hours on weekends")
    assert guards("Is it open in May?")["times"] == []  # "may" is mostly the verb


def test_pairwise_checks() -> None:
    assert compatible("How do I enable dark mode?", "How can I enable dark mode?", 0.96)
    assert not compatible("How do I disable dark mode?", "How do I enable dark mode?", 0.97)  # opposites
    assert not compatible("Book a flight from Rome to Paris", "Book a flight from Paris to Rome", 0.998)  # order
    # One content word swapped needs the substitution bar; morphology (plural) is not a swap.
    assert not compatible("Can cats eat grapes?", "Can dogs eat grapes?", 0.90)
    assert compatible("Where is my parcel?", "Where is my package?", 0.96)
    assert compatible("How do vaccines work?", "How does a vaccine work?", 0.90)
    assert compatible("What's the capital city of France?", "What is the capital city of France, please?", 0.9)
    # A negating prefix makes the opposite request; "into" / "to" is not one.
    assert not compatible("Is the tap water unsafe to drink?", "Is the tap water safe to drink?", 0.98)
    assert not compatible("Is this mushroom edible?", "Is this mushroom inedible?", 0.97)
    assert compatible("How can I turn a list into a set?", "How do I convert a list to a set?", 0.96)


def test_names_are_the_capitalised_words_a_sentence_start_does_not_explain() -> None:
    assert names("What is Kubernetes? Explain it to me.") == ["Kubernetes"]
    assert names("How do I center text in Google Docs?") == ["Google", "Docs"]
    assert names("I'm moving my iPhone photos to a PC. Is SQL involved?") == ["iPhone", "PC", "SQL"]
    assert names("Please explain how caching works.") == []  # capitalised only because the sentence starts


def test_another_name_is_another_question() -> None:
    # A product, a day or a place the other message does not mention: never the same answer.
    assert not compatible("How do I center text in Google Docs?", "How do I center text in Word?", 0.88)
    assert not compatible("Are shops open on Christmas Eve?", "Are shops open on Christmas Day?", 0.97)
    assert not compatible("Best time to visit Lisbon?", "Best time to visit Porto?", 0.9)
    # The same names, however written, still hit.
    assert compatible("What is Kubernetes?", "Explain kubernetes to me.", 0.9)
    assert compatible("How do I center a div in CSS?", "How can I center a div with CSS?", 0.95)
    assert compatible("Is the museum open on Sundays?", "Is the museum open on Sunday?", 0.97)
    # Permission antonyms are opposites.
    assert not compatible("Are pets allowed in the apartment?", "Are pets prohibited in the apartment?", 0.98)


def test_units_and_periods_must_match() -> None:
    assert guards("Set the timeout to 30 seconds")["units"] == ["s"]
    assert guards("64 GB of storage")["units"] == guards("64 gigabytes of storage")["units"] == ["gb"]
    assert guards("Bake at 180°C")["units"] == ["c"] and guards("Bake at 180 °F")["units"] == ["f"]
    assert guards("15 euros monthly")["units"] == ["eur", "per-month"]
    assert guards("Is 39 degrees Celsius a fever?")["units"] == ["c"]
    assert guards("Put it in the box")["units"] == []  # "in" is a word, "inch" is the unit


def test_scope_and_inclusion_are_opposites() -> None:
    assert not compatible("Delete all files including the hidden ones", "Delete all files except the hidden ones", 0.98)
    assert not compatible("Replace the word on the current line in vim", "Replace the word in the whole file", 0.9)
    assert not compatible("How much did I spend this month?", "How much did our household spend this month?", 0.9)
    assert not compatible("Commits made since Monday", "Commits made before Monday", 0.97)
