"""What ``lifeguard eval`` writes: metrics.json, report.md and two PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.evaluation import Evaluation

GROOMING_KINDS = ("progressive", "fast_offplatform", "gift_lure", "age_liar", "obfuscated", "fanout", "unknown_age")


def metrics(evaluation: Evaluation, *, models: list[dict[str, str]], fusion: bool,
            cascade: dict[str, Any] | None, case_threshold: float) -> dict[str, Any]:
    card = evaluation.card.to_dict()
    per_kind = {
        kind: {**counts, "label": "grooming" if kind in GROOMING_KINDS else "benign",
               "flag_rate": round(counts["flagged"] / counts["conversations"], 4) if counts["conversations"] else 0.0}
        for kind, counts in sorted(card.pop("per_kind").items())
    }
    return {
        "quality": card,
        "per_kind": per_kind,
        "throughput": {"events": evaluation.events, "invalid_lines": evaluation.invalid,
                       "events_per_second": evaluation.timing.get("events_per_second", 0.0),
                       "seconds": evaluation.timing.get("seconds", 0.0)},
        "cascade": cascade,
        "models": models,
        "fusion": fusion,
        "case_threshold": case_threshold,
        "threshold_curve": evaluation.curve,
    }


def write_report(out: Path, result: dict[str, Any], evaluation: Evaluation, title: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "metrics.json", out / "report.md", out / "precision_recall.png", out / "events_to_flag.png"]
    paths[0].write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    paths[1].write_text(_markdown(result, title), encoding="utf-8")
    _plots(result, evaluation, paths[2], paths[3])
    return paths


def _markdown(result: dict[str, Any], title: str) -> str:
    q = result["quality"]
    t = result["throughput"]
    c = result["cascade"]
    lines = [
        f"# {title}",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| conversations (grooming / benign) | {q['conversations']} ({q['grooming']} / {q['benign']}) |",
        f"| precision | {q['precision']:.4f} |",
        f"| recall | {q['recall']:.4f} |",
        f"| F0.5 | {q['f0_5']:.4f} |",
        f"| false-positive rate | {q['false_positive_rate']:.4f} |",
        f"| early rate (flagged by the first off-platform/meeting request) | {q['early_rate']:.4f} "
        f"({q['early_eligible']} eligible) |",
        f"| events to flag, median / p90 | {q['events_to_flag_median']} / {q['events_to_flag_p90']} |",
        f"| latency-weighted F1 (eSPD, k½ = 10) | {q['latency_weighted_f1']:.4f} |",
        f"| events/s (whole replay, this machine) | {t['events_per_second']:.0f} ({t['events']} events) |",
    ]
    if c is not None:
        lines.append(f"| cascade share (messages reaching the encoder) | {c['share']:.2%} "
                     f"({c['admitted']} of {c['messages']}; {c['encoded']} distinct texts embedded) |")
    lines += ["", f"Models: {', '.join(m['id'] + ' ' + m['version'] for m in result['models']) or 'none (rules only)'}"
              f"; fusion: {'learned' if result['fusion'] else 'hand-tuned weights'}; case threshold "
              f"{result['case_threshold']}.", "", "## Per kind", "",
              "| kind | label | conversations | flagged | rate |", "| --- | --- | --- | --- | --- |"]
    for kind, k in result["per_kind"].items():
        lines.append(f"| {kind} | {k['label']} | {k['conversations']} | {k['flagged']} | {k['flag_rate']:.2%} |")
    lines += ["", "## Precision-recall over the case threshold", "", "| threshold | precision | recall | FPR |",
              "| --- | --- | --- | --- |"]
    for point in result["threshold_curve"]:
        lines.append(f"| {point['threshold']} | {point['precision']:.4f} | {point['recall']:.4f} | "
                     f"{point['false_positive_rate']:.4f} |")
    lines += ["", "Plots: `precision_recall.png`, `events_to_flag.png`. The curve uses each conversation's peak "
              "risk; the headline figures count the cases the replay actually opened.", ""]
    return "\n".join(lines)


def _plots(result: dict[str, Any], evaluation: Evaluation, pr_path: Path, hist_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = result["threshold_curve"]
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=110)
    ax.plot([p["recall"] for p in curve], [p["precision"] for p in curve], marker="o", markersize=3)
    for p in curve:
        if p["threshold"] in (0.25, 0.5, 0.75, 0.9):
            ax.annotate(f"t={p['threshold']}", (p["recall"], p["precision"]), fontsize=7)
    ax.set_xlabel("recall (conversations)")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall over the case threshold")
    # zoom on the populated corner: on easy data every point sits near (1, 1)
    ax.set_xlim(max(0.0, min(p["recall"] for p in curve) - 0.05), 1.01)
    ax.set_ylim(max(0.0, min(p["precision"] for p in curve) - 0.05), 1.01)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(pr_path)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 4.0), dpi=110)
    values = evaluation.card.events_to_flag
    ax.hist(values, bins=range(1, max(values, default=1) + 2), color="#4a7bb7")
    ax.set_xlabel("events in the conversation when its case opened")
    ax.set_ylabel("grooming conversations")
    ax.set_title("Events to flag")
    fig.tight_layout()
    fig.savefig(hist_path)
    plt.close(fig)
