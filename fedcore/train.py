"""Train the VGG-16 expression classifier, calibrate it and write a run folder.

Run folder contents:
    settings.json      resolved command-line settings
    log.csv            one row per epoch (loss, accuracy, macro-F1, learning rate, images/s)
    last.pt            full training state for --resume (model, optimizer, epoch, RNG)
    best.safetensors   best weights by validation macro-F1, with best.json metadata
                       (the moving average of the weights when --ema is above 0)
    last.safetensors   the final epoch's weights, written with --keep last
    model.safetensors  the kept weights (--keep) with the fitted temperature, the checkpoint to ship

The same script runs under ``torchrun --nproc_per_node N``: each process
trains on its own shard of every epoch, DistributedDataParallel averages the
gradients, and only rank 0 evaluates and writes files.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedcore.checkpoint import ModelInfo, save_checkpoint
from fedcore.constants import CLASSES, DEFAULT_MODEL_NAME
from fedcore.datasets import FORMATS, PROTOCOLS, FaceArrays, load_split
from fedcore.errors import DatasetError, FedError
from fedcore.metrics import expected_calibration_error, fit_temperature, macro_f1, negative_log_likelihood, softmax
from fedcore.model import VGG16, build_vgg16, load_imagenet_features
from fedcore.tensors import autocast_context, normalize, predict_logits

logger = logging.getLogger(__name__)

LOG_FIELDS = (
    "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1",
    "learning_rate", "images_per_second", "epoch_seconds", "raw_val_accuracy", "raw_val_macro_f1",
)  # fmt: skip


def get_args_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the training options to ``parser`` (or a new parser) and return it."""
    if parser is None:
        parser = argparse.ArgumentParser(
            prog="python -m fedcore train", description=__doc__.split("\n")[0],
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )  # fmt: skip
    data = parser.add_argument_group("data")
    data.add_argument("--data", type=Path, required=True, help="dataset root folder")
    data.add_argument("--format", dest="data_format", choices=FORMATS, default="ferplus", help="dataset layout")
    data.add_argument(
        "--protocol", choices=PROTOCOLS, default="probability",
        help="FER+ training targets: the vote distribution or the majority class (validation always uses majority)",
    )  # fmt: skip
    data.add_argument("--limit", type=int, default=None, help="use at most this many images per split (for quick tests)")

    model = parser.add_argument_group("model")
    model.add_argument("--input-size", type=int, default=48, help="side of the square network input in pixels")
    model.add_argument("--color-mode", choices=("L", "RGB"), default="L", help="grayscale (L) or colour input")
    model.add_argument("--hidden", type=int, default=512, help="width of the two hidden fully connected layers")
    model.add_argument("--dropout", type=float, default=0.5, help="dropout before each fully connected layer")
    model.add_argument(
        "--init", type=Path, default=None,
        help="weights to start from: a FED checkpoint (.safetensors with its .json) or torchvision vgg16_bn ImageNet weights",
    )  # fmt: skip
    model.add_argument(
        "--crop-margin", type=float, default=0.05,
        help="share of the face box added on each side when the pipeline crops faces (0.05 matches FER+ crops)",
    )  # fmt: skip
    model.add_argument(
        "--no-flip-average", action="store_true",
        help="score each face alone instead of averaging its logits with its mirror image's (validation and pipeline)",
    )  # fmt: skip
    model.add_argument("--name", default=DEFAULT_MODEL_NAME, help="model name stored in the metadata")

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int, default=30, help="maximum number of epochs")
    optim.add_argument("--batch-size", type=int, default=64, help="images per step per process")
    optim.add_argument("--lr", type=float, default=0.03, help="peak learning rate (SGD, Nesterov momentum 0.9)")
    optim.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up before the cosine decay")
    optim.add_argument("--weight-decay", type=float, default=5e-4, help="L2 penalty on weights (not on biases or batch norm)")
    optim.add_argument("--label-smoothing", type=float, default=0.05, help="mass spread uniformly over all classes")
    optim.add_argument(
        "--class-weight-power", type=float, default=0.5,
        help="weight each class by (frequency)^-power to counter imbalance; 0 disables",
    )  # fmt: skip
    optim.add_argument(
        "--ema", type=float, default=0.999,
        help="decay of the moving average of the weights that is evaluated and kept; 0 keeps the raw weights",
    )  # fmt: skip
    optim.add_argument("--patience", type=int, default=8, help="stop after this many epochs without a better validation macro-F1")
    optim.add_argument("--no-augment", action="store_true", help="disable data augmentation")

    run = parser.add_argument_group("run")
    run.add_argument("--out", type=Path, default=Path("runs/ferplus-vgg16"), help="run folder")
    run.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    run.add_argument(
        "--keep", choices=("best", "last"), default="best",
        help="weights to calibrate and export: the epoch with the best validation macro-F1, or the final epoch",
    )  # fmt: skip
    run.add_argument("--export", type=Path, default=None, help="also write the calibrated model here (.safetensors)")
    run.add_argument("--half", action="store_true", help="store exported weights as float16 (half the file size)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    run.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: all cores)")
    run.add_argument("--no-mixed-precision", action="store_true", help="train in float32")
    run.add_argument("--seed", type=int, default=0, help="random seed")
    return parser


