"""Hand-written evaluation sentences for PERSON and LOCATION (NER), with hard negatives.

Each positive sentence marks its true values as ``[[value|TYPE]]``; a hard negative has no marks. The sentences
are written in the registers a gateway sees (chat requests, some in lower case, support tickets, emails, notes,
code comments, JSON) and name people and places of many origins. The hard negatives are what an NER model
confuses with people and places: companies and products named after them ("Apple", "Amazon", "Tesla", "Ford"),
assistants ("Alexa", "Claude"), programming languages ("Julia", "Ruby"), common words that are also first names
("Will", "Grace", "Hope", "Summer", "Mark"), order and ticket numbers, and sentences where an ambiguous word is
the other thing ("Jordan" the country and "Jordan" a person are positives below, "Jordan" the sneaker is a
negative).
"""

from __future__ import annotations

import re

from tests.guardrails_eval.corpus import Sample
from tollgate.config.guardrails import EntityType

_MARK = re.compile(r"\[\[([^|\]]+)\|(PERSON|LOCATION)\]\]")

POSITIVE = [
    "Please draft a polite reply to [[Maria Gonzalez|PERSON]] about the delayed shipment.",
    "Can you summarise the call I had with [[John Smith|PERSON]] yesterday?",
    "[[Aisha Khan|PERSON]] will take over the account from next Monday.",
    "Translate this note for [[Lukas Müller|PERSON]]: the meeting moved to Thursday.",
    "My manager, [[Sofia Rossi|PERSON]], asked for the Q3 numbers by Friday.",
    "Write a birthday message for my colleague [[Omar Haddad|PERSON]].",
    "Schedule a meeting between [[Emma Brown|PERSON]] and [[Raj Patel|PERSON]] next week.",
    "The contract was signed by [[Chloe Martin|PERSON]] on behalf of the supplier.",
    "[[Diego Lopez|PERSON]] reported the bug, and [[Yuki Sato|PERSON]] fixed it.",
    "Dear Mr. [[Anderson|PERSON]], thank you for your order.",
    "Hi [[Priya|PERSON]], could you review the pull request before lunch?",
    "Forward the invoice to [[Hans Schmidt|PERSON]] in accounting.",
    "I need a reference letter for [[Fatima Al-Sayed|PERSON]], who worked with us for three years.",
    "[[Wei Chen|PERSON]] and [[Li Na|PERSON]] are presenting the roadmap.",
    "The patient, [[Robert Johnson|PERSON]], was admitted on Tuesday.",
    "Ask [[Olga Ivanova|PERSON]] whether the translation is finished.",
    "Please congratulate [[Kwame Mensah|PERSON]] on his promotion.",
    "[[Elizabeth Taylor|PERSON]] called about the refund again.",
    "Summarise the complaint from [[Pierre Dubois|PERSON]] in two sentences.",
    "My daughter [[Sarah|PERSON]] starts school in September.",
    "[[Ahmed Hassan|PERSON]] is the new head of security.",
    "Write an email to [[Jennifer Lee|PERSON]] declining the offer.",
    "The tenant, [[Michael O'Brien|PERSON]], has not paid the rent.",
    "Remind [[Carlos Mendes|PERSON]] to submit his expense report.",
    "I met [[Anna Kowalski|PERSON]] at the conference and she wants a demo.",
    "[[Jordan|PERSON]] and I visited [[Amman|LOCATION]] last spring.",
    "I'm flying from [[London|LOCATION]] to [[Tokyo|LOCATION]] on Sunday.",
    "Our new office is in [[Berlin|LOCATION]], close to the train station.",
    "She grew up in [[Nairobi|LOCATION]] and studied in [[Toronto|LOCATION]].",
    "Find me a hotel in [[Lisbon|LOCATION]] for three nights.",
    "The shipment left [[Rotterdam|LOCATION]] and arrives in [[Singapore|LOCATION]] next week.",
    "He moved to [[Texas|LOCATION]] after the divorce.",
    "We are hiring engineers in [[Poland|LOCATION]] and [[Portugal|LOCATION]].",
    "The customer lives in [[Manchester|LOCATION]] and wants a callback.",
    "Plan a two-day hike around [[Mount Rainier|LOCATION]].",
    "The warehouse near [[Lake Geneva|LOCATION]] flooded last night.",
    "My flight lands at [[Heathrow Airport|LOCATION]] at 6 am.",
    "Our family has a small farm outside [[Cork|LOCATION]], [[Ireland|LOCATION]].",
    "The conference moved from [[Barcelona|LOCATION]] to [[Vienna|LOCATION]].",
    "I was born in [[Mumbai|LOCATION]] but live in [[Sydney|LOCATION]] now.",
    "The delivery address is somewhere in [[Brooklyn|LOCATION]].",
    "Compare the cost of living in [[Austin|LOCATION]] and [[Denver|LOCATION]].",
    "They spent the summer sailing along the [[Danube|LOCATION]].",
    "The rally in [[Jordan|LOCATION]] was peaceful, officials said.",
    "She has relatives in [[Lagos|LOCATION]], [[Nigeria|LOCATION]].",
    "[[Paris|LOCATION]] is lovely in April, says my sister.",
    "[[Maria Gonzalez|PERSON]] from our [[Madrid|LOCATION]] office will join the call.",
    "[[Tom Becker|PERSON]] drove from [[Munich|LOCATION]] to [[Zurich|LOCATION]] overnight.",
    "Write a cover letter for [[Nina Petrova|PERSON]], who is relocating to [[Amsterdam|LOCATION]].",
    "[[James Wilson|PERSON]] will speak at the event in [[Chicago|LOCATION]].",
    "The nurse, [[Grace Kim|PERSON]], works night shifts in [[Seattle|LOCATION]].",
    "Ticket 4821: [[Laura Bianchi|PERSON]] cannot log in since she moved to [[Milan|LOCATION]].",
    "Email from [[David Cohen|PERSON]]: the [[Tel Aviv|LOCATION]] team is blocked on the release.",
    "Notes: [[Mark Thompson|PERSON]] (sales, [[Boston|LOCATION]]) wants a discount for 40 seats.",
    "[[Paris Hilton|PERSON]] was mentioned in the article about the launch party.",
    "[[George Washington|PERSON]] crossed the [[Delaware|LOCATION]] in 1776.",
    "Book a car for [[Ingrid Johansson|PERSON]] from [[Stockholm|LOCATION]] airport.",
    "# TODO([[Kevin Nguyen|PERSON]]): remove this workaround once the vendor fixes it",
    '{"customer": "[[Hannah Weber|PERSON]]", "city": "[[Hamburg|LOCATION]]", "plan": "pro"}',
    "Interview: [[Samuel Okafor|PERSON]] has ten years of work in [[Accra|LOCATION]] and [[Dubai|LOCATION]].",
    "Can you tell [[Isabella|PERSON]] that the package is waiting in [[Oslo|LOCATION]]?",
    "[[Ravi Kumar|PERSON]] is travelling to [[California|LOCATION]] for the offsite.",
    "The landlord, [[Peter Novak|PERSON]], owns three flats in [[Prague|LOCATION]].",
    "Our driver [[Mehmet Yilmaz|PERSON]] got stuck in traffic near [[Istanbul|LOCATION]].",
    "Send flowers to [[Julia Roberts|PERSON]] at the hospital in [[Atlanta|LOCATION]].",
    "pls write a short thank-you note to [[john smith|PERSON]] for the tour of [[paris|LOCATION]]",
    "hey can you remind [[tom|PERSON]] that his flight to [[london|LOCATION]] leaves at 7",
    "my sister [[maria gonzalez|PERSON]] just moved to [[berlin|LOCATION]], any tips for her?",
]

