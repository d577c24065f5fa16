"""Component costs: ``python -m bench.components`` prints what deciding costs per event and per first-seen line,
component by component, in one process, and writes JSON.

Whole-pipeline rates on a shared machine drift by up to a third between runs (see the README's performance
section), more than most single changes move them. Here each component runs in a tight loop over the same inputs,
the collector's time kept apart, so a change to one component shows in its own line (the machine's drift still
reaches each line: compare runs taken in turns). Workload: ``lifeguard synth`` with every text made new (as
``python -m bench --fresh-texts``), because lines a worker has not seen before are what a platform's chat is
mostly made of; the repeated-lines row runs the same file a second time.

Figures, not assertions: nothing here fails on a slow machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.streaming import freshen_texts
from pipeline.conditions import TextPatterns
from pipeline.decision import Detectors
from pipeline.normalise import NormalisedText, normalise
from pipeline.pattern_screen import PatternScreen


@contextmanager
def collector_time() -> Iterator[list[float]]:
    """Seconds the cyclic collector ran inside the block (``[total]``, filled in as it goes)."""
    total = [0.0]
    started = [0.0]

    def watch(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            total[0] += time.perf_counter() - started[0]

    gc.callbacks.append(watch)
    try:
        yield total
    finally:
        gc.callbacks.remove(watch)


def per_item_us(items: list[Any], work: Callable[[Any], object]) -> float:
    """Mean µs per item of ``work``, with the collector held off (it is measured on its own elsewhere)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        started = time.perf_counter()
        for item in items:
            work(item)
        return 1e6 * (time.perf_counter() - started) / max(1, len(items))
    finally:
        if enabled:
            gc.enable()


def first_seen_chat(conversations: int, seed: int) -> list[dict[str, Any]]:
    """A synth workload at a realistic mix with every text made new (as ``python -m bench --fresh-texts``)."""
    from pipeline.synth import generate

    synth = generate(seed=seed, conversations=conversations, grooming_share=0.03)
    freshen_texts(synth.events, seed)
    return synth.events


def replay_costs(path: Path, detectors: Detectors) -> dict[str, float]:
    """One replay of ``path`` as ``lifeguard replay`` runs it: µs per event without the collector, and the
    collector's ms per 1,000 events."""
    from pipeline.replay import replay

    with collector_time() as collected:
        started = time.perf_counter()
        result = replay(path, detectors)
        seconds = time.perf_counter() - started
    events = max(1, result.events)
    return {"events": result.events, "us_per_event": round(1e6 * (seconds - collected[0]) / events, 1),
            "collector_ms_per_1000_events": round(1e6 * collected[0] / events, 2)}


def rule_pattern_costs(detectors: Detectors, lines: list[NormalisedText]) -> dict[str, float]:
    """Every text condition of the rule book on every line (fresh memos): screened as the book does, and with
    ``re`` alone. Per line, all conditions; in a decision only the rules whose gates pass are asked."""
    originals = detectors.rules.text_conditions()
    screen = PatternScreen()
    screened = [TextPatterns(c.patterns, screen) for c in originals]
    screen.seal(background=False)
    searched = [TextPatterns(c.patterns, None) for c in originals]
    texts = [line.text for line in lines]

    def screened_line(text: str) -> None:
        for condition in screened:
            condition.first_match(text)

    def searched_line(text: str) -> None:
        for condition in searched:
            condition.first_match(text)

    return {"patterns": sum(len(c.patterns) for c in originals), "screened_patterns": screen.screened,
            "screened_us_per_line": round(per_item_us(texts, screened_line), 2),
            "searched_us_per_line": round(per_item_us(texts, searched_line), 2)}