# ----------------------------------------------------------------------------
# Augmentation


def augment_batch(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Randomly flip, rotate, scale, shift, re-light and partly erase a batch of faces in [0, 1].

    All draws come from ``generator`` so a resumed run repeats them.
    """
    n, _, height, width = batch.shape

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator) * 2 - 1

    # Geometry: mirror, rotate by up to 10 degrees, scale by up to 10%, shift by up to 5%.
    angle = uniform(n) * math.radians(10)
    scale = 1 + uniform(n) * 0.1
    shift = uniform(n, 2) * 0.1
    mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos * mirror, -sin, shift[:, 0]], 1), torch.stack([sin * mirror, cos, shift[:, 1]], 1)], 1
    ).to(batch)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    batch = F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)

    # Photometry: brightness and contrast within 25%.
    brightness = (1 + uniform(n) * 0.25).view(n, 1, 1, 1).to(batch)
    contrast = (1 + uniform(n) * 0.25).view(n, 1, 1, 1).to(batch)
    mean = batch.mean(dim=(1, 2, 3), keepdim=True)
    batch = ((batch - mean) * contrast + mean) * brightness

    # Occlusion: erase a rectangle of 2-15% of the area in half the images.
    erase = torch.rand(n, generator=generator) < 0.5
    area = (0.02 + torch.rand(n, generator=generator) * 0.13) * height * width
    aspect = torch.exp(uniform(n) * math.log(2))
    box_h = (area * aspect).sqrt().clamp(1, height)
    box_w = (area / aspect).sqrt().clamp(1, width)
    top = torch.rand(n, generator=generator) * (height - box_h)
    left = torch.rand(n, generator=generator) * (width - box_w)
    rows = torch.arange(height).view(1, height, 1)
    cols = torch.arange(width).view(1, 1, width)
    inside = (
        (rows >= top.view(n, 1, 1)) & (rows < (top + box_h).view(n, 1, 1))
        & (cols >= left.view(n, 1, 1)) & (cols < (left + box_w).view(n, 1, 1))
        & erase.view(n, 1, 1)
    )  # fmt: skip
    noise = torch.rand(batch.shape, generator=generator).to(batch)
    batch = torch.where(inside.unsqueeze(1).to(batch.device), noise, batch)
    return batch.clamp_(0, 1)


# ----------------------------------------------------------------------------
# Set-up helpers


def setup_distributed() -> tuple[int, int, int]:
    """Initialise torch.distributed when launched by torchrun; return (rank, world size, local rank)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, 0
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    return dist.get_rank(), world_size, int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FedError(f"--device {name} requested but CUDA is not available; use --device cpu")
    return device


def initialise_weights(model: VGG16, path: Path) -> None:
    """Start from a FED checkpoint (weights with a .json beside them) or torchvision ImageNet weights."""
    from fedcore.checkpoint import load_checkpoint, metadata_path

    if path.suffix == ".safetensors" and metadata_path(path).is_file():
        source, source_info = load_checkpoint(path)
        if source_info.in_channels != model.in_channels or source_info.hidden != model.classifier[0].out_features:
            raise FedError(
                f"--init {path} has color_mode {source_info.color_mode} and hidden {source_info.hidden}; "
                "pass the same --color-mode and --hidden to fine-tune it"
            )
        model.load_state_dict(source.state_dict())
        logger.info("initialised all weights from FED checkpoint %s", path)
        return
    load_imagenet_features(model, path)


def class_weights(train: FaceArrays, power: float) -> torch.Tensor:
    """Per-class loss weights proportional to frequency^-power, averaging 1 over training images."""
    counts = train.targets.sum(axis=0)
    # The +1 keeps a class that is absent from the training set finite.
    weights = (counts + 1.0) ** (-power)
    weights *= counts.sum() / (counts * weights).sum()
    return torch.tensor(weights, dtype=torch.float32)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for parameter in model.parameters():
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def learning_rate(step: int, total_steps: int, warmup_steps: int, peak: float) -> float:
    """Linear warm-up to ``peak``, then cosine decay to 1% of it."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class WeightAverage:
    """Exponential moving average of a model's weights and batch-norm statistics.

    The average over the last few thousand steps usually classifies better
    than the weights of any single step. On FER+ at a learning rate of 0.008
    its validation accuracy was about 3 points higher than the raw weights'.
    Until it has seen 1 / (1 - decay) updates it is the plain mean of all
    weights so far, so the starting weights do not dominate it for thousands
    of steps.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise FedError(f"invalid --ema {decay}: expected a decay between 0 and 1 (exclusive), or 0 for no average")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, self.updates / (self.updates + 1))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        self.updates += 1
        source = model.state_dict()
        for name, value in self.model.state_dict().items():
            if value.is_floating_point():
                value.lerp_(source[name], 1.0 - decay)
            else:
                # Batch norm's step counter is copied, not averaged.
                value.copy_(source[name])

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.model.load_state_dict(saved["model"])
        self.updates = int(saved["updates"])


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against target distributions, each sample weighted by its target's class weights."""
    per_sample = -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1)
    sample_weights = targets @ weights
    return (per_sample * sample_weights).sum() / sample_weights.sum()