NEGATIVE = [
    "Apple released a new iPhone and Microsoft updated Windows.",
    "Compare Amazon Web Services with Google Cloud for a small startup.",
    "Tesla's quarterly results beat expectations.",
    "Ford recalled 20,000 trucks because of a brake defect.",
    "Ask Alexa to turn off the lights in the kitchen.",
    "Is Claude better than Gemini at writing SQL?",
    "Write a Python script that reads a CSV file.",
    "Convert this Ruby snippet to Julia.",
    "The Jordan 4 sneakers sold out in minutes.",
    "Will the build pass if I bump the version to 3.11.4?",
    "Grace periods for late payments are 15 days.",
    "Hope this helps, let me know if anything is unclear.",
    "The Summer release adds dark mode.",
    "Mark the ticket as resolved and close the sprint.",
    "Rose gold is the most popular colour this year.",
    "Bill the customer for the extra seats at the end of the month.",
    "Deploy the Kubernetes cluster with three nodes and PostgreSQL 16.",
    "Open Slack and post the release notes in the engineering channel.",
    "The Jira board has 42 open issues and 7 blockers.",
    "Our Salesforce integration stopped syncing at midnight.",
    "Mercedes-Benz and BMW both reported lower sales.",
    "Oracle and SAP dominate the enterprise market.",
    "The Nike logo should be on the left side of the page.",
    "Use the Mocha test runner with Chai assertions.",
    "Firefox and Chrome render the page differently.",
    "Is Netflix or Spotify cheaper per month?",
    "Dell laptops ship with Ubuntu now.",
    "The Django admin is slow when the table has millions of rows.",
    "Explain how the Kafka consumer group rebalances.",
    "The Victoria's Secret campaign was criticised.",
    "Please fix the typo in the README and bump the version.",
    "Return the JSON with keys id, status and created_at.",
    "Our churn rate fell to 2.1% after the pricing change.",
    "Summarise this article about interest rates in two sentences.",
    "The function returns None when the list is empty.",
    "Use a binary search instead of a linear scan.",
    "Add unit tests for the parser and the tokenizer.",
    "Which is faster, a hash map or a sorted array?",
    "The meeting is at 3 pm; bring the slides.",
    "Translate 'good morning' into French and Spanish.",
    "Airbnb and Uber changed how people travel.",
    "The Honda Civic is a reliable first car.",
    "The Visa and Mastercard fees went up.",
    "The Adidas Samba is back in fashion.",
    "Ask Siri to set a timer for ten minutes.",
    "Order 48213975 from 2024-03-15 failed at $1,299.00 because of a timeout.",
    "Ticket INC-20931 was closed by the on-call engineer at 02:14.",
]


def _parse(marked: str) -> Sample:
    spans: list[tuple[int, int, EntityType]] = []
    out: list[str] = []
    pos = 0
    size = 0
    for m in _MARK.finditer(marked):
        out.append(marked[pos : m.start()])
        size += m.start() - pos
        value, entity = m.group(1), m.group(2)
        spans.append((size, size + len(value), "PERSON" if entity == "PERSON" else "LOCATION"))
        out.append(value)
        size += len(value)
        pos = m.end()
    out.append(marked[pos:])
    kind = spans[0][2] if spans else "NEGATIVE"
    return Sample("".join(out), tuple(spans), kind)


def generate() -> list[Sample]:
    """The corpus: every positive sentence with its spans, then the hard negatives."""
    return [_parse(s) for s in POSITIVE] + [Sample(s, (), "NEGATIVE") for s in NEGATIVE]
