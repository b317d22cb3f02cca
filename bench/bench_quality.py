"""Answer-quality benchmark: how well the groundedness score separates grounded answers
from perturbed ones, how fast it is, how well PII is found, and what the grounding guard
costs a chat request.

1. Calibration (``bench/quality_set.py``, from ``lorag/demo_assets/corpus``): copied and
   paraphrased answers (grounded) against the same answers with an entity, a number or
   a negation changed, or drawn from another document (ungrounded). AUROC of the score
   (the least support of the answer's sentences, all-MiniLM-L6-v2 + lexical overlap) per
   kind; the share of grounded answers the default threshold would flag; milliseconds
   per answer, with a cold cache (the sources' sentences embedded on first sight) and a
   warm one (sources seen before, as chunks retrieved again are).
2. PII: precision and recall per entity type on text generated with Faker (seeded),
   each sentence holding one value at a known span among distractors (order numbers,
   dates, prices, times, names); a finding counts when it overlaps a known span of its type.
3. The guard's overhead: one ``lorag serve`` with two brands identical but for
   ``quality.grounding`` (off, flag), requests alternating between them, chat latency
   p50 side by side (SmolLM2-135M on vLLM; the tiny model with ``--tiny``).

    .venv/bin/python -m bench.bench_quality --quick --out /tmp/quality.json
    .venv/bin/python -m bench.run --only quality        # into bench/RESULTS.md
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from bench import quality_set
from bench.common import BenchResult, Options, percentile, progress
from bench.common import main as bench_main
from bench.stats import bootstrap_interval

NAME = "quality"
PII_TYPES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN")
RECALL_BAR = {"EMAIL_ADDRESS": 0.95, "PHONE_NUMBER": 0.95, "CREDIT_CARD": 0.95}
MAJOR_CARDS = ("visa16", "mastercard", "amex", "discover")


def sizes(opts: Options) -> dict:
    return opts.pick(full=dict(sentences=None, pii=500, requests=16, model="smollm2", max_tokens=48),
                     quick=dict(sentences=None, pii=200, requests=8, model="smollm2", max_tokens=32),
                     tiny=dict(sentences=12, pii=20, requests=3, model="tiny", max_tokens=8))


def auroc(positives: list[float], negatives: list[float]) -> float:
    """P(score of a random positive > score of a random negative), ties counting half
    (the Mann-Whitney U statistic over the product of the sizes)."""
    pos, neg = np.asarray(positives)[:, None], np.asarray(negatives)[None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


# -- 1. calibration ----------------------------------------------------------------------

def calibration(result: BenchResult, size: dict) -> None:
    from lorag.app.quality.metrics import DEFAULT_THRESHOLD, AnswerMetrics
    from retrieval.embedders import get_embedder
    from retrieval.settings import EmbedderSettings

    items = quality_set.build(limit=size["sentences"])
    embedder = get_embedder(EmbedderSettings())
    embedder.warm_up()
    metrics = AnswerMetrics(embedder)
    progress(NAME, f"calibration: {len(items)} answers")
    scores: dict[str, list[float]] = {}
    timings = {}
    for cache in ("cold", "warm"):  # the second pass finds every source sentence cached
        seconds = []
        for item in items:
            started = time.perf_counter()
            found = metrics.grounding(item.answer, item.sources)
            seconds.append(time.perf_counter() - started)
            if cache == "cold":
                scores.setdefault(item.kind, []).append(min(v.support for v in found.sentences))
        timings[cache] = seconds
    copied = scores["copied"]
    swaps = [s for kind in quality_set.SWAPS for s in scores.get(kind, [])]
    rows = []
    for kind in quality_set.SWAPS:
        value = auroc(copied, scores[kind])
        caught = float(np.mean(np.array(scores[kind]) < DEFAULT_THRESHOLD))
        rows.append([f"copied vs {kind}", len(scores[kind]), round(value, 3), round(caught, 3)])
        result.metrics[f"auroc_{kind}"] = round(value, 4)
    swap_auroc = auroc(copied, swaps)
    paraphrase_auroc = auroc(scores["paraphrase"], swaps)
    rows.append(["copied vs all swaps", len(swaps), round(swap_auroc, 3),
                 round(float(np.mean(np.array(swaps) < DEFAULT_THRESHOLD)), 3)])
    rows.append(["paraphrase vs all swaps", len(swaps), round(paraphrase_auroc, 3), ""])
    flagged = {k: float(np.mean(np.array(scores[k]) < DEFAULT_THRESHOLD)) for k in quality_set.GROUNDED}
    result.table("Groundedness calibration (demo corpus; score = least sentence support; "
                 f"flagged = support < {DEFAULT_THRESHOLD})",
                 ["comparison", "ungrounded answers", "AUROC", "share of ungrounded flagged"], rows)
    result.table("Grounded answers the default threshold flags (false alarms)",
                 ["kind", "answers", "flagged"],
                 [[k, len(scores[k]), round(flagged[k], 3)] for k in quality_set.GROUNDED])
    p95 = {cache: percentile(s, 95) * 1e3 for cache, s in timings.items()}
    p50 = {cache: percentile(s, 50) * 1e3 for cache, s in timings.items()}
    result.table("Milliseconds per answer (one sentence, two sources of ~200 words, 2 threads)",
                 ["sources' sentences", "p50 ms", "p95 ms"],
                 [[cache, round(p50[cache], 1), round(p95[cache], 1)] for cache in timings])
    result.metrics.update(auroc_swaps=round(swap_auroc, 4), auroc_paraphrase=round(paraphrase_auroc, 4),
                          paraphrases_flagged=round(flagged["paraphrase"], 4),
                          copied_flagged=round(flagged["copied"], 4),
                          p95_ms_cold=round(p95["cold"], 1), p95_ms_warm=round(p95["warm"], 1),
                          calibration_answers=len(items))
    result.bar("quality_swap_auroc", "groundedness AUROC, copied answers vs entity/number/"
               "negation/other-document swaps (demo corpus)", round(swap_auroc, 3), ">=", 0.85,
               unit="", why=f"paraphrase vs swaps {paraphrase_auroc:.3f}; "
               f"{flagged['paraphrase']:.0%} of rule-made paraphrases flagged at the default threshold")
    result.notes.append(
        "The paraphrases are made by rules (synonyms, a moved clause), milder than a person's "
        "or a model's rewording: the paraphrase figures are an upper bound on what this proxy "
        "keeps; freer paraphrases with new content words lose lexical overlap and are flagged "
        "more often.")


# -- 2. PII ------------------------------------------------------------------------------

def pii_samples(n: int, seed: int = 0) -> list[tuple[str, str, int, int]]:
    """(text, entity, start, end): one generated value per sentence among distractors."""
    from faker import Faker

    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    makers = {
        "EMAIL_ADDRESS": fake.email, "PHONE_NUMBER": fake.phone_number,
        "CREDIT_CARD": lambda: _spaced(fake.credit_card_number(rng.choice(MAJOR_CARDS)), rng),
        "CREDIT_CARD (any Faker type)": fake.credit_card_number,
        "IBAN_CODE": fake.iban, "IP_ADDRESS": lambda: rng.choice([fake.ipv4, fake.ipv6])(),
        "US_SSN": fake.ssn}
    samples = []
    for kind, make in makers.items():
        for _ in range(n):
            value = make()
            head = (f"Order #{rng.randint(100000, 999999)} of {fake.date()} for "
                    f"${rng.randint(1, 500)}.{rng.randint(10, 99)}: {fake.name()} gave ")
            text = head + value + f" at {fake.time()}."
            samples.append((text, kind, len(head), len(head) + len(value)))
    return samples


def _spaced(number: str, rng: random.Random) -> str:
    """A card number as people write it: plain, or in groups of four with spaces or dashes."""
    sep = rng.choice(["", " ", "-"])
    return sep.join(number[i:i + 4] for i in range(0, len(number), 4)) if sep else number


def pii(result: BenchResult, size: dict) -> None:
    from ingest.pii import PiiRedactor, PiiSettings

    redactor = PiiRedactor(PiiSettings(entities=list(PII_TYPES)))
    redactor.warm_up()
    samples = pii_samples(size["pii"])
    progress(NAME, f"PII: {len(samples)} sentences")
    gold: dict[str, int] = {}
    recalled: dict[str, int] = {}
    right: dict[str, int] = {e: 0 for e in PII_TYPES}  # findings on a value of their type
    wrong: dict[str, int] = {e: 0 for e in PII_TYPES}  # findings anywhere else
    started = time.perf_counter()
    for text, kind, start, end in samples:
        entity = kind.split(" ")[0]
        found = redactor.find(text)
        on_value = [f.entity == entity and f.start < end and f.end > start for f in found]
        gold[kind] = gold.get(kind, 0) + 1
        recalled[kind] = recalled.get(kind, 0) + any(on_value)
        for finding, hit in zip(found, on_value):
            (right if hit else wrong)[finding.entity] += 1
    ms = (time.perf_counter() - started) / len(samples) * 1e3
    rows = []
    for kind in gold:
        entity = kind.split(" ")[0]
        recall = recalled[kind] / gold[kind]
        findings = right[entity] + wrong[entity]
        precision = right[entity] / findings if findings else None
        rows.append([kind, gold[kind], findings, _round(precision), _round(recall)])
        key = "CREDIT_CARD_ANY" if "(" in kind else kind
        result.metrics[f"pii_recall_{key}"] = _round(recall)
        result.metrics[f"pii_precision_{entity}"] = _round(precision)
        if kind in RECALL_BAR:
            result.bar(f"pii_recall_{kind.lower()}", f"PII recall, {kind} (Faker, seeded)",
                       _round(recall), ">=", RECALL_BAR[kind], unit="")
    result.table(f"PII per entity type (Faker en_US, seed 0, {size['pii']} sentences per type; "
                 f"{ms:.1f} ms per sentence)", ["values generated", "values", "findings of the type (all sentences)",
                  "precision", "recall"],
                 rows)
    result.notes.append(
        "PII: CREDIT_CARD values are Visa (16 digits), Mastercard, Amex and Discover numbers, "
        "plain or in groups of four; the row 'any Faker type' adds 12-19 digit Maestro, JCB "
        "and Visa-19 numbers, some of which Presidio's card pattern does not cover. Phone "
        "numbers: Presidio's recognizer (valid numbers of US, GB, CA, IN, IL, BR) plus a "
        "pattern for North American numbers written with separators, so the unassigned area "
        "codes Faker makes count too. The distractors (order numbers, dates, prices, times, "
        "names) are the only non-PII text: precision on other text may be lower. Names and "
        "addresses need an NER model and are not detected.")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# -- 3. the guard's overhead -------------------------------------------------------------

def guard_overhead(result: BenchResult, size: dict) -> None:
    from bench.bench_adapters import model_path
    from bench.bench_http import QUESTIONS, SYSTEM, start_lorag

    model = model_path(size["model"])
    http_size = {"max_model_len": 2048, "max_num_seqs": 8, "kv_cache_bytes": 512 * 2**20}
    with tempfile.TemporaryDirectory(prefix="lorag-bench-quality-") as tmp:
        server = start_lorag(model, http_size, Path(tmp))
        try:
            key = _set_up(server, SYSTEM)
            latencies = _alternate(server.url, key, QUESTIONS, size)
        finally:
            server.stop()
    guard_bar(result, latencies, size)


def guard_bar(result: BenchResult, latencies: dict[str, list[float]], size: dict) -> None:
    """The guard's bar from each brand's latencies (seconds; "off" and "flag", request i
    of both the same question, back to back)."""
    p50 = {brand: percentile(s, 50) * 1e3 for brand, s in latencies.items()}
    ratio = p50["flag"] / p50["off"]
    result.table("Chat latency, grounding guard off vs flag (same server, alternating requests, "
                 f"non-streamed, {size['max_tokens']} tokens, {size['model']})",
                 ["brand", "requests", "p50 ms", "p99 ms"],
                 [[b, len(s), round(p50[b], 1), round(percentile(s, 99) * 1e3, 1)]
                  for b, s in latencies.items()])
    result.metrics.update(guard_p50_ms_off=round(p50["off"], 1), guard_p50_ms_flag=round(p50["flag"], 1),
                          guard_p50_ratio=round(ratio, 3))
    # the same question back to back with the guard off and on: resampled as pairs
    interval = bootstrap_interval(latencies["flag"], latencies["off"], paired=True)
    result.ratio_bar("quality_guard_overhead", f"chat p50 with the grounding guard / without "
                     f"({size['model']})", interval, "<=", 1.10,
                     why="the tiny model answers in milliseconds, so the guard's fixed cost "
                         "dominates; the bar is for a real model" if size["model"] == "tiny" else "")


def _set_up(server, system: str) -> str:
    from bench.bench_http import ASSETS

    admin = httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=300)
    key = admin.post("/admin/tenants", json={"id": "bench"}).json()["key"]["api_key"]
    for brand, grounding in (("off", "off"), ("flag", "flag")):
        response = admin.post("/admin/tenants/bench/brands", json={
            "name": brand, "system_prompt": system, "quality": {"grounding": grounding}})
        response.raise_for_status()
    tenant = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=300)
    files = [("files", (p.name, p.read_bytes(), "text/markdown"))
             for p in sorted((ASSETS / "corpus" / "acme").iterdir(), key=lambda p: p.name)
             if p.name.endswith(".md")]
    job = tenant.post("/v1/documents", files=files).json()["id"]
    while tenant.get(f"/v1/jobs/{job}").json()["status"] in ("queued", "running"):
        time.sleep(0.2)
    return key


def _alternate(url: str, key: str, questions: list[str], size: dict) -> dict[str, list[float]]:
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600)
    latencies: dict[str, list[float]] = {"off": [], "flag": []}
    order = ["off", "flag"]
    for i in range(size["requests"] + 1):  # the first round warms both brands up, unmeasured
        question = questions[i % len(questions)]
        for brand in order:
            body = {"model": brand, "max_tokens": size["max_tokens"], "temperature": 0,
                    "messages": [{"role": "user", "content": question}]}
            started = time.perf_counter()
            response = client.post("/v1/chat/completions", json=body)
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            if (response.json().get("grounding") is not None) != (brand == "flag"):
                raise RuntimeError(f"brand {brand}: unexpected grounding field")
            if i:
                latencies[brand].append(elapsed)
        order.reverse()
    progress(NAME, f"guard: {size['requests']} requests per brand")
    return latencies


def run(opts: Options) -> BenchResult:
    size = sizes(opts)
    result = BenchResult(NAME)
    calibration(result, size)
    pii(result, size)
    guard_overhead(result, size)
    return result


if __name__ == "__main__":
    sys.exit(bench_main(run))