def evaluate_split(
    model: nn.Module, split: FaceArrays, info: ModelInfo, device: torch.device, mixed_precision: bool
) -> tuple[np.ndarray, dict[str, float]]:
    """Return logits and loss, accuracy and macro-F1 over the images that have a majority label."""
    logits = predict_logits(
        model, split.images, mean=info.mean, std=info.std, device=device, mixed_precision=mixed_precision,
        flip_average=info.flip_average,
    )  # fmt: skip
    labelled = split.labels >= 0
    labels = split.labels[labelled]
    predictions = logits[labelled].argmax(axis=1)
    return logits, {
        "loss": negative_log_likelihood(logits[labelled], labels, 1.0),
        "accuracy": float((predictions == labels).mean()),
        "macro_f1": macro_f1(labels, predictions),
    }


# ----------------------------------------------------------------------------
# Training


def train(args: argparse.Namespace) -> Path | None:
    """Run training as ``args`` describes; return the calibrated model's path (None on ranks other than 0)."""
    rank, world_size, local_rank = setup_distributed()
    is_main = rank == 0
    device = resolve_device(args.device, local_rank)
    if args.threads:
        torch.set_num_threads(args.threads)
    # Subnormal floats make CPU kernels many times slower once weights and
    # gradients get small; flushing them to zero does not change results measurably.
    torch.set_flush_denormal(True)
    mixed_precision = not args.no_mixed_precision
    out: Path = args.out
    last_path = out / "last.pt"
    if args.resume and not last_path.is_file():
        raise FedError(f"--resume given but {last_path} does not exist; start without --resume")
    if not args.resume and last_path.is_file():
        raise FedError(f"{out} already contains a run; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)

    # Data: the whole split lives in memory as uint8 (FER+ train is 62 MB).
    reading = None

    def show_reading(done: int, total: int) -> None:
        nonlocal reading
        if reading is None:
            reading = _progress_bar(total, "reading training images", enabled=is_main, unit="image")
        reading.update(done - reading.n)

    train_set = load_split(
        args.data, "train", data_format=args.data_format, protocol=args.protocol,
        image_size=args.input_size, color_mode=args.color_mode, limit=args.limit, progress=show_reading,
    )  # fmt: skip
    if reading is not None:
        reading.close()
    val_set = load_split(
        args.data, "valid", data_format=args.data_format, protocol="majority",
        image_size=args.input_size, color_mode=args.color_mode, limit=args.limit,
    )  # fmt: skip
    if (val_set.labels >= 0).sum() == 0:
        raise DatasetError(f"validation split of {args.data} has no labelled images")
    logger.info("train: %s, class counts %s", train_set.description, train_set.class_counts().tolist())
    logger.info("valid: %s, class counts %s", val_set.description, val_set.class_counts().tolist())

    # Normalisation statistics come from the training images and travel with the weights.
    pixels = train_set.images.reshape(len(train_set), -1, 1 if args.color_mode == "L" else 3) / 255.0
    info = ModelInfo(
        name=args.name,
        version=time.strftime("%Y.%m.%d"),
        input_size=args.input_size,
        color_mode=args.color_mode,
        mean=tuple(round(float(v), 4) for v in pixels.mean(axis=(0, 1))),
        std=tuple(round(float(v), 4) for v in pixels.std(axis=(0, 1))),
        crop_margin=args.crop_margin,
        hidden=args.hidden,
        flip_average=not args.no_flip_average,
        training_data=f"{train_set.description}; validation {val_set.description}",
    )
    del pixels

    model = build_vgg16(in_channels=info.in_channels, hidden=args.hidden, dropout=args.dropout)
    if args.init is not None and not args.resume:
        initialise_weights(model, args.init)
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        parameter_groups(model, args.weight_decay), lr=args.lr, momentum=0.9, nesterov=True
    )
    weights = class_weights(train_set, args.class_weight_power).to(device)
    weight_text = ", ".join(f"{name} {weight:.2f}" for name, weight in zip(CLASSES, weights.tolist()))
    logger.info("class weights: %s", weight_text)

    # Only rank 0 keeps the average. Its first update replaces the initial weights.
    average = WeightAverage(model, args.ema) if args.ema != 0 and is_main else None

    state = {"epoch": 0, "best_f1": -1.0, "best_epoch": 0, "stale_epochs": 0}
    if args.resume:
        saved = torch.load(last_path, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if average is not None:
            if "average" not in saved:
                raise FedError(f"{last_path} was trained without a weight average; resume it with --ema 0")
            average.load_state_dict(saved["average"])
        state = saved["state"]
        info = ModelInfo.from_json(saved["info"], source=str(last_path))
        torch.set_rng_state(saved["rng"]["torch"])
        np.random.set_state(saved["rng"]["numpy"])
        random.setstate(saved["rng"]["python"])
        logger.info("resumed %s after epoch %d (best macro-F1 %.4f)", out, state["epoch"], state["best_f1"])
    elif is_main:
        # The command-line dispatcher adds its handler function to args; only settings are stored.
        settings = {
            key: str(value) if isinstance(value, Path) else value
            for key, value in vars(args).items()
            if not callable(value)
        }
        (out / "settings.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")

    wrapped: nn.Module = model
    if world_size > 1:
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    steps_per_epoch = math.ceil(len(train_set) / world_size / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    warmup_steps = max(1, int(args.warmup_epochs * steps_per_epoch))
    all_images = torch.from_numpy(train_set.images)
    all_targets = torch.from_numpy(train_set.targets)
    uniform = torch.full((len(CLASSES),), 1.0 / len(CLASSES))

    for epoch in range(state["epoch"] + 1, args.epochs + 1):
        if state["stale_epochs"] >= args.patience:
            logger.info("early stop: no better validation macro-F1 for %d epochs", args.patience)
            break
        # The epoch's order and augmentation come from (seed, epoch), so a resumed run repeats them.
        generator = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        order = torch.randperm(len(train_set), generator=generator)
        # Equal shards give every process the same number of steps, so no gradient sync waits for a missing peer.
        order = order[: len(order) - len(order) % world_size][rank::world_size]
        wrapped.train()
        started = time.perf_counter()
        seen = correct = 0
        loss_sum = 0.0
        progress = _progress_bar(steps_per_epoch, f"epoch {epoch}/{args.epochs}", enabled=is_main)
        for step_in_epoch, start in enumerate(range(0, len(order), args.batch_size)):
            index = order[start : start + args.batch_size]
            step = (epoch - 1) * steps_per_epoch + step_in_epoch
            lr = learning_rate(step, total_steps, warmup_steps, args.lr)
            for group in optimizer.param_groups:
                group["lr"] = lr

            images = all_images[index].float().div_(255.0)
            images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
            if not args.no_augment:
                images = augment_batch(images, generator)
            inputs = normalize(images, info.mean, info.std).to(device).contiguous(memory_format=torch.channels_last)
            targets = all_targets[index]
            targets = (1 - args.label_smoothing) * targets + args.label_smoothing * uniform
            targets = targets.to(device)

            with autocast_context(device, mixed_precision):
                logits = wrapped(inputs)
            loss = soft_cross_entropy(logits, targets, weights)
            if not torch.isfinite(loss):
                raise FedError(f"training loss became {loss.item()} at epoch {epoch}, step {step_in_epoch}; lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if average is not None:
                average.update(model)

            batch_size = len(index)
            seen += batch_size
            loss_sum += loss.item() * batch_size
            correct += int((logits.argmax(1) == targets.argmax(1)).sum())
            progress.update(1)
            progress.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", lr=f"{lr:.4f}", refresh=False)
        progress.close()
        train_seconds = time.perf_counter() - started

        if world_size > 1:
            torch.distributed.barrier()
        if is_main:
            scored_model = model if average is None else average.model
            _, val = evaluate_split(scored_model, val_set, info, device, mixed_precision)
            raw = evaluate_split(model, val_set, info, device, mixed_precision)[1] if average is not None else {}
            row = {
                "epoch": epoch,
                "train_loss": round(loss_sum / max(seen, 1), 5),
                "train_accuracy": round(correct / max(seen, 1), 5),
                "val_loss": round(val["loss"], 5),
                "val_accuracy": round(val["accuracy"], 5),
                "val_macro_f1": round(val["macro_f1"], 5),
                "learning_rate": round(lr, 6),
                "images_per_second": round(seen * world_size / train_seconds, 1),
                "epoch_seconds": round(time.perf_counter() - started, 1),
                "raw_val_accuracy": round(raw["accuracy"], 5) if raw else "",
                "raw_val_macro_f1": round(raw["macro_f1"], 5) if raw else "",
            }
            _append_log(out / "log.csv", row)
            improved = val["macro_f1"] > state["best_f1"]
            if improved:
                state.update(best_f1=val["macro_f1"], best_epoch=epoch, stale_epochs=0)
                best_info = replace(info, metrics={"validation": {**val, "epoch": epoch}})
                save_checkpoint(scored_model, best_info, out / "best.safetensors")
            else:
                state["stale_epochs"] += 1
            state["epoch"] = epoch
            _save_state(last_path, model, optimizer, state, info, average)
            logger.info(
                "epoch %d: train loss %.4f acc %.4f | val loss %.4f acc %.4f macro-F1 %.4f%s | %.0f images/s",
                epoch, row["train_loss"], row["train_accuracy"], val["loss"], val["accuracy"],
                val["macro_f1"], " (best)" if improved else "", row["images_per_second"],
            )  # fmt: skip
            if raw:
                logger.info("epoch %d: raw weights val acc %.4f macro-F1 %.4f", epoch, raw["accuracy"], raw["macro_f1"])
        if world_size > 1:
            # Every rank needs the same early-stopping counter.
            counter = torch.tensor([state["stale_epochs"], state["epoch"]], device=device)
            torch.distributed.broadcast(counter, src=0)
            state["stale_epochs"], state["epoch"] = int(counter[0]), int(counter[1])

    final = out / "model.safetensors"
    if is_main:
        # Calibrate in float32, the precision the pipeline classifies in.
        source = out / "best.safetensors"
        if args.keep == "last":
            source = out / "last.safetensors"
            last_info = replace(info, metrics={"validation": _logged_validation(out / "log.csv", state["epoch"])})
            save_checkpoint(model if average is None else average.model, last_info, source)
        final = calibrate_run(out, val_set, device=device, mixed_precision=False, half=args.half, source=source)
        if args.export is not None:
            from fedcore.checkpoint import load_checkpoint

            calibrated, calibrated_info = load_checkpoint(final)
            save_checkpoint(calibrated, calibrated_info, args.export, half=args.half)
            logger.info("exported %s", args.export)
    if world_size > 1:
        torch.distributed.destroy_process_group()
    return final if is_main else None


def calibrate_run(
    out: Path, val_set: FaceArrays, *, device: torch.device, mixed_precision: bool, half: bool = False,
    source: Path | None = None,
) -> Path:
    """Fit a temperature for ``source`` on ``val_set`` and write model.safetensors.

    ``source`` defaults to the run's best weights.
    """
    from fedcore.checkpoint import load_checkpoint

    model, info = load_checkpoint(source or out / "best.safetensors")
    model = model.to(device).to(memory_format=torch.channels_last)
    logits = predict_logits(
        model, val_set.images, mean=info.mean, std=info.std, device=device, mixed_precision=mixed_precision,
        flip_average=info.flip_average,
    )  # fmt: skip
    labelled = val_set.labels >= 0
    logits, labels = logits[labelled], val_set.labels[labelled]
    temperature = fit_temperature(logits, labels)
    ece_before = expected_calibration_error(softmax(logits), labels)
    ece_after = expected_calibration_error(softmax(logits, temperature), labels)
    calibration = {
        "split": "validation",
        "temperature": round(temperature, 4),
        "ece_before": round(ece_before, 4),
        "ece_after": round(ece_after, 4),
    }
    logger.info("calibration: temperature %.3f, validation ECE %.4f -> %.4f", temperature, ece_before, ece_after)
    metrics = {**info.metrics, "calibration": calibration}
    path = save_checkpoint(model.cpu(), replace(info, temperature=round(temperature, 4), metrics=metrics), out / "model.safetensors", half=half)
    return path


def _progress_bar(total: int, description: str, *, enabled: bool, unit: str = "step"):
    from tqdm import tqdm

    # A log file gets a line every 30 s instead of constant redraws.
    interactive = sys.stderr.isatty()
    return tqdm(
        total=total, desc=description, disable=not enabled, unit=unit,
        mininterval=0.5 if interactive else 30.0, dynamic_ncols=interactive, file=sys.stderr,
    )  # fmt: skip


def _logged_validation(path: Path, epoch: int) -> dict[str, float | int]:
    """Return the validation loss, accuracy and macro-F1 that the run log records for ``epoch``."""
    with path.open(newline="", encoding="utf-8") as handle:
        row = next(row for row in csv.DictReader(handle) if int(row["epoch"]) == epoch)
    return {
        "loss": float(row["val_loss"]),
        "accuracy": float(row["val_accuracy"]),
        "macro_f1": float(row["val_macro_f1"]),
        "epoch": epoch,
    }


def _append_log(path: Path, row: dict[str, Any]) -> None:
    new_file = not path.is_file()
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
        if new_file:
            writer.writeheader()
        writer.writerow(row)


def _save_state(
    path: Path, model: VGG16, optimizer: torch.optim.Optimizer, state: dict, info: ModelInfo,
    average: WeightAverage | None,
) -> None:  # fmt: skip
    """Write the resumable training state atomically, so a kill mid-write keeps the previous one."""
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "state": dict(state),
        "info": info.to_json(),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
    }
    if average is not None:
        payload["average"] = average.state_dict()
    tmp = path.with_suffix(".pt.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    try:
        path = train(args)
    except FedError as exc:
        logger.error("%s", exc)
        return 1
    if path is not None:
        logger.info("calibrated model written to %s", path)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main())
