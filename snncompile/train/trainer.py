"""Training and float evaluation of zoo models (AdamW, cosine schedule, label smoothing, TET)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data import load_dataset
from ..nn.backbones import build_model
from ..zoo.checkpoint import save_checkpoint
from ..config import TrainConfig, ZooEntry


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    metrics: dict


def tet_loss(per_step_logits: torch.Tensor, target: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """TET: ``(1-λ) mean_t CE(O[t], y) + λ MSE(O, φ)`` on ``[T, B, C]`` logits (models.md §3.9)."""
    ce = torch.stack([F.cross_entropy(o, target, label_smoothing=cfg.label_smoothing)
                      for o in per_step_logits]).mean()
    mse = F.mse_loss(per_step_logits, torch.full_like(per_step_logits, cfg.tet_means))
    return (1 - cfg.tet_lambda) * ce + cfg.tet_lambda * mse


def _progress(show: bool = True) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("{task.fields[status]}"), disable=not show)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 128) -> float:
    """Top-1 accuracy of the float model (logits averaged over T)."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size)
    correct = 0
    for x, y in loader:
        correct += (model.predict_logits(x).argmax(1) == y).sum().item()
    return correct / len(dataset)


def train(entry: ZooEntry, out: Path, *, epochs: int | None = None, show_progress: bool = True) -> TrainResult:
    """Train ``entry``'s model on its dataset and save the checkpoint (metrics embedded and in ``<out>.json``)."""
    recipe = entry.train
    epochs = epochs or recipe.epochs
    torch.manual_seed(recipe.seed)
    model = build_model(entry.model)
    train_set = load_dataset(entry.data, entry.model, "train")
    test_set = load_dataset(entry.data, entry.model, "test")
    loader = DataLoader(train_set, batch_size=recipe.batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(recipe.seed))
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=epochs * len(loader),
                                                pct_start=0.1)
    start = time.time()
    with _progress(show_progress) as progress:
        task = progress.add_task(f"train {entry.name}", total=epochs, status="")
        for epoch in range(epochs):
            model.train()
            seen = correct = 0
            for x, y in loader:
                out_logits = model(x)
                if entry.model.tet:
                    loss = tet_loss(out_logits, y, recipe)
                    out_logits = out_logits.mean(0)
                else:
                    loss = F.cross_entropy(out_logits, y, label_smoothing=recipe.label_smoothing)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                seen += len(y)
                correct += (out_logits.argmax(1) == y).sum().item()
            progress.update(task, advance=1, status=f"epoch {epoch + 1} loss {loss.item():.3f} "
                                                    f"train acc {correct / seen:.3f}")
        test_acc = evaluate(model, test_set)
    metrics = {"dataset": entry.data.dataset, "test_accuracy": test_acc, "train_accuracy": correct / seen,
               "test_samples": len(test_set), "epochs": epochs, "train_seconds": round(time.time() - start, 1),
               "seed": recipe.seed}
    out = Path(out)
    save_checkpoint(out, model, name=entry.name, metrics=metrics)
    out.with_suffix(".json").write_text(json.dumps({"model": entry.name, **metrics}, indent=2) + "\n")
    return TrainResult(out, metrics)