def model_costs(detectors: Detectors, lines: list[NormalisedText], encoder_lines: int) -> dict[str, float]:
    """The stage model on new lines (in batches, as the runner primes it), the sentence encoder on one line at a
    time, and the exemplar comparison of one embedding."""
    from models.exemplar import ExemplarClassifier
    from models.stage import StageClassifier

    out: dict[str, float] = {}
    stage = next((c for c in detectors.classifiers if isinstance(c, StageClassifier)), None)
    exemplar = next((c for c in detectors.classifiers if isinstance(c, ExemplarClassifier)), None)
    if stage is not None:
        batches = [lines[i:i + 1000] for i in range(0, len(lines), 1000)]
        out["stage_model_us_per_line"] = round(per_item_us(batches, stage.prime) * len(batches) / max(1, len(lines)),
                                               2)
    if exemplar is not None:
        encoder = exemplar.encoder
        texts = [line.text for line in lines[:encoder_lines]]
        out["encoder_ms_per_line"] = round(per_item_us(texts, lambda t: encoder.encode([t])) / 1000, 3)
        vectors = [encoder.encode([t]) for t in texts[:100]]
        out["exemplar_comparison_us_per_line"] = round(per_item_us(vectors, exemplar.compare), 1)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.components", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=1000, help="synthetic conversations (~15 events each)")
    parser.add_argument("--encoder-lines", type=int, default=300, help="lines timed through the sentence encoder")
    parser.add_argument("--out", type=Path, default=Path("bench/results/components.json"))
    args = parser.parse_args(argv)

    from pipeline.detectors import load_detectors
    from pipeline.runner import freeze_startup_heap
    from pipeline.settings import load_settings

    console = Console()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lifeguard-components-") as tmp:
        with console.status("loading the rules and models"):
            detectors = load_detectors(load_settings())
            detectors.rules.screen.wait(120)
            freeze_startup_heap()  # as the worker and `lifeguard replay` do
        with console.status("generating first-seen chat"):
            first = Path(tmp) / "events.jsonl"
            first.write_text("".join(json.dumps(e) + "\n" for e in first_seen_chat(args.conversations, 1)))
            texts = list(dict.fromkeys(e["text"] for e in first_seen_chat(args.conversations, 2) if e.get("text")))
        with console.status("replay: first-seen lines, then the same file again"):
            results["replay_first_seen"] = replay_costs(first, detectors)
            results["replay_repeated"] = replay_costs(first, detectors)
        with console.status("folding new lines"):
            normalise.cache_clear()
            results["fold_us_per_line"] = round(per_item_us(texts, normalise), 2)
        lines = [normalise(t) for t in texts]
        with console.status("rule text patterns"):
            results["rule_patterns"] = rule_pattern_costs(detectors, lines)
        with console.status("stage model, encoder, exemplar comparison"):
            results.update(model_costs(detectors, lines, args.encoder_lines))
    results["lines"] = len(texts)
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    print_table(console, results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    return results


def print_table(console: Console, r: dict[str, Any]) -> None:
    table = Table(title=f"Lifeguard component costs ({r['machine']['cpus']} cores, one process, collector apart)",
                  title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    first, repeated, rules = r["replay_first_seen"], r["replay_repeated"], r["rule_patterns"]
    table.add_row("replay, first-seen lines (collector apart)", f"{first['us_per_event']:,.1f} µs/event")
    table.add_row("replay, repeated lines (collector apart)", f"{repeated['us_per_event']:,.1f} µs/event")
    table.add_row("collector, first-seen / repeated",
                  f"{first['collector_ms_per_1000_events']:.2f} / {repeated['collector_ms_per_1000_events']:.2f} "
                  "ms per 1,000 events")
    table.add_row("fold a new line", f"{r['fold_us_per_line']:,.1f} µs")
    table.add_row(f"rule text patterns on a new line, screened ({rules['screened_patterns']} of "
                  f"{rules['patterns']}) / re alone", f"{rules['screened_us_per_line']:,.1f} / "
                  f"{rules['searched_us_per_line']:,.1f} µs")
    if "stage_model_us_per_line" in r:
        table.add_row("stage model, new line (batches of 1,000)", f"{r['stage_model_us_per_line']:,.1f} µs")
    if "encoder_ms_per_line" in r:
        table.add_row("sentence encoder, one line", f"{r['encoder_ms_per_line']:,.2f} ms")
        table.add_row("exemplar comparison, one embedding", f"{r['exemplar_comparison_us_per_line']:,.0f} µs")
    console.print(table)


if __name__ == "__main__":
    main()
