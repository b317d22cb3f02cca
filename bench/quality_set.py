"""A labelled groundedness set from lorag's own demo corpus (``lorag/demo_assets/corpus``).

Each item is a one-sentence answer with citation ``[1]`` and two sources: [1] the
document the sentence comes from, [2] another document of the same tenant. Kinds:

- ``copied`` (grounded): the sentence as written;
- ``paraphrase`` (grounded): the sentence rewritten by rules (synonyms, a moved clause):
  milder than a human paraphrase, so the figure is an upper bound on what a proxy keeps;
- ``entity`` (ungrounded): a name swapped for a name from another document;
- ``number``: a number changed; ``negation``: a negation added or removed;
- ``other-document``: a sentence from a third document, with the same sources.

Seeded: the same set every run.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from lorag.app.quality.text import content_tokens, is_number, split_sentences

CORPUS = Path(__file__).resolve().parent.parent / "lorag" / "demo_assets" / "corpus"
SWAPS = ("entity", "number", "negation", "other-document")
GROUNDED = ("copied", "paraphrase")
_WORD = re.compile(r"[A-Za-z0-9][\w'-]*")
_NUMBER_WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                 "twelve", "fifteen", "twenty", "thirty"]
_AUXILIARIES = ("is", "are", "can", "will", "does", "do", "was", "should", "must", "has", "have")
SYNONYMS = {
    "about": "roughly", "automatically": "by itself", "holds": "has room for",
    "can": "is able to", "must": "has to", "customers": "buyers", "buy": "purchase",
    "order": "purchase", "orders": "purchases", "free": "free of charge", "days": "days' time",
    "within": "inside", "need": "require", "needs": "requires", "use": "make use of",
    "uses": "makes use of", "start": "begin", "starts": "begins", "help": "assist",
    "shows": "displays", "show": "display", "get": "receive", "gets": "receives",
    "choose": "pick", "chosen": "picked", "also": "as well", "usually": "normally",
    "quickly": "fast", "large": "big", "small": "little", "best": "ideal", "keep": "retain",
    "keeps": "retains", "stays": "remains", "send": "ship", "sent": "shipped", "each": "every",
    "only": "solely", "allows": "lets", "fully": "completely", "between": "from",
    "additional": "extra", "contact": "reach", "replace": "swap", "replaced": "swapped",
    "cleaning": "washing", "clean": "wash", "cost": "price", "costs": "is priced at",
    "before": "prior to", "after": "following", "under": "below", "over": "above",
}


@dataclass(frozen=True)
class Item:
    kind: str
    grounded: bool
    answer: str
    sources: tuple[str, str]
    document: str


def documents() -> dict[str, tuple[str, str]]:
    """document id -> (tenant, text) for every demo document."""
    return {f"{p.parent.name}/{p.stem}": (p.parent.name, p.read_text())
            for p in sorted(CORPUS.glob("*/*.md"))}


def build(limit: int | None = None, seed: int = 0) -> list[Item]:
    """The labelled items (at most ``limit`` source sentences)."""
    rng = random.Random(seed)
    docs = documents()
    sentences = [(doc_id, s) for doc_id, (_, text) in docs.items() for s in _prose(text)]
    rng.shuffle(sentences)
    names = sorted({w for _, (_, text) in docs.items() for w in _names(text)})
    items: list[Item] = []
    for doc_id, sentence in sentences[:limit]:
        tenant = docs[doc_id][0]
        others = [d for d in docs if d != doc_id and docs[d][0] == tenant]
        second, third = rng.sample(others, 2)
        sources = (docs[doc_id][1], docs[second][1])
        cite = lambda text: text.rstrip(".") + " [1]."  # noqa: E731
        items.append(Item("copied", True, cite(sentence), sources, doc_id))
        variants = {"paraphrase": paraphrase(sentence), "entity": swap_entity(sentence, names, rng),
                    "number": swap_number(sentence, rng), "negation": flip_negation(sentence),
                    "other-document": rng.choice(_prose(docs[third][1]))}
        for kind, text in variants.items():
            if text and text != sentence:
                items.append(Item(kind, kind in GROUNDED, cite(text), sources, doc_id))
    return items


def _prose(text: str) -> list[str]:
    """Sentences of a Markdown document worth answering with (no headings, 6+ content words)."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [s for s in split_sentences("\n\n".join(lines)) if len(content_tokens(s)) >= 6
            and s.endswith(".")]


def _names(text: str) -> set[str]:
    found = set()
    for sentence in _prose(text):
        words = _WORD.findall(sentence)
        found.update(w for w in words[1:] if w[0].isupper() and len(w) > 2)
    return found


def paraphrase(sentence: str) -> str | None:
    """Synonyms for the words the table has, and a leading clause moved to the end; None
    when fewer than two changes apply."""
    changes = 0
    words = sentence.rstrip(".").split(" ")
    for i, word in enumerate(words):
        bare = word.strip(",;:").lower()
        if bare in SYNONYMS:
            words[i] = word.lower().replace(bare, SYNONYMS[bare]) if i else \
                SYNONYMS[bare].capitalize() + word[len(bare):]
            changes += 1
    text = " ".join(words)
    head, comma, tail = text.partition(", ")
    if comma and len(head.split()) >= 3 and len(tail.split()) >= 4 and not head.startswith("If"):
        text = tail[0].upper() + tail[1:] + ", " + head[0].lower() + head[1:]
        changes += 1
    return text + "." if changes >= 2 else None


def swap_entity(sentence: str, names: list[str], rng: random.Random) -> str | None:
    words = _WORD.findall(sentence)
    present = [w for w in words[1:] if w[0].isupper() and len(w) > 2]
    if not present:
        return None
    target = rng.choice(present)
    choices = [n for n in names if n.lower() != target.lower() and n not in sentence]
    return re.sub(rf"\b{re.escape(target)}\b", rng.choice(choices), sentence, count=1)


def swap_number(sentence: str, rng: random.Random) -> str | None:
    for match in re.finditer(r"\b\d+(?:[.,]\d+)?\b|\b[a-z]+\b", sentence):
        token = match.group(0)
        if token.isdigit():
            new = str(int(token) + rng.choice([1, 2, 5, 10]))
        elif token in _NUMBER_WORDS:
            new = rng.choice([w for w in _NUMBER_WORDS if w != token])
        elif is_number(token) and any(ch.isdigit() for ch in token):
            new = token.replace(token[0], str((int(token[0]) + 3) % 10) or "1", 1)
        else:
            continue
        return sentence[:match.start()] + new + sentence[match.end():]
    return None


def flip_negation(sentence: str) -> str | None:
    """Remove the first negation, else add ``not`` after the first auxiliary verb."""
    for pattern in (r"\bnot ", r"\bnever ", r"\bNever "):
        if re.search(pattern, sentence):
            return re.sub(pattern, "always " if "ever" in pattern.lower() else "", sentence,
                          count=1)
    for word in sentence.split(" ")[1:]:
        if word in _AUXILIARIES:
            return re.sub(rf"\b{word}\b", f"{word} not", sentence, count=1)
    return None
