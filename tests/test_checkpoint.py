"""Tests for fedcore.checkpoint: save/load round trips, metadata validation and rejected files."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from fedcore.checkpoint import ModelInfo, load_checkpoint, metadata_path, read_metadata, save_checkpoint
from fedcore.constants import CLASSES, DEFAULT_CHECKPOINT
from fedcore.errors import CheckpointError
from fedcore.model import build_vgg16

MAX_CHECKPOINT_BYTES = 60 * 1024 * 1024
SMALL_HIDDEN = 16


def make_info(**changes: object) -> ModelInfo:
    return replace(ModelInfo(name="test-model", version="1.0", hidden=SMALL_HIDDEN), **changes)


def perturb_batch_norm(model: torch.nn.Module) -> None:
    """Give batch norm buffers non-default values so that a lost buffer changes the output."""
    generator = torch.Generator().manual_seed(3)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """A small-head model in eval mode and its float32 checkpoint, written once for this module."""
    torch.manual_seed(0)
    model = build_vgg16(hidden=SMALL_HIDDEN)
    perturb_batch_norm(model)
    model.eval()
    path = save_checkpoint(model, make_info(), tmp_path_factory.mktemp("ckpt") / "model.safetensors")
    return model, path


@pytest.fixture
def copy_of_saved(saved: tuple[torch.nn.Module, Path], tmp_path: Path) -> Path:
    """A private copy of the saved checkpoint that a test may damage."""
    _, source = saved
    target = tmp_path / "copy.safetensors"
    shutil.copyfile(source, target)
    shutil.copyfile(metadata_path(source), metadata_path(target))
    return target


def edit_metadata(path: Path, **changes: object) -> None:
    meta = metadata_path(path)
    data = json.loads(meta.read_text(encoding="utf-8"))
    data.update(changes)
    meta.write_text(json.dumps(data), encoding="utf-8")


def edit_weights(path: Path, edit) -> None:
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path))


def sample_input() -> torch.Tensor:
    return torch.rand(3, 1, 48, 48, generator=torch.Generator().manual_seed(5))


# Round trips


def test_round_trip_float32_outputs(saved: tuple[torch.nn.Module, Path]) -> None:
    model, path = saved
    loaded, _ = load_checkpoint(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(sample_input()), model(sample_input()), rtol=0, atol=1e-6)


def test_round_trip_eval_mode(saved: tuple[torch.nn.Module, Path]) -> None:
    loaded, _ = load_checkpoint(saved[1])
    assert not loaded.training


def test_round_trip_metadata_fields(saved: tuple[torch.nn.Module, Path]) -> None:
    _, info = load_checkpoint(saved[1])
    assert info == make_info()
    assert info.classes == CLASSES
    assert info.in_channels == 1


def test_round_trip_flip_average(saved: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    model, _ = saved
    path = save_checkpoint(model, make_info(flip_average=True), tmp_path / "flip.safetensors")
    assert read_metadata(path).flip_average is True


def test_round_trip_half_outputs(saved: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    model, _ = saved
    path = save_checkpoint(model, make_info(), tmp_path / "half.safetensors", half=True)
    loaded, _ = load_checkpoint(path)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    with torch.no_grad():
        expected = model(sample_input())
        torch.testing.assert_close(loaded(sample_input()), expected, rtol=0.02, atol=0.02 * expected.abs().max().item())


def test_half_file_about_half_size(saved: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    model, full_path = saved
    half_path = save_checkpoint(model, make_info(), tmp_path / "half.safetensors", half=True)
    ratio = half_path.stat().st_size / full_path.stat().st_size
    assert half_path.stat().st_size < MAX_CHECKPOINT_BYTES
    assert 0.49 < ratio < 0.51


def test_default_head_half_under_limit(tmp_path: Path) -> None:
    model = build_vgg16()
    path = save_checkpoint(model, replace(make_info(), hidden=512), tmp_path / "full.safetensors", half=True)
    assert path.stat().st_size < MAX_CHECKPOINT_BYTES


def test_save_leaves_no_temporary_files(saved: tuple[torch.nn.Module, Path]) -> None:
    _, path = saved
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.json", "model.safetensors"]


def test_save_rejects_invalid_info(saved: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    model, _ = saved
    with pytest.raises(CheckpointError, match="temperature must be positive"):
        save_checkpoint(model, make_info(temperature=0.0), tmp_path / "bad.safetensors")
    assert not (tmp_path / "bad.safetensors").exists()


# Rejected metadata


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="model weights not found: .*absent.safetensors"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_missing_metadata_json(copy_of_saved: Path) -> None:
    metadata_path(copy_of_saved).unlink()
    with pytest.raises(CheckpointError, match=r"metadata not found: .*copy\.json \(it must sit beside"):
        load_checkpoint(copy_of_saved)


def test_invalid_metadata_json(copy_of_saved: Path) -> None:
    metadata_path(copy_of_saved).write_text("{not json", encoding="utf-8")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        load_checkpoint(copy_of_saved)


def test_metadata_not_an_object(copy_of_saved: Path) -> None:
    metadata_path(copy_of_saved).write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(CheckpointError, match="must be a JSON object"):
        read_metadata(copy_of_saved)


def test_metadata_missing_fields(copy_of_saved: Path) -> None:
    metadata_path(copy_of_saved).write_text(json.dumps({"name": "x", "version": "1"}), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"missing metadata fields \['classes', 'color_mode'"):
        read_metadata(copy_of_saved)


def test_wrong_classes_order(copy_of_saved: Path) -> None:
    edit_metadata(copy_of_saved, classes=["happy", "neutral", *CLASSES[2:]])
    with pytest.raises(CheckpointError, match="differ from the required order"):
        load_checkpoint(copy_of_saved)


def test_unknown_architecture(copy_of_saved: Path) -> None:
    edit_metadata(copy_of_saved, architecture="resnet18")
    with pytest.raises(CheckpointError, match="architecture 'resnet18' is not supported; expected 'vgg16_bn'"):
        load_checkpoint(copy_of_saved)


def test_mean_std_length_mismatch(copy_of_saved: Path) -> None:
    edit_metadata(copy_of_saved, mean=[0.5, 0.5, 0.5])
    with pytest.raises(CheckpointError, match="mean and std need 1 values for color_mode 'L'"):
        load_checkpoint(copy_of_saved)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"color_mode": "CMYK"}, "color_mode 'CMYK' must be one of"),
        ({"std": [0.0]}, "std values must be positive"),
        ({"input_size": 8}, "input_size 8 is outside 16..512"),
        ({"temperature": -1.0}, "temperature must be positive"),
        ({"crop_margin": 1.5}, "crop_margin 1.5 is outside 0..1"),
        ({"hidden": "512"}, "hidden must be a positive integer, got '512'"),
        ({"mean": 0.5}, r"a metadata field has the wrong type \('float' object is not iterable\)"),
        ({"input_size": "48"}, "a metadata field has the wrong type"),
        ({"flip_average": "yes"}, "flip_average must be true or false, got 'yes'"),
    ],
)
def test_invalid_metadata_values(copy_of_saved: Path, changes: dict, message: str) -> None:
    edit_metadata(copy_of_saved, **changes)
    with pytest.raises(CheckpointError, match=message):
        read_metadata(copy_of_saved)


def test_missing_flip_average_is_false(copy_of_saved: Path) -> None:
    # Checkpoints written before the field existed were calibrated on single images.
    meta = metadata_path(copy_of_saved)
    data = json.loads(meta.read_text(encoding="utf-8"))
    del data["flip_average"]
    meta.write_text(json.dumps(data), encoding="utf-8")
    assert read_metadata(copy_of_saved).flip_average is False


# Rejected weights


def test_corrupt_weights_file(copy_of_saved: Path) -> None:
    copy_of_saved.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="cannot be read as safetensors"):
        load_checkpoint(copy_of_saved)


def test_missing_tensor(copy_of_saved: Path) -> None:
    edit_weights(copy_of_saved, lambda state: state.pop("classifier.6.bias"))
    with pytest.raises(CheckpointError, match=r"missing \['classifier.6.bias'\], unexpected \[\]"):
        load_checkpoint(copy_of_saved)


def test_unexpected_tensor(copy_of_saved: Path) -> None:
    edit_weights(copy_of_saved, lambda state: state.update({"extra.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"missing \[\], unexpected \['extra.weight'\]"):
        load_checkpoint(copy_of_saved)


def test_shape_mismatch_hidden(copy_of_saved: Path) -> None:
    edit_metadata(copy_of_saved, hidden=32)
    with pytest.raises(CheckpointError, match=r"tensor classifier\.0\.(weight|bias) has shape \(16\b.*expected \(32\b"):
        load_checkpoint(copy_of_saved)


def test_nan_tensor_rejected(copy_of_saved: Path) -> None:
    def poison(state: dict[str, torch.Tensor]) -> None:
        state["features.0.weight"][0, 0, 0, 0] = float("nan")

    edit_weights(copy_of_saved, poison)
    with pytest.raises(CheckpointError, match="tensor features.0.weight contains NaN or infinity"):
        load_checkpoint(copy_of_saved)


# The shipped checkpoint


@pytest.fixture(scope="module")
def shipped() -> Path:
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip(f"shipped checkpoint {DEFAULT_CHECKPOINT} is absent (train one with python -m fedcore train)")
    return DEFAULT_CHECKPOINT


def test_shipped_checkpoint_under_limit(shipped: Path) -> None:
    assert shipped.stat().st_size < MAX_CHECKPOINT_BYTES


def test_shipped_metadata_validates(shipped: Path) -> None:
    info = read_metadata(shipped)
    assert info.classes == CLASSES
    assert info.temperature > 0
    assert info.input_size == 48
    assert info.flip_average is True


def test_shipped_checkpoint_loads(shipped: Path) -> None:
    model, info = load_checkpoint(shipped)
    size = info.input_size
    with torch.no_grad():
        logits = model(torch.rand(2, info.in_channels, size, size))
    assert logits.shape == (2, len(CLASSES))
    assert torch.isfinite(logits).all()
