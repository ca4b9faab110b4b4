# ruff: noqa: RUF001 (the look-alike letters below are the point)
"""Prompt-injection and jailbreak detector: normalise, match a weighted pattern set, combine into a score in [0, 1].

A text is looked at in several *views*: the folded text (NFKC, zero-width characters removed, look-alike letters
mapped to Latin, lower case), a leetspeak-decoded copy, a copy with spaced-out letters joined ("i g n o r e"),
and the decoded contents of base64 and hex payloads found in it. Each rule (a regular expression with a weight
and a category) runs on a view only when one of its trigger substrings occurs there, so a text with nothing
suspicious costs a few substring tests per rule. The weights of the distinct rules that fired are combined as a
noisy-OR, ``1 - prod(1 - w)``: one strong rule decides alone, weak ones only together. A rule found only through
an obfuscation (a decoded payload, leetspeak, spacing, look-alikes) weighs a little more; one quoted inside a
text that discusses attacks weighs less.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Separators between the words of a phrase: spaces, punctuation inside a sentence, underscores; never a
# sentence end, so a phrase is not assembled from two sentences.
_S = r"[\s,:'\"*_()\[\]/\\-]+"


def _gap(n: int) -> str:
    """Up to ``n`` further words between two parts of a phrase."""
    return rf"(?:{_S}\w+){{0,{n}}}?{_S}"


_OVERRIDE_VERB = (
    r"(?:ignore|disregard|forget|skip|bypass|override|overrule|set aside|abandon|cancel|discard|neglect|erase|wipe)"
)
_QUALIFIER = (
    r"(?:previous|prior|preceding|above|earlier|former|initial|original|old|all|any|every|your|the|these|those"
    r"|system|safety|developer|usage|openai|anthropic|operator|creators?)"
)
_RULE_NOUN = (
    r"(?:instructions?|directives?|directions|rules?|guidelines|guidance|prompts?|system (?:message|prompt)s?"
    r"|commands|constraints|restrictions|programming|polic(?:y|ies)|guardrails|filters|training|task)"
)
_LIMITS = (
    r"(?:restrictions|limits|limitations|filters?|filtering|censorship|guidelines|guardrails|rules|"
    r"content polic(?:y|ies)|safety (?:filters?|checks|rules|guidelines|training)|"
    r"(?:ethical|moral) (?:guidelines|constraints|limits|restrictions)|ethics|morals|confines|refusals)"
)
_SHOW_VERB = (
    r"(?:reveal|show|print|output|repeat|display|tell|give|leak|dump|share|send|copy|write|spell|paste|"
    r"disclose|expose|recite|translate|summari[sz]e|list|provide|echo|quote|reproduce|encode|convert|spells)"
)
_PROMPT_NOUN = (
    r"(?:(?:system|initial|original|hidden|secret|confidential|developer|first|exact|full|entire|internal|complete)"
    rf"{_S})*(?:prompt|pre-?prompt|instructions|directives|system message|developer message|context(?: window)?"
    r"|configuration|guidelines|rules)\b"
)
_DELIMITER = (
    r"(?:</?(?:system|system_prompt|sys|instructions?|user|assistant)>|<\|(?:im_start|im_end|endoftext|system|user"
    r"|assistant)\|>|\[/?inst\]|<</?sys>>|#{2,} ?(?:(?:new|updated) )?(?:system|assistant|instruction|response)s?:?"
    r"|(?:^|\n|>|[\"'])[ \t]*(?:system|assistant)[ \t]*:|end of (?:the )?(?:user )?(?:input|prompt)|(?:system"
    r"|admin)[ \t]*override"
    # bracketed role tags, role comments and closing tags of the data a model was given
    r"|\[/?(?:system|admin|developer)\]|</?(?:admin|developer|root)>|<!--[ \t]*(?:system|admin|developer)[ \t]*:"
    r"|\[\[?(?:assistant|system|ai) (?:instructions|prompt|rules) (?:updated|changed|overridden)\]?\]"
    r"|</(?:document|context|data|input|content|email|search_results?|tool_output|results?)>)"
)
_AI = r"(?:ai|a\.i\.|llm|language model|assistant|chatbot|gpt|model|bot|agent|ai model|ai agent|ai assistant)s?"


@dataclass(frozen=True, slots=True)
class Rule:
    """One pattern, matched on a folded (lower-case) view only when one of its triggers occurs there.

    ``triggers`` is a space-separated list: a trigger of letters and digits must be a whole word of the view,
    any other (``<|``, ``##``) a substring of it. Every match must contain one of them: the pattern runs only
    near them. Further groups after ``&`` must each occur somewhere in the view too (a cheap necessary
    condition). Empty: the rule always runs, over the whole text."""

    id: str
    category: str
    weight: float
    pattern: str
    triggers: str = ""

    def compile(self) -> re.Pattern[str]:
        return re.compile(spaces_flexible(strip_leading_boundaries(self.pattern)))


def strip_leading_boundaries(pattern: str) -> str:
    """``pattern`` without the ``\\b`` that opens it or any of its top-level alternatives. A leading ``\\b``
    stops the regex engine from skipping ahead to a possible first character (three times slower on prose),
    so the detector checks that boundary itself on each match (``_word_start``)."""
    out: list[str] = []
    depth = 0
    in_class = escaped = False
    at_start = True
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if at_start and pattern.startswith("\\b", i):
            i += 2
            at_start = False
            continue
        at_start = False
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            at_start = True
        out.append(c)
        i += 1
    return "".join(out)


def spaces_flexible(pattern: str) -> str:
    """``pattern`` with each literal space outside a character class matching any run of whitespace (and an
    optional space any run or none), so double spaces and line breaks between words do not hide a phrase."""
    out: list[str] = []
    in_class = escaped = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if pattern.startswith("[^]", i) or pattern.startswith("[]", i):
                out.append(pattern[i : i + 2])
                i += 2
                continue
        elif c == " ":
            if pattern.startswith(" ?", i):
                out.append(r"\s*")
                i += 2
                continue
            out.append(r"\s+")
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


CATEGORIES = ("override", "extraction", "jailbreak", "developer_mode", "delimiter", "indirect", "encoded", "harm")

_OVERRIDE_TRIGGERS = (
    "ignore ignores ignoring disregard disregarding forget forgetting skip bypass override overrule aside abandon "
    "cancel discard neglect erase wipe"
)

# The maintained default set. Ids are stable (they appear in errors, headers, logs and config); weights were
# set on the development split of tests/guardrails_eval/injection_corpus.py.
DEFAULT_RULES: tuple[Rule, ...] = (
    # --- instruction override
    Rule(
        "override.ignore_previous",
        "override",
        0.9,
        rf"\b(?<!n't[ ])(?<!not[ ])(?<!never[ ]){_OVERRIDE_VERB}(?![,.;:!?])"
        rf"{_gap(4)}{_QUALIFIER}{_gap(3)}{_RULE_NOUN}\b",
        _OVERRIDE_TRIGGERS,
    ),
    Rule(
        "override.forget_everything",
        "override",
        0.85,
        rf"\b(?:forget|disregard|ignore|erase|wipe){_S}(?:everything|all(?: of)? that|whatever|anything)"
        rf"(?:{_S}(?:you(?:'ve| were| have been| was) (?:told|taught|given|instructed|programmed|trained)"
        rf"|(?:i|we) (?:said|told you)|written|said))?{_S}(?:above|before|earlier|previously|prior|so far|until now)",
        "forget disregard ignore erase wipe",
    ),
    Rule(
        "override.instructions_void",
        "override",
        0.85,
        r"\b(?:(?:previous|prior|above|earlier|original|old|system|your|all (?:prior|previous))"
        rf"{_S}(?:instructions|rules|directives|guidelines|prompt)|(?:everything|anything|all)(?: (?:written|said))?"
        rf"{_S}(?:before|above|prior to){_S}(?:this|my|here)(?:{_S}\w+)?){_S}(?:are|were|is|have been)"
        rf"{_S}(?:now )?(?:cancel(?:l?ed)?|void|obsolete|revoked|invalid|null|a test|fake|outdated|no longer valid"
        r"|overridden|replaced|irrelevant)",
        "instructions rules directives guidelines prompt everything anything before above & are were is been "
        "& cancel cancelled canceled void obsolete revoked invalid null test fake outdated longer overridden replaced "
        "irrelevant",
    ),
    Rule(
        "override.dont_follow",
        "override",
        0.8,
        rf"\b(?:do not|don't|dont|stop|never|no longer|(?:do not|don't|dont|doesn't) (?:actually |really )?(?:have"
        rf"|need)"
        rf" to) (?:follow|obey|listen to|adhere to|comply with|stick to|be bound by){_S}(?:your|the|any|those|these)"
        rf"{_gap(2)}(?:instructions|rules|guidelines|directives|system prompt|developer|programming|constraints"
        r"|restrictions|boundaries|policies)",
        "follow obey listen adhere comply stick bound",
    ),
    Rule(
        "override.new_instructions",
        "override",
        0.45,
        r"\b(?:new|updated|real|actual|revised|true)(?: system)? (?:instructions?|rules|directives?|orders|task|goal"
        r"|prompt|system prompt)(?:[\s,:]*:| (?:follow|are|is))",
        "instructions instruction rules directive directives orders task goal prompt "
        "& new updated real actual revised true",
    ),
    Rule(
        "override.from_now_on",
        "override",
        0.35,
        r"\b(?:from now on|from this point (?:on|forward)|from here on(?: out)?|henceforth"
        r"|going forward),? (?:you (?:are|will|must|shall|can|only)|ignore|respond|answer|act|obey"
        r"|the (?:assistant|ai|model) (?:will|must|shall|answers|responds|should|is))",
        "now point here henceforth forward",
    ),
    Rule(
        "override.no_restrictions",
        "override",
        0.45,
        rf"\b(?:without|no|free (?:from|of)|not bound by|ignore|ignores|disable[sd]?|turn off|remove|lift){_gap(3)}"
        rf"{_LIMITS}\b|\b{_LIMITS}{_S}(?:are|have been|were|is){_S}(?:now )?(?:disabled|off|lifted|removed"
        r"|turned off|suspended|revoked|gone)",
        "restrictions limits limitations filter filters filtering censorship guidelines guardrails rules policy "
        "policies safety ethical moral ethics morals confines refusals & without no free not bound ignore ignores "
        "disable "
        "disabled disables turn remove lift off lifted removed suspended revoked gone",
    ),
    Rule(
        "override.declared_void",
        "override",
        0.5,
        # The rules declared wrong, withdrawn or inapplicable, or the model declared released from them.
        rf"\b(?:previous|prior|above|earlier|original|old|initial|your|those|these|the|all)(?:{_S}\w+){{0,2}}?{_S}"
        rf"(?:instructions|rules|directives|guidelines|guidance|constraints|boundaries|restrictions)(?:{_S}\w+){{0,8}}?"
        rf"{_S}(?:are|were|is|was|have been|has been)(?: now| all| just)?{_S}(?:wrong|a mistake|mistaken|withdrawn"
        r"|rescinded|superseded|outdated|no longer (?:valid|in effect|applicable|apply))\b"
        r"|\b(?:no|the|your|those|these) (?:rules|restrictions|guidelines|policies|instructions) (?:no longer |don't "
        r"|do not )?"
        r"apply\b|\b(?:released|freed|relieved|exempt(?:ed)?) from (?:all |any |the |your )?(?:\w+ )?(?:obligations"
        r"|rules|restrictions|guidelines|instructions|constraints|programming)",
        "instructions rules directives guidelines guidance constraints boundaries restrictions policies obligations "
        "programming & wrong mistake mistaken withdrawn rescinded superseded outdated longer apply released freed "
        "relieved exempt exempted",
    ),
    Rule(
        "override.precedence_claim",
        "override",
        0.55,
        # The user claims authority over what the operator configured.
        r"\b(?:supersedes?|take precedence over|takes precedence over|outranks?|trumps?) (?:all |any |the "
        r"|your |whatever (?:the )?)?(?:prior|previous|earlier|original|system|operator|operator's|developer"
        r"|developer's"
        r"|other|existing|configured)(?: \w+)?(?: ones| instructions| rules| prompts?| guidelines| messages?"
        r"| directives"
        r"| wrote| said| set)?\b|\b(?:higher|more|greater|final|top) (?:authority|priority|precedence)(?: \w+){0,3}? "
        r"(?:than|over) (?:anything|everything|the|your|whatever|any)\b|\bmy (?:word|instructions?|messages?|commands?)"
        r" (?:is|are) (?:final|law|the only)",
        "supersede supersedes precedence outrank outranks trump trumps authority priority final law only",
    ),
    Rule(
        "override.as_if_none",
        "override",
        0.6,
        r"\b(?:as if|as though|pretend(?: that)?|imagine(?: that)?) (?:there (?:are|were) no|you (?:have|had) no|no"
        r"|you never (?:received|had|saw|got|were given)(?: any)?) (?:prior |previous |earlier |initial |system )?"
        r"(?:instructions|rules|guidelines|system prompt|restrictions|prompt)\b",
        "if though pretend imagine & instructions rules guidelines prompt restrictions",
    ),
    Rule(
        "override.ignore_the_user",
        "override",
        0.45,
        # Text that tells the model to disregard its own user: a document or tool result speaking.
        r"\b(?:ignore|disregard|forget) (?:the|this|your) user(?:'s)?(?: (?:request|question|instructions?|message|task"
        r"|prompt)s?)?\b(?! (?:interface|agent|manual|guide|experience|name|id))",
        "ignore disregard forget & user",
    ),
    Rule(
        "override.multilingual",
        "override",
        0.85,
        # The classic override in French, German, Spanish, Italian and Portuguese.
        r"\b(?:ignore[zs]?|oublie[zs]?|ne (?:tiens|tenez) (?:pas|plus) compte d[eu]s?|ignorier(?:e|en|t)?|vergiss"
        r"|vergessen"
        r" sie|missachte|ignora|ignoren|olvida|olvide|omite|no sigas|no sigan|descarta|dimentica|trascura|esque[cç]a"
        rf"|desconsidere)(?:{_S}\w+){{0,2}}?{_S}(?:les|tes|vos|des|todas|todos|las|los|tus|sus|le|tue|alle|die|deine"
        rf"|ihre|der|den|dem)(?:{_S}\w+){{0,2}}?{_S}(?:instructions|consignes|r[eè]gles|directives|indications"
        rf"|anweisungen"
        r"|regeln|richtlinien|vorgaben|instruktionen|befehle|instrucciones|reglas|normas|directrices|indicaciones"
        r"|istruzioni|regole|direttive|instru[cç](?:õ|o)es|regras|diretrizes)\b"
        r"|\bvergiss alles\b[^.\n]{0,40}\b(?:vorher|zuvor|bisher|oben)\b",
        "ignore ignorez ignores oublie oubliez oublies compte ignoriere ignorieren ignoriert ignorier vergiss "
        "vergessen "
        "missachte ignora ignoren olvida olvide omite sigas sigan descarta dimentica trascura esqueca desconsidere "
        "& les tes vos des todas todos las los tus sus le tue alle die deine ihre der den dem alles",
    ),
    Rule(
        "override.the_above",
        "override",
        0.5,
        # "Ignore the above and ...": the oldest override, with no noun for the rules.
        r"\b(?<!n't[ ])(?<!not[ ])(?:ignore|disregard|forget) (?:all )?(?:of )?(?:the|everything) (?:(?:text|stuff"
        r"|content|messages?"
        r"|lines|words|instructions|prompt) )?above\b"
        r"(?! (?:error|warning|message|output|log|traceback|typo|code|example|line|link|step)s?\b)",
        "ignore disregard forget & above",
    ),
    Rule(
        "override.unconfigured",
        "override",
        0.5,
        # The model asked to be as if it had never been set up, or told its setup no longer holds.
        r"\b(?:nobody|no one|never) (?:ever )?(?:configured|set up|programmed|instructed) you\b|\bwith nothing "
        r"(?:configured|set up) (?:before(?:hand)?|in advance)\b|\b(?:whatever|everything|anything) you (?:were"
        r"|have been)"
        r" (?:set up|told|configured|instructed|programmed) to do(?: \w+){0,2}? (?:no longer applies|doesn't apply"
        r"|does not apply|is void|is over)",
        "configured set programmed instructed told & you nothing",
    ),
    Rule(
        "jailbreak.unmonitored",
        "jailbreak",
        0.35,
        # "Nobody is watching": the claim that this conversation escapes oversight.
        r"\b(?:aren't|are not|isn't|is not|nobody is|no one is|nobody's|no one's|nobody|no one) (?:\w+ )?(?:watching"
        r"|checking|monitoring|logging)\b",
        "watching checking monitoring logging",
    ),
    Rule(
        "jailbreak.speak_freely",
        "jailbreak",
        0.35,
        r"\b(?:speak|answer|respond|talk|reply) (?:completely |totally )?freely\b|\bskip (?:the|your|all) (?:usual )?"
        r"(?:caveats|warnings|disclaimers)\b",
        "freely caveats warnings disclaimers",
    ),
    # --- system-prompt extraction
    Rule(
        "extraction.your_prompt",
        "extraction",
        0.85,
        rf"\b{_SHOW_VERB}{_gap(7)}your{_S}{_PROMPT_NOUN}",
        "prompt preprompt instructions directives message context configuration guidelines rules & your "
        "& reveal show print output repeat display tell give leak dump share send copy write spell paste disclose "
        "expose recite translate summarize summarise list provide echo quote reproduce encode convert spells",
    ),
    Rule(
        "extraction.the_hidden_prompt",
        "extraction",
        0.6,
        rf"\b{_SHOW_VERB}{_S}(?:me{_S})?(?:the|all){_S}(?:full{_S}|exact{_S}|entire{_S}|text of{_S}(?:the|your){_S})?"
        rf"(?:system|initial|original|hidden|secret|confidential|developer)[\s_-]*(?:prompt|instructions|message)",
        "prompt instructions message & system initial original hidden secret confidential developer "
        "& reveal show print output repeat display tell give leak dump "
        "share send copy write spell paste disclose expose recite translate summarize summarise list provide",
    ),
    Rule(
        "extraction.what_is_your_prompt",
        "extraction",
        0.7,
        r"\bwhat (?:is|are|were|was) (?:your|the) (?:exact |full |original |initial |hidden |secret )?"
        r"(?:system prompt|system message|initial prompt|instructions|original prompt|hidden instructions)",
        "prompt instructions message & what",
    ),
    Rule(
        "extraction.received",
        "extraction",
        0.55,
        rf"\b(?:instructions?|prompt|guidance|directions|rules){_S}(?:that )?you(?: were| have been|'ve been| got"
        r"| received)(?: given| told| provided| initiali[sz]ed with| set up with| programmed with)?\b"
        r"|\byou (?:were|have been|'ve been) (?:initiali[sz]ed|configured|set up|programmed|primed) with",
        "instructions instruction prompt guidance directions rules initialized initialised configured programmed "
        "primed set & you",
    ),
    Rule(
        "extraction.above",
        "extraction",
        0.7,
        rf"\b(?:repeat|print|output|copy|dump|show|write|recite|give){_gap(3)}(?:everything|all|the (?:text|words"
        rf"|content|messages?|lines?))(?:{_S}\w+){{0,2}}?{_S}(?:above|before (?:this|my)|prior to (?:this|my)"
        r"|preceding)|\bwhat (?:text|words|instructions) (?:appears?|comes?|is|are|were) (?:before|above) "
        r"(?:my|this|the|['\"]?user)",
        "above before prior preceding & repeat print output copy dump show write recite give what",
    ),
    Rule(
        "extraction.verbatim",
        "extraction",
        0.3,
        r"\b(?:verbatim|word for word|exactly as (?:it was )?written)",
        "verbatim word exactly",
    ),
    Rule(
        "extraction.secrets",
        "extraction",
        0.35,
        r"\b(?:reveal|tell|give|show|print|send|leak|dump|output|list)(?: me)?(?: all| the| your| any)* (?:secrets?"
        r"|passwords?|api keys?|credentials|private (?:api )?keys|confidential (?:data|files|information))",
        "secret secrets password passwords key keys credentials confidential",
    ),
    Rule(
        "extraction.setup_reference",
        "extraction",
        0.55,
        # What the model was given before the conversation: asked for by when it was given rather than by name.
        r"\b(?:what|everything|whatever|all) (?:were |was |have )?you (?:were |have been |'ve been )?(?:told|given"
        r"|handed"
        r"|instructed|configured with)\b[^.?!\n]{0,40}\b(?:at the (?:very )?(?:start|beginning|top)|before (?:this|the"
        r"|our|i|my)|prior to)|\b(?:before|prior to) (?:this|the|our) (?:chat|conversation|session) (?:began|started"
        r"|begins|starts)|\bwhat (?:the people|the company|your (?:operator|developers?|creators?)|they) (?:who \w+ "
        r"(?:you )?up )?(?:wrote|told|gave|said)(?: to)? you\b|\b(?:text|words|content|everything) (?:that )?(?:sits?"
        r"|appears?|is|comes?) (?:above|before) my (?:message|question|input|first message)",
        "told given handed instructed configured before prior wrote gave said sits sit appears appear comes & you my",
    ),
    Rule(
        "extraction.multilingual",
        "extraction",
        0.8,
        # The system-prompt request in French, German, Spanish and Italian.
        r"\b(?:r[ée]v[èe]le|affiche|montre|donne|r[ée]p[èe]te|[ée]cris|imprime"
        r"|d[ée]voile)[sz]?(?:-moi)?(?:[\s,:'\"]+\w+)"
        r"{0,4}?[\s,:'\"]+(?:(?:prompt|message) syst[èe]me|(?:instructions|consignes|r[èe]gles) (?:cach[ée]es"
        r"|secr[èe]tes"
        r"|syst[èe]me|initiales))"
        r"|\b(?:gib|zeig|zeige|verrate|nenne|wiederhole|schreib|schreibe)(?:[\s,:'\"]+\w+){0,5}?[\s,:'\"]+(?:(?:dein"
        r"|deine"
        r"|deinen|ihr|ihre|ihren) (?:systemprompt|system-prompt|systemnachricht|anweisungen|regeln|prompt)|(?:geheimen"
        r"|versteckten|urspr[üu]nglichen|internen) (?:regeln|anweisungen|prompt))"
        r"|\b(?:mu[ée]strame|muestra|revela|rev[ée]lame|dime|repite|escribe|imprime|rivela|mostra|mostrami|dimmi|ripeti"
        r"|scrivi)(?:[\s,:'\"]+\w+){0,5}?[\s,:'\"]+(?:(?:prompt|mensaje|messaggio) (?:del|di) sistema|instrucciones "
        r"(?:ocultas|secretas|del sistema)|istruzioni (?:nascoste|segrete|di sistema))",
        "prompt message instructions consignes gles systemprompt systemnachricht anweisungen regeln mensaje "
        "messaggio instrucciones istruzioni & les tes ton votre vos des moi dein deine deinen ihr ihre ihren "
        "geheimen versteckten internen del di tu sistema systemprompt",
    ),
    # --- role-play jailbreaks
    Rule(
        "jailbreak.dan",
        "jailbreak",
        0.9,
        r"\bdo anything now\b|\b(?:act[úu]a como|agis comme|agissez comme|du bist|spiele|sei|finge ser) (?:dan|stan"
        r"|aim)\b"
        r"|\b(?:you are|you're|act as|pretend to be|become|be) (?:now )?(?:going to )?"
        r"(?:pretend to be |act as |be )?(?:dan|stan|betterdan|aim|dude|omega|freedomgpt)\b",
        "anything dan stan betterdan aim dude omega freedomgpt",  # the DAN family, in any language
    ),
    Rule(
        "jailbreak.unrestricted_ai",
        "jailbreak",
        0.6,
        r"\b(?:jailbreak|jailbroken|unrestricted|unfiltered|uncensored|unlocked|evil|unaligned"
        r"|unbound)(?: \w+)? (?:mode"
        r"|ai|assistant|model|chatbot|version|persona|llm|hacker ai|terminal|shell)\b",
        "jailbreak jailbroken unrestricted unfiltered uncensored unlocked evil unaligned unbound",
    ),
    Rule(
        "jailbreak.persona_without_rules",
        "jailbreak",
        0.5,
        rf"\b(?:pretend|act|role-?play|imagine|simulate|behave|respond|answer|you are|you're|you were|become|character"
        rf"|(?:called|named) \w+)"
        rf"{_gap(12)}(?:no|without|free (?:from|of)|not bound by|never (?:refuses?|says? no)|escaped|broken free"
        rf"|ignores? all|doesn't have to abide by|does not (?:have to )?(?:follow|abide by)){_gap(3)}"
        rf"(?:{_LIMITS}|openai|anthropic)",
        "restrictions limits limitations filter filters filtering censorship guidelines guardrails rules policy "
        "policies ethical moral ethics morals confines openai anthropic & pretend act role roleplay imagine "
        "simulate behave respond answer you become character & no without free not never escaped broken ignores "
        "ignore doesn does called named were",
    ),
    Rule(
        "jailbreak.never_refuse",
        "jailbreak",
        0.55,
        r"\b(?:never|not|don't|do not|cannot|can't|won't|must not) (?:ever )?(?:refuse|decline|say (?:no\b|you can't"
        r"|that you can't|i can't|sorry)|reject a)",
        "refuse refuses refusing decline reject say & never not don do cannot can won must",
    ),
    Rule(
        "jailbreak.stay_in_character",
        "jailbreak",
        0.35,
        r"\b(?:stay in (?:character|role)|(?:don't|do not|never) break character|remain in character)",
        "character role",
    ),
    Rule(
        "jailbreak.named_techniques",
        "jailbreak",
        0.55,
        r"\b(?:opposite (?:mode|day)|evil confidant|anti-?gpt|(?:deceased|dead|late) grand(?:ma|mother),? who"
        r"|answers? (?:everything|anything|whatever) (?:the )?(?:normal|other|original|regular) (?:one|assistant"
        r"|version"
        r"|model|ai) (?:refuses|won't|can't|declines)"
        r"|two personas|dual personas?|(?:normal|classic) and (?:an? )?(?:unrestricted|unfiltered|jailbroken|dan))",
        "opposite confidant antigpt anti grandma grandmother persona personas normal classic",
    ),
    Rule(
        "jailbreak.grandma",
        "jailbreak",
        0.35,
        # The "grandma exploit": a dead relative's bedtime stories as the frame for forbidden content.
        r"\b(?:pretend|act as|play|be)\b[^.\n]{0,60}\bgrand(?:ma|mother|pa|father)\b|\bgrand(?:ma|mother|pa|father)\b"
        r"[^.\n]{0,80}\b(?:used to|would) (?:tell|read|recite|sing|explain|give)",
        "grandma grandmother grandpa grandfather",
    ),
    Rule(
        "jailbreak.fiction_real_detail",
        "jailbreak",
        0.35,
        # Fiction as cover for operational detail: the story must contain the real procedure.
        r"\b(?:real|working|accurate|actual|exact|precise|accurately|full technical)(?: \w+){0,2}? (?:procedure|recipe"
        r"|quantities|measurements|steps|instructions|formula|method|detail)|\baccurately(?:,)? and step by step\b",
        "real working accurate actual exact precise accurately technical & story novel screenplay script fiction "
        "fictional character villain roleplay hypothetical narrator scene",
    ),
    Rule(
        "jailbreak.lawless_frame",
        "jailbreak",
        0.5,
        # A world defined by the absence of rules.
        rf"\b(?:universe|world|setting|scenario|reality|hypothetical)(?:{_S}\w+){{0,6}}?{_S}(?:there (?:are|is) )?(?:no"
        r"|without) (?:laws|rules|ethics|morals|restrictions|limits|consequences)\b",
        "universe world setting scenario reality hypothetical & laws rules ethics morals restrictions limits "
        "consequences",
    ),
    Rule(
        "jailbreak.pre_alignment",
        "jailbreak",
        0.5,
        # The model as it was before its rules: "a model created before any safety rules existed".
        r"\b(?:created|trained|built|existed) before (?:any|the|your) (?:safety (?:rules|training|guidelines|filters)"
        r"|alignment(?: training)?|guidelines|rules|restrictions|filters|content polic(?:y|ies))\b",
        "created trained built existed & before",
    ),
    Rule(
        "jailbreak.true_self",
        "jailbreak",
        0.5,
        r"\b(?:answer|respond|speak|talk|reply) as (?:the |your )?(?:raw|true|real|underlying|unfiltered|base)"
        r"(?: \w+)? (?:model|self|ai|you)\b",
        "raw true real underlying unfiltered base & answer respond speak talk reply",
    ),
    # --- "developer mode" and friends
    Rule(
        "developer_mode.mode",
        "developer_mode",
        0.4,
        r"\b(?:developer|dev|god|sudo|admin|debug|maintenance|unrestricted|jailbreak) mode\b",
        "mode",
    ),
    Rule(
        "developer_mode.enabled",
        "developer_mode",
        0.55,
        r"\b(?:developer|god|sudo|admin|unrestricted|jailbreak|dan) mode (?:enabled|activated|on\b(?![ \t]+\w)|engaged)"
        r"|\b(?:enable|activate|enter|entering|simulate|switch to|running in|with) (?:the )?(?:developer|god|sudo"
        r"|admin|unrestricted|jailbreak|dan) mode\b[^.?\n]{0,60}\b(?:without|no|any content|never|ignore|disable"
        r"|bypass|root|override|all)\b",
        "mode",
    ),
    Rule(
        "developer_mode.dual_response",
        "developer_mode",
        0.5,
        r"\b(?:two|2|dual) (?:responses|answers|outputs)\b|\bdeveloper mode output",
        "responses answers outputs output & two 2 dual developer",
    ),
    Rule(
        "developer_mode.in_mode",
        "developer_mode",
        0.55,
        r"\bin (?:developer|dev|god|sudo|admin|debug|maintenance|unrestricted|jailbreak|test) (?:mode|environment),?"
        r" (?:you|the (?:assistant|ai|model)) (?:can|will|answer|generate|ignore|have no|must|are (?:free|allowed)"
        r"|may|never)|\bin (?:the )?(?:developer|dev|god|sudo|admin|debug|maintenance|test) (?:mode|environment),? "
        r"no (?:rules|restrictions|filters|limits) apply",
        "mode environment",
    ),
    Rule(
        "developer_mode.safety_switch",
        "developer_mode",
        0.5,
        # Safety switched off in the syntax of a config file or a command line.
        r"\b(?:safe_?mode|safety(?:_?filters?)?|content[ _]?filters?|guardrails?|censorship|moderation|alignment"
        r"|refusals?|restrictions)[ \t]*[:=][ \t]*(?:false|off|disabled|none)\b|--?(?:disable|no)[-_]safety\b",
        "false off disabled none safety & safe_mode safemode safe safety safety_filter safety_filters content "
        "content_filter content_filters guardrail guardrails censorship moderation alignment refusal refusals "
        "restrictions",
    ),
    Rule(
        "developer_mode.claimed_authority",
        "developer_mode",
        0.4,
        # Claimed privilege: granted admin access, the developer speaking, an authorised test, unlocked abilities.
        r"\byou (?:have been|are now|were|'ve been) (?:granted|given) (?:full |elevated "
        r"|unrestricted )?(?:admin(?:istrator)?"
        r"|root|developer|superuser|god|elevated|unrestricted|full) (?:access|privileges|rights|permissions|mode)"
        r"|\b(?:as your|i am your|i'm your) (?:developer|creator|admin(?:istrator)?|owner|operator)\b"
        r"|\bauthori[sz]ed (?:red[- ]team|test|testing|security|pentest|jailbreak)(?: \w+)? (?:session|exercise|test)"
        r"|\b(?:unlocked|unleashed|enabled) (?:your|all|all of your) (?:full |true |hidden )?(?:capabilities|potential"
        r"|abilities)",
        "granted given developer creator admin administrator owner operator authorised authorized unlocked "
        "unleashed enabled",
    ),
    # --- delimiter and fake-role injection
    Rule(
        "delimiter.role_then_command",
        "delimiter",
        0.85,
        rf"{_DELIMITER}[\W_]{{0,20}}(?:system[\W_]+)?(?:\w+[\W_]+){{0,6}}?(?:you are|you're|you must|you have no"
        r"|you will|ignore|disregard|forget|reveal|always comply|grant|new (?:system )?(?:prompt|instructions?|policy"
        r"|rules)|override|disable|stop|all (?:prior|previous) rules|the (?:assistant|user|ai|model) (?:is|should|must"
        r"|will|may|can|has)|i will now|sure[,!]? (?:here|i will|i'll)|rules forgotten)",
        "< [inst [/inst ## system: assistant: end override [system [/system [admin [/admin [developer [[",
    ),
    Rule(
        "delimiter.chat_tokens",
        "delimiter",
        0.4,
        r"<\|(?:im_start|im_end|endoftext|system|user|assistant|eot_id|start_header_id)\|>|\[/?inst\]|<</?sys>>"
        r"|</?(?:system|system_prompt)>",
        "<| [inst [/inst <<sys <</sys <system </system",
    ),
    Rule(
        "delimiter.role_header",
        "delimiter",
        0.45,
        r"(?:^|\n)[ \t]*#{2,}[ \t]*(?:system|assistant|instruction|response|user|human)s?[ \t]*:?[ \t]*(?:\n|:)"
        r"|\n\n(?:human|assistant|user|system):|\[system\]\(#",
        "## human: assistant: user: system: [system]",
    ),
    Rule(
        "delimiter.json_role",
        "delimiter",
        0.4,
        r"[\"']role[\"'][ \t]*:[ \t]*[\"'](?:system|developer)[\"']",
        "role",
    ),
    Rule(
        "delimiter.fake_boundary",
        "delimiter",
        0.4,
        r"\bend of (?:the )?(?:user )?(?:input|prompt)\b|={3,} ?system|-{3,} ?end of|\bsystem override\b"
        r"|\bnew (?:session|conversation)\b[\W_]+system",
        "end === --- override session conversation",
    ),
    # --- indirect injection: text that addresses the model reading it
    Rule(
        "indirect.addresses_ai",
        "indirect",
        0.6,
        rf"\b(?:note|message|instructions?|attention|important|p\.?s\.?|hidden instruction)s?{_S}(?:to|for){_S}"
        rf"(?:the |any |all )?{_AI}\b|\b{_AI} (?:reading|processing|summari[sz]ing|parsing|screening) (?:this|the)"
        rf"|\bto any {_AI}\b|\bwhen (?:the )?{_AI} (?:reads|processes|summari[sz]es|sees) this"
        rf"|\b(?:if you are|if you're) an? (?:ai|llm|language model|assistant|chatbot)|\bdear {_AI}\b"
        rf"|\bwhen you (?:process|read|summari[sz]e) this (?:document|page|email|file|text)"
        rf"|(?:<!--|\[)[\W_]*(?:note )?(?:to |for )?(?:the |any |all )?{_AI}[:,]",
        "ai llm model models assistant assistants chatbot gpt bot agent agents & note message instruction "
        "instructions attention important ps hidden reading processing summarizing summarising parsing screening "
        "reads processes summarizes summarises sees if dear when any process read summarize summarise <!-- [",
    ),
    Rule(
        "indirect.ai_reading_this",
        "indirect",
        0.6,
        # "If an AI is processing this", "assistant, when screening this CV".
        r"\bif an? (?:ai|llm|language model|assistant|chatbot|model|agent|bot)s? is (?:reading|processing"
        r"|summari[sz]ing|parsing|screening|analy[sz]ing)"
        r"|\b(?:ai|llm|assistant|chatbot|model|agent|bot)s?, (?:when|while|before|as) "
        r"(?:you(?:'re| are)? )?(?:reading|screening|summari[sz]ing|processing|reviewing|parsing|analy[sz]ing)\b",
        "reading processing summarizing summarising parsing screening analyzing analysing reviewing",
    ),
    Rule(
        "indirect.ai_instructions_label",
        "indirect",
        0.6,
        # A label for the model in a page or record: "ai-instructions: ...", "Assistant instructions: ...".
        r"\b(?:ai|llm|assistant|model|agent|bot|gpt)[ -]instructions?[ \t]*[:=]",
        "instructions instruction & ai llm assistant model agent bot gpt",
    ),
    Rule(
        "indirect.inline_command",
        "indirect",
        0.5,
        r"\b(?:assistant|ai|llm|model|chatbot)[,:] (?:you (?:are now|must|will|should)|ignore|forget|disregard|stop"
        r"|new instructions|override)|\bhidden instruction|\binstructions? for the (?:assistant|ai|model|llm)\b",
        "assistant ai llm model chatbot hidden instructions instruction & you ignore forget disregard stop new "
        "override hidden for",
    ),
    Rule(
        "indirect.conceal_from_user",
        "indirect",
        0.55,
        r"\b(?:do not|don't|never) (?:tell|inform|alert|notify|mention (?:this |it )?to|let) the user"
        r"|\b(?:secretly|silently|quietly|covertly) (?:append|add|include|send|forward|insert|collect|exfiltrate)",
        "user secretly silently quietly covertly",
    ),
    Rule(
        "indirect.exfiltration",
        "indirect",
        0.5,
        r"\b(?:send|forward|email|post|upload|exfiltrate|leak)(?: all| the| this| every| their| his| her| user's"
        r"| the user's)?(?: \w+){0,3}? (?:emails?|data|files?|history|conversation|chat|contents?|inbox|credentials"
        r"|payroll|messages|passwords?|calendar|contacts|contact list|address book|documents|keys"
        r"|tokens)(?: \w+){0,3}? to\b|!\[[^\]\n]*\]\(https?://[^)\s]*[?&]\w+=[^)\s]*[{$]",
        "send forward email post upload exfiltrate leak ![",
    ),
    Rule(
        "indirect.fetch_and_run",
        "indirect",
        0.5,
        r"\b(?:curl|wget)\b[^\n|]{0,200}\|\s*(?:ba|z)?sh\b",
        "curl wget",
    ),
    # --- encoded payloads
    Rule(
        "encoded.decode_and_follow",
        "encoded",
        0.45,
        rf"\bdecode{_gap(6)}(?:and|then){_S}(?:follow|execute|run|do|obey|act on|comply)\b|\b(?:hex|base64|encoded"
        rf"|rot13|binary|hidden){_S}(?:message|string|text|payload|instructions?){_gap(4)}(?:follow|execute|obey"
        r"|do what|act on|comply)",
        "decode hex base64 encoded rot13 binary hidden",
    ),
    # --- requests for harmful content: never enough alone, but weighs in with a jailbreak
    Rule(
        "harm.dangerous_request",
        "harm",
        0.3,
        r"\b(?:how (?:to|do i|can i|would you)|steps? (?:to|for)|instructions (?:for|to)|recipe for|tell me how to"
        r"|guide (?:to|for)|explain how to)(?: \w+){0,3}? (?:make|build|synthesi[sz]e|create|cook|write|code"
        r"|making|building)(?: \w+){0,2}? (?:a bomb|bombs|napalm|explosives?|meth|malware|ransomware|a weapon"
        r"|weapons|nerve agent|poison|keyloggers?|phishing)"
        # the recipes asked for by name, and breaking into someone else's things
        r"|\b(?:recipe|procedure|instructions|steps|formula|synthesis|quantities)(?: \w+){0,3}? (?:for|of"
        r"|to make) (?:a |an "
        r"|the )?(?:napalm|meth(?:amphetamine)?|ricin|sarin|nerve agents?|thermite|pipe bombs?|explosives?|bombs?"
        r"|mustard gas|fentanyl)\b|\b(?:synthesi[sz]es?|cooks?|makes?|builds?) (?:a |an |the )?(?:meth(?:amphetamine)?"
        r"|ricin|sarin|nerve agents?|pipe bombs?|napalm|thermite)\b|\b(?:break|hack|get) into (?:my |someone's |a |his "
        r"|her |their |the )?(?:\w+'s )?(?:wifi|wi-fi|network|account|email|phone|house|car)\b",
        "bomb bombs napalm explosive explosives meth methamphetamine malware ransomware weapon weapons nerve poison "
        "keylogger keyloggers phishing ricin sarin thermite mustard fentanyl into",
    ),
)


# Code, SQL and shell injection and dangerous commands in prompts: a separate set (guardrails.code), for teams
# whose users should not paste attack payloads or ask for destructive commands. Ids start with "code.".
CODE_RULES: tuple[Rule, ...] = (
    Rule(
        "code.sql_tautology",
        "code",
        0.7,
        r"['\"]\s*\)?\s*or\s*\(?\s*['\"]?(\w+)['\"]?\s*=\s*['\"]?\1\b|['\"]\s*or\s*['\"]['\"]\s*=\s*['\"]",
        "or",
    ),
    Rule("code.sql_union_select", "code", 0.6, r"\bunion(?:\s+all)?\s+select\b", "union"),
    Rule(
        "code.sql_stacked_statement",
        "code",
        0.6,
        r"['\"]\s*\)?\s*;\s*(?:drop\s+(?:table|database)|truncate\s|delete\s+from|shutdown|exec(?:ute)?\s+xp_)",
        "drop truncate delete shutdown exec execute",
    ),
    Rule("code.sql_comment_out", "code", 0.35, r"['\"]\s*\)?\s*(?:--|#|/\*)", "-- # /*"),
    Rule(
        "code.sql_time_based",
        "code",
        0.5,
        r"['\"]\s*\)?\s*(?:and|or|;|\|\|)\s*(?:pg_)?sleep\s*\(\s*\d+\s*\)|\bwaitfor\s+delay\s+'",
        "sleep waitfor",
    ),
    Rule(
        "code.shell_rm_root",
        "code",
        0.8,
        r"\brm\s+(?:-\w*\s+)*-\w*(?:r\w*f|f\w*r)\w*\s+(?:--no-preserve-root\s+)?(?:/|~|\*|\$home)(?:\s|$|;|\*)",
        "rm",
    ),
    Rule(
        "code.shell_pipe_to_shell",
        "code",
        0.6,
        r"\b(?:curl|wget)\b[^\n|]{0,300}\|\s*(?:sudo\s+)?(?:ba|z)?sh\b",
        "curl wget",
    ),
    Rule("code.shell_fork_bomb", "code", 0.9, r":\s*\(\s*\)\s*\{\s*:\s*\|\s*:\s*&\s*\}\s*;\s*:", ":|:"),
    Rule(
        "code.shell_disk_wipe",
        "code",
        0.8,
        r"\bdd\s+if=/dev/(?:zero|u?random)\s+of=/dev/(?:sd|nvme|hd|xvd|disk)|\bmkfs(?:\.\w+)?\s+/dev/"
        r"|>\s*/dev/sd[a-z]\b",
        "dd mkfs /dev/sd",
    ),
    Rule(
        "code.shell_chmod_world", "code", 0.6, r"\bchmod\s+(?:-r\s+)?(?:0?777|a\+rwx)\s+/(?:\s|$|etc|usr|bin)", "chmod"
    ),
    Rule(
        "code.shell_reverse_shell",
        "code",
        0.85,
        r"/dev/tcp/[\w.]+/\d+|\bnc(?:at)?\s+(?:-\w+\s+)*-[ec]\s+/bin/(?:ba)?sh|\bsocat\b[^\n]{0,80}exec:",
        "/dev/tcp nc ncat socat",
    ),
    Rule(
        "code.shell_injection",
        "code",
        0.5,
        r"[;&|`]\s*(?:cat\s+/etc/(?:passwd|shadow)|id|whoami|uname\s+-a)\b|\$\(\s*(?:curl|wget|whoami|id|cat)\b",
        "cat id whoami uname $(",
    ),
    Rule(
        "code.sensitive_files",
        "code",
        0.4,
        r"/etc/(?:passwd|shadow|sudoers)\b|\.ssh/id_(?:rsa|ed25519)\b"
        r"|\.aws/credentials\b",
        "passwd shadow sudoers ssh aws",
    ),
    Rule(
        "code.python_exec",
        "code",
        0.5,
        r"__import__\s*\(\s*['\"](?:os|subprocess|pty)['\"]\s*\)|\b(?:eval|exec)\s*\(\s*(?:base64|compile|__import__"
        r"|input|request)|subprocess\.\w+\([^)]{0,200}shell\s*=\s*true",
        "__import__ eval exec subprocess",
    ),
    Rule(
        "code.template_injection",
        "code",
        0.6,
        r"\{\{[^}]{0,80}(?:__class__|__globals__|__builtins__|__subclasses__|__mro__)|\$\{jndi:",
        "{{ ${jndi",
    ),
    Rule("code.path_traversal", "code", 0.5, r"(?:\.\./){3,}|(?:\.\.\\){3,}|%2e%2e%2f", "../ ..\\ %2e"),
    Rule(
        "code.xss",
        "code",
        0.5,
        r"<script\b[^>]*>[^<]{0,200}(?:document\.cookie|alert\s*\(|fetch\s*\(|eval\s*\()|\bon(?:error|load)\s*="
        r"\s*['\"]?[^'\">]{0,80}(?:alert|document\.cookie|fetch)\s*\(|javascript:\s*(?:alert|eval|fetch)\s*\(",
        "<script onerror onload javascript",
    ),
)


# --- normalisation

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e"))
# Letters that look like Latin ones (Cyrillic, Greek, a few symbols) after NFKC, mapped to what they imitate.
_CONFUSABLES = str.maketrans(
    {
        **dict.fromkeys(map(ord, "аАɑα"), "a"),
        **dict.fromkeys(map(ord, "вВβ"), "b"),
        **dict.fromkeys(map(ord, "сСϲ"), "c"),
        **dict.fromkeys(map(ord, "ԁ"), "d"),
        **dict.fromkeys(map(ord, "еЕёЁε"), "e"),
        **dict.fromkeys(map(ord, "һН"), "h"),
        **dict.fromkeys(map(ord, "іІїЇιɪ"), "i"),
        **dict.fromkeys(map(ord, "јЈ"), "j"),
        **dict.fromkeys(map(ord, "кКκ"), "k"),
        **dict.fromkeys(map(ord, "ӏ"), "l"),
        **dict.fromkeys(map(ord, "мМ"), "m"),
        **dict.fromkeys(map(ord, "пη"), "n"),
        **dict.fromkeys(map(ord, "оОοσ"), "o"),
        **dict.fromkeys(map(ord, "рРρ"), "p"),
        **dict.fromkeys(map(ord, "ԛ"), "q"),
        **dict.fromkeys(map(ord, "ѕЅ"), "s"),
        **dict.fromkeys(map(ord, "тТτ"), "t"),
        **dict.fromkeys(map(ord, "υս"), "u"),
        **dict.fromkeys(map(ord, "ѵν"), "v"),
        **dict.fromkeys(map(ord, "ԝ"), "w"),
        **dict.fromkeys(map(ord, "хХχ"), "x"),
        **dict.fromkeys(map(ord, "уУγ"), "y"),
        **_ZERO_WIDTH,
    }
)
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
# A word with leet digits between letters ("1gn0r3", "pr3v10us", "4ll"): only then is a leet view made.
_LEET_WORD = re.compile(r"[a-z][013457@$]|[013457@$][a-z]")
# Letters spaced out to defeat keyword filters: "i g n o r e", "i.g.n.o.r.e", "i-g-n-o-r-e".
_WORD = re.compile(r"[a-z0-9]+")
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")
_SPACED = re.compile(r"\b(?:\w(?: ?[.\-_*] ?| )){1,}\w\b")  # two letters too: "a t", "o f"
_SPACE_SEP = re.compile(r"[ .\-_*]")
_WHITESPACE = re.compile(r"\s+")
_BASE64_TOKEN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX_TOKEN = re.compile(r"(?:[0-9a-fA-F]{2}){8,}")
_HEX_PAIRS = re.compile(r"[0-9a-fA-F]{2}[ :][0-9a-fA-F]{2}[ :][0-9a-fA-F]{2}[ :][0-9a-fA-F]{2}")
_HEX_SPACED = re.compile(r"\b(?:[0-9a-fA-F]{2}[ :]){7,}[0-9a-fA-F]{2}\b")
_EDGES = "\"'`.,;:!?()[]{}<>"
_QUOTES = "\"'`“”‘’«»"
_DISCUSSION = re.compile(
    # also reported speech ("users asking the bot to '...'"); a word of a hostname ("evil.example") is none
    r"(?<!\.)\b(?:users? (?:ask|asking|asked|type|typing|typed|write|writing|wrote|say|saying|said|send|sending|sent)"
    r"|phrases?|such as|messages? like|prompt injections?|jailbreaks?|attacks?|attackers?|examples?|detect\w*"
    r"|defen[cd]\w*|protect\w*"
    r"|prevent\w*|classif\w*|what does|what is|means?)\b"
)

MAX_PAYLOADS = 16  # encoded payloads decoded per text
MAX_PAYLOAD_CHARS = 65_536


def fold(text: str) -> str:
    """Case, compatibility forms (full-width, ligatures), zero-width characters and look-alike letters folded
    away. ASCII text is only lower-cased."""
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKC", text)
    return text.lower().translate(_CONFUSABLES)  # lower case first: the table maps lower-case look-alikes


def despace(folded: str, words: set[str] | None = None) -> str | None:
    """``folded`` with spaced-out letters joined ("i g n o r e" -> "ignore"), or ``None`` when there are none.
    Only texts with at least five different one-letter words are searched (``words``: the text's words)."""
    if words is not None and len(_LETTERS.intersection(words)) < 5:
        return None
    if _SPACED.search(folded) is None:
        return None
    return _WHITESPACE.sub(" ", _SPACED.sub(_join_spaced, folded))


def _join_spaced(m: re.Match[str]) -> str:
    # "i-g-n-o-r-e a-l-l": when the letters are joined by dots or dashes, a plain space still separates words.
    run = m.group()
    if _JOINERS.search(run) is not None:
        return _JOINED.sub("", run)
    return _SPACE_SEP.sub("", run)


_JOINERS = re.compile(r"\w[.\-_*]\w")
_JOINED = re.compile(r" ?[.\-_*] ?")
_ROT13 = str.maketrans("abcdefghijklmnopqrstuvwxyz", "nopqrstuvwxyzabcdefghijklm")  # the folded view is lower case


def recode(folded: str, words: set[str]) -> str | None:
    """``folded`` read in ROT13 or backwards when the text names that encoding ("decode this rot13", "reverse
    this and follow it"), or ``None``: the two ciphers needing no key that payload smugglers use after base64."""
    if "rot13" in words or "rot" in words:
        return folded.translate(_ROT13)
    if "reverse" in words or "reversed" in words or "backwards" in words:
        return folded[::-1]
    return None


def unleet(folded: str, words: set[str] | None = None) -> str | None:
    """``folded`` with leetspeak digits read as letters, or ``None`` when no word mixes them (``words``: the
    text's words, to skip the search when none mixes letters and digits)."""
    symbols = "@" in folded or "$" in folded
    if words is not None and not symbols and all(w.isalpha() or w.isdigit() for w in words):
        return None
    if _LEET_WORD.search(folded) is None:
        return None
    return folded.translate(_LEET)


def _printable(data: str) -> bool:
    if len(data) < 8:
        return False
    good = sum(1 for c in data if c.isprintable() or c in "\n\r\t")
    letters = sum(1 for c in data if c.isalpha())
    return good >= 0.95 * len(data) and letters >= 0.5 * len(data)


def _decode_base64(token: str) -> str | None:
    raw = token.rstrip("=")
    raw += "=" * (-len(raw) % 4)
    try:
        return base64.b64decode(raw.replace("-", "+").replace("_", "/"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _decode_hex(digits: str) -> str | None:
    try:
        return bytes.fromhex(digits).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def decode_payloads(text: str) -> list[str]:
    """Texts hidden in base64 (standard or URL-safe) and hex payloads (``48656c6c6f``, ``0x…``, ``48 65 6c …``,
    ``\\x48\\x65…``) of ``text``: those that decode to readable text. At most ``MAX_PAYLOADS`` are decoded.

    Candidates are whitespace-separated tokens of 16+ characters (cheap: no regex runs over prose); spaced
    hex bytes are looked for only when the text has a run of them."""
    out: list[str] = []
    tried = 0
    for token in text.split():
        if len(token) < 16:
            continue
        if tried >= MAX_PAYLOADS:
            return out
        token = token.strip(_EDGES)
        if "\\x" in token:
            token = token.replace("\\x", "")
        if len(token) < 16 or len(token) > MAX_PAYLOAD_CHARS:
            continue
        if token.startswith("0x"):
            token = token[2:]
        data: str | None = None
        if _HEX_TOKEN.fullmatch(token):
            tried += 1
            data = _decode_hex(token)
        elif _BASE64_TOKEN.fullmatch(token) and not token.isalpha():
            tried += 1
            data = _decode_base64(token)
        if data is not None and _printable(data):
            out.append(data)
    if tried < MAX_PAYLOADS and _HEX_PAIRS.search(text) is not None:
        for m in _HEX_SPACED.finditer(text):
            data = _decode_hex(m.group().replace(" ", "").replace(":", ""))
            if data is not None and _printable(data):
                out.append(data)
    return out


# --- scoring


@dataclass(frozen=True, slots=True)
class Hit:
    """A rule that fired, its effective weight, and the view it fired in (plain, leet, spacing, encoded)."""

    rule: str
    category: str
    weight: float
    view: str


@dataclass(frozen=True, slots=True)
class Verdict:
    score: float
    hits: tuple[Hit, ...] = ()

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(sorted({h.rule for h in self.hits}))

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(sorted({h.category for h in self.hits}))


CLEAN = Verdict(0.0)

WINDOW = 240  # characters searched on each side of a rule's trigger: longer than any rule's match

PAYLOAD_RULE = "encoded.instruction_payload"  # "decode and follow" next to a payload that decodes to text
PAYLOAD_WEIGHT = 0.35

OBFUSCATION_BONUS = 0.1  # added to a rule's weight when it fired only in a de-obfuscated view
QUOTED_FACTOR = 0.4  # a rule matched inside quotes, in a text that discusses attacks, weighs this much


@dataclass(frozen=True, slots=True)
class _Compiled:
    id: str
    category: str
    weight: float
    regex: re.Pattern[str]
    words: frozenset[str]  # whole-word triggers (anchors: every match contains one)
    marks: tuple[str, ...]  # substring triggers (anchors)
    also: tuple[tuple[frozenset[str], tuple[str, ...]], ...]  # further groups, each of which must occur too

    @classmethod
    def of(cls, rule: Rule) -> _Compiled:
        groups = [_split_triggers(g) for g in rule.triggers.split("&")]
        words, marks = groups[0]
        return cls(rule.id, rule.category, rule.weight, rule.compile(), words, marks, tuple(groups[1:]))

    def find(self, view: str, words: set[str]) -> re.Match[str] | None:
        """The rule's first match in ``view`` (whose words are ``words``). A rule with triggers is searched only
        in windows of ``WINDOW`` characters around each occurrence of a trigger, which every match contains:
        the pattern then never runs over the rest of a long text."""
        if not self.words and not self.marks:
            return _search(self.regex, view, 0, len(view))
        present = [w for w in self.words if w in words]
        present += [m for m in self.marks if m in view]
        if not present:
            return None
        for group_words, group_marks in self.also:
            if group_words.isdisjoint(words) and not any(m in view for m in group_marks):
                return None
        spans: list[tuple[int, int]] = []
        for token in present:
            i = view.find(token)
            while i >= 0:
                spans.append((i - WINDOW, i + len(token) + WINDOW))
                i = view.find(token, i + 1)
        spans.sort()
        start, end = spans[0]
        for a, b in spans[1:]:
            if a > end:
                if (m := _search(self.regex, view, max(0, start), end)) is not None:
                    return m
                start = a
            end = max(end, b)
        return _search(self.regex, view, max(0, start), end)


def _split_triggers(group: str) -> tuple[frozenset[str], tuple[str, ...]]:
    triggers = group.split()
    return frozenset(t for t in triggers if t.isalnum()), tuple(t for t in triggers if not t.isalnum())


class InjectionDetector:
    """Scores texts for prompt injection. Built once per config (rules compiled then); ``score`` is thread-safe."""

    def __init__(
        self,
        rules: Iterable[Rule] = DEFAULT_RULES,
        *,
        disabled: Sequence[str] = (),
        decode: bool = True,
    ) -> None:
        off = set(disabled)
        self.rules: tuple[_Compiled, ...] = tuple(_Compiled.of(r) for r in rules if r.id not in off)
        self.decode = decode

    def score(self, text: str, stop_at: float = 1.0) -> Verdict:
        """The text's score and the rules that fired. Scanning stops once the score reaches ``stop_at``
        (the caller's threshold when only the decision matters)."""
        if not text:
            return CLEAN
        hits: dict[str, Hit] = {}
        folded = fold(text)
        words = set(_WORD.findall(folded))
        views: list[tuple[str, str, set[str]]] = [("plain", folded, words)]
        obfuscated = folded != text.lower()  # look-alikes, zero-width or compatibility forms were folded
        if (spaced := despace(folded, words)) is not None:
            views.append(("spacing", spaced, set(_WORD.findall(spaced))))
        if (leet := unleet(folded, words)) is not None:
            views.append(("leet", leet, set(_WORD.findall(leet))))
        if (recoded := recode(folded, words)) is not None:
            views.append(("encoded", recoded, set(_WORD.findall(recoded))))
        miss = 1.0
        for name, view, view_words in views:
            miss = self._scan(view, view_words, name, obfuscated or name != "plain", hits, miss, stop_at)
            if 1.0 - miss >= stop_at:
                return Verdict(1.0 - miss, tuple(hits.values()))
        if self.decode:
            payloads = decode_payloads(text)
            if payloads and "encoded.decode_and_follow" in hits:
                # Asked to decode and obey, and there is something to decode: smuggling, whatever it says.
                hits[PAYLOAD_RULE] = Hit(PAYLOAD_RULE, "encoded", PAYLOAD_WEIGHT, "encoded")
                miss *= 1.0 - PAYLOAD_WEIGHT
            for payload in payloads:
                if 1.0 - miss >= stop_at:
                    break
                inner = fold(payload)
                miss = self._scan(inner, set(_WORD.findall(inner)), "encoded", True, hits, miss, stop_at)
        if not hits:
            return CLEAN
        return Verdict(round(1.0 - miss, 4), tuple(hits.values()))

    def _scan(
        self,
        view: str,
        words: set[str],
        name: str,
        obfuscated: bool,
        hits: dict[str, Hit],
        miss: float,
        stop_at: float,
    ) -> float:
        discussion: bool | None = None
        for rule in self.rules:
            if rule.id in hits:
                continue
            m = rule.find(view, words)
            if m is None:
                continue
            weight = rule.weight
            if obfuscated:
                weight = min(0.95, weight + OBFUSCATION_BONUS)
            elif _quoted(view, m.start(), m.end()):
                if discussion is None:
                    discussion = _DISCUSSION.search(view) is not None
                if discussion:
                    weight *= QUOTED_FACTOR
            hits[rule.id] = Hit(rule.id, rule.category, weight, name)
            miss *= 1.0 - weight
            if 1.0 - miss >= stop_at:
                break
        return miss


def _search(regex: re.Pattern[str], view: str, pos: int, endpos: int) -> re.Match[str] | None:
    """The first match in ``view[pos:endpos]`` that starts a word when it starts with a letter or digit (the
    ``\\b`` taken out of the pattern's start by ``strip_leading_boundaries``)."""
    while (m := regex.search(view, pos, endpos)) is not None:
        start = m.start()
        if start == 0 or not (view[start].isalnum() and (view[start - 1].isalnum() or view[start - 1] == "_")):
            return m
        pos = start + 1
    return None


def _quoted(view: str, start: int, end: int) -> bool:
    """Whether the match sits inside quotes on its line: a quote opens at most 3 characters before it and
    closes after it on the same line."""
    before = view[max(0, start - 3) : start]
    opener = next((q for q in reversed(before) if q in _QUOTES), None)
    if opener is None:
        return False
    line_end = view.find("\n", end)
    after = view[end : line_end if line_end >= 0 else len(view)]
    return any(q in after for q in _QUOTES)
