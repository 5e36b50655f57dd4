"""Segmentation task: Dice as LiTS reports it, masks aligned with their CT, and a
UNet that learns the liver."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from oncofed.common.config import DataConfig, ModelConfig
from oncofed.common.data.site import load_site
from oncofed.common.ml.models import build_model
from oncofed.common.ml.models.segmentation import dice_counts, dice_metrics
from oncofed.common.ml.training import predict_detailed, task_metrics, train_local


def test_dice_per_case_and_global():
    truth = torch.zeros(2, 4, 4, 4, dtype=torch.long)
    truth[0, :2] = 1  # case 0: liver only (32 voxels)
    truth[1, :2] = 1
    truth[1, 0, 0] = 2  # case 1: liver with 4 tumour voxels
    pred = truth.clone()
    pred[1, 0, 0] = 1  # tumour missed, called liver
    m = dice_metrics(dice_counts(pred, truth))
    assert m["dice-liver"] == pytest.approx(1.0)
    assert m["dice-tumour"] == pytest.approx(0.0)  # only case 1 has tumour
    assert m["dice-tumour-global"] == pytest.approx(0.0)
    pred[0, 2] = 1  # case 0: 16 false-positive liver voxels
    m = dice_metrics(dice_counts(pred, truth))
    assert m["dice-liver"] == pytest.approx((2 * 32 / (48 + 32) + 1.0) / 2)
    assert m["dice-liver-global"] == pytest.approx(2 * 64 / (80 + 64))


def test_masks_follow_their_ct(small_dataset):
    data = load_site(small_dataset.site_dir(0), DataConfig(), masks=True)
    s = data.split("train")[0]
    assert s["mask"].shape == s["ct"].shape and s["mask_present"] == 1.0
    liver = s["mask"] > 0
    # liver voxels are brighter than air in the windowed CT (same grid)
    assert s["ct"][liver].mean() > s["ct"][~liver].mean()


def test_unet_learns_the_liver(small_dataset):
    torch.manual_seed(0)
    cfg_data = DataConfig(image_size=32, image_depth=8)
    data = load_site(small_dataset.site_dir(0), cfg_data, masks=True)
    cfg = dataclasses.replace(ModelConfig(), task="segmentation", modalities="ct")
    model = build_model(cfg, 8)
    from oncofed.common.config import TrainConfig

    train = dataclasses.replace(TrainConfig(), learning_rate=0.01, batch_size=8)
    before = task_metrics(
        "segmentation", predict_detailed(model, data.split("test"), "cpu", 8)
    )
    train_local(model, data.split("train"), train, torch.device("cpu"), 0, epochs=8)
    after = task_metrics(
        "segmentation", predict_detailed(model, data.split("test"), "cpu", 8)
    )
    assert after["dice-liver"] > max(0.6, before["dice-liver"] + 0.2), (before, after)
    # the global tumour Dice is that of the summed voxel counts: the reference
    # label maps score 1, an all-background prediction 0
    from oncofed.common.ml.models.segmentation import dice_counts, dice_metrics

    truth = torch.stack([s["mask"][0] for s in data.split("test")]).long()
    assert dice_metrics(dice_counts(truth, truth))["dice-tumour-global"] == 1.0
    empty = torch.zeros_like(truth)
    assert dice_metrics(dice_counts(empty, truth))["dice-tumour-global"] == 0.0
