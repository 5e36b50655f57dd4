"""Every registry entry: shapes, no NaN, one step lowers the loss, missing inputs."""

import dataclasses

import pytest
import torch

from oncofed.common.config import ModelConfig
from oncofed.common.data.clinical import NUM_FEATURES
from oncofed.common.errors import ConfigError
from oncofed.common.ml.models import ENCODERS, FUSIONS, build_model
from oncofed.common.ml.models.encoders import INPUT_KIND
from oncofed.common.registry import Registry

IMAGE = [n for n in ENCODERS.names() if INPUT_KIND[n] == "volume"]
GENES = 10


def _batch(n=4, size=32, depth=8, ct_present=1.0, clin_present=1.0, other=1.0):
    g = torch.Generator().manual_seed(0)
    return {
        "ct": torch.rand(n, 1, size, size, depth, generator=g),
        "ct_present": torch.full((n,), ct_present),
        "clinical": torch.randn(n, NUM_FEATURES, generator=g),
        "clinical_present": torch.full((n,), clin_present),
        "genomics": torch.randn(n, GENES, generator=g),
        "genomics_present": torch.full((n,), other),
        "histology": torch.randint(0, 256, (n, 3, 3, 32, 32), generator=g).to(
            torch.uint8
        ),
        "histology_present": torch.full((n,), other),
        "label": torch.tensor([0.0, 1.0] * (n // 2)),
    }


@pytest.mark.parametrize("encoder", IMAGE)
@pytest.mark.parametrize("fusion", FUSIONS.names())
def test_model_shapes_and_one_step(encoder, fusion):
    torch.manual_seed(0)
    cfg = ModelConfig(image_encoder=encoder, fusion=fusion, embed_dim=16)
    model = build_model(cfg, image_depth=8)
    batch = _batch()
    logits = model(batch)
    assert logits.shape == (4,)
    assert torch.isfinite(logits).all()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    # eval mode throughout: the same function before and after the step (no
    # dropout, no BatchNorm running-statistics update)
    model.eval()
    opt.zero_grad()
    before = loss_fn(model(batch), batch["label"])
    before.backward()
    # as the training loop does (max-grad-norm): a deep trunk's first gradient
    # (ResNet-50 on every slice) is large enough to overshoot at this step size
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    assert loss_fn(model(batch), batch["label"]) < before


@pytest.mark.parametrize("encoder", ENCODERS.names())
def test_encoders_answer_the_interface(encoder):
    enc = ENCODERS.create(encoder, embed_dim=12, in_slices=8, in_features=NUM_FEATURES)
    key = {"volume": "ct", "vector": "clinical", "bag": "histology"}[
        INPUT_KIND[encoder]
    ]
    x = _batch()[key]
    out = enc.forward_features(x)
    assert out.shape == (4, 12) and torch.isfinite(out).all()
    assert enc.embed_dim == 12
    # one optimiser step on a tiny batch lowers a loss on the embedding
    head = torch.nn.Linear(12, 1)
    y = torch.tensor([0.0, 1.0, 0.0, 1.0])
    params = [*enc.parameters(), *head.parameters()]
    opt = torch.optim.SGD(params, lr=1e-3)
    enc.eval()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    before = loss_fn(head(enc.forward_features(x)).squeeze(1), y)
    before.backward()
    opt.step()
    after = loss_fn(head(enc.forward_features(x)).squeeze(1), y)
    assert after < before


def test_four_modality_model_with_missing_ones():
    cfg = dataclasses.replace(
        ModelConfig(embed_dim=16), modalities="ct,clinical,genomics,histology"
    )
    model = build_model(cfg, 8, {"clinical": NUM_FEATURES, "genomics": GENES})
    assert set(model.encoders) == {"ct", "clinical", "genomics", "histology"}
    for other in (1.0, 0.0):
        out = model(_batch(other=other))
        assert out.shape == (4,) and torch.isfinite(out).all()
    with pytest.raises(ConfigError, match="no genomic features"):
        build_model(cfg, 8, {"clinical": NUM_FEATURES, "genomics": 0})


@pytest.mark.parametrize("present", [(0.0, 1.0), (1.0, 0.0)])
def test_missing_modality_uses_learned_embedding(present):
    model = build_model(ModelConfig(embed_dim=16), image_depth=8)
    batch = _batch(ct_present=present[0], clin_present=present[1])
    batch["ct"] = (
        torch.full_like(batch["ct"], float("nan")) if not present[0] else batch["ct"]
    )
    out = model(batch)
    assert torch.isfinite(out).all()


def test_single_modality_models():
    for mods in ("ct", "clinical"):
        model = build_model(
            dataclasses.replace(ModelConfig(embed_dim=8), modalities=mods), 8
        )
        assert model(_batch()).shape == (4,)


def test_unknown_names_suggest_the_closest():
    with pytest.raises(ConfigError, match="Did you mean 'tiny3d'"):
        build_model(ModelConfig(image_encoder="tiny3"))
    with pytest.raises(ConfigError, match="Options: concat"):
        build_model(ModelConfig(fusion="transformer-xyz"))


def test_registering_twice_is_an_error():
    reg: Registry[object] = Registry("thing")
    reg.register("a")(object)
    with pytest.raises(ValueError, match="twice"):
        reg.register("a")(object)


def test_pretrained_must_be_a_local_file(tmp_path):
    with pytest.raises(ConfigError, match="never.*downloads"):
        build_model(ModelConfig(pretrained=str(tmp_path / "none.pt")))
    enc = ENCODERS.create("tiny3d", embed_dim=64)
    torch.save(enc.state_dict(), tmp_path / "w.pt")
    model = build_model(ModelConfig(pretrained=str(tmp_path / "w.pt")))
    for k, v in enc.state_dict().items():
        assert torch.equal(model.encoders["ct"].state_dict()[k], v)


@pytest.mark.parametrize("fusion", ["transformer", "late_mean", "late_stacked"])
def test_fusion_weights_are_per_sample_and_skip_absent_modalities(fusion):
    cfg = dataclasses.replace(
        ModelConfig(embed_dim=16, fusion=fusion), modalities="ct,clinical,genomics"
    )
    model = build_model(cfg, 8, {"clinical": NUM_FEATURES, "genomics": GENES})
    model.eval()
    batch = _batch()
    batch["genomics_present"] = torch.tensor([1.0, 0.0, 1.0, 0.0])
    model(batch)
    w = model.modality_weights()
    assert w is not None and w.shape == (4, 3)
    assert torch.allclose(w.sum(1), torch.ones(4), atol=1e-5)
    assert (w[[1, 3], 2] < 1e-4).all()  # genomics absent: no weight
    assert (w[[0, 2], 2] > 0).all()


def test_concat_fusion_has_no_weights():
    model = build_model(ModelConfig(embed_dim=16), 8)
    model(_batch())
    assert model.modality_weights() is None


def test_contrastive_alignment_loss_trains_the_projections():
    torch.manual_seed(0)
    cfg = dataclasses.replace(
        ModelConfig(embed_dim=16), contrastive_weight=1.0, modality_dropout=0.0
    )
    model = build_model(cfg, 8)
    batch = _batch(n=6)
    emb, present = model.embed(batch)
    before = model.alignment_loss(emb, present)
    assert torch.isfinite(before) and before > 0
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(20):
        opt.zero_grad()
        model.alignment_loss(*model.embed(batch)).backward()
        opt.step()
    assert model.alignment_loss(*model.embed(batch)) < before
    # with one modality present per case there is nothing to align
    only_ct = _batch(n=6, clin_present=0.0)
    assert model.alignment_loss(*model.embed(only_ct)) == 0


def test_fedbn_keeps_a_sites_normalisation_layers():
    from oncofed.common.ml.weights import (
        norm_arrays,
        norm_keys,
        restore_norm,
        to_arrays,
    )

    model = build_model(ModelConfig(embed_dim=16), 8)
    keys = norm_keys(model)
    assert keys and all(("norm" in k or "encoders" in k) for k in keys)
    site = build_model(ModelConfig(embed_dim=16), 8)
    with torch.no_grad():
        for k, v in site.state_dict().items():
            if k in keys and torch.is_floating_point(v):
                v.add_(1.0)  # the site's own statistics
    mine = norm_arrays(site)
    # the global model arrives; the site puts its own norm layers back
    from oncofed.common.ml.weights import load_arrays

    load_arrays(site, to_arrays(model))
    assert restore_norm(site, mine) == len(keys)
    for k, v in site.state_dict().items():
        ref = model.state_dict()[k]
        if k in keys and torch.is_floating_point(v):
            assert torch.allclose(v, ref + 1.0)
        elif torch.is_floating_point(v):
            assert torch.equal(v, ref)


def test_pretrained_weights_for_every_modality(tmp_path):
    """'pretrained' names one file per modality; each encoder gets its own."""
    cfg = ModelConfig(modalities="ct,clinical,histology", embed_dim=16)
    source = build_model(cfg, image_depth=8)
    files = []
    for m in ("clinical", "histology"):
        torch.save(source.encoders[m].state_dict(), tmp_path / f"{m}.pt")
        files.append(f"{m}={tmp_path / m}.pt")
    model = build_model(
        dataclasses.replace(cfg, pretrained=",".join(files)), image_depth=8
    )
    for m in ("clinical", "histology"):
        for k, v in source.encoders[m].state_dict().items():
            assert torch.equal(model.encoders[m].state_dict()[k], v), (m, k)
    ct_before = build_model(cfg, image_depth=8).encoders["ct"].state_dict()
    assert not all(
        torch.equal(v, model.encoders["ct"].state_dict()[k])
        for k, v in ct_before.items()
        if v.is_floating_point() and v.numel() > 1
    )
    with pytest.raises(ConfigError, match="genomics.*not among modalities"):
        build_model(
            dataclasses.replace(cfg, pretrained=f"genomics={tmp_path}/clinical.pt")
        )
    with pytest.raises(ConfigError, match="only .* tensors"):
        build_model(
            dataclasses.replace(cfg, pretrained=f"clinical={tmp_path}/histology.pt")
        )


def test_pretrained_timm_backbone_with_rgb_stem_loads_into_one_channel_slices(
    tmp_path,
):
    """A timm checkpoint of the backbone alone (3-channel stem, classifier head)
    loads into the per-slice encoder: the stem is adapted, the head skipped."""
    import timm

    backbone = timm.create_model("resnet10t", pretrained=False, num_classes=5)
    torch.save(backbone.state_dict(), tmp_path / "resnet10t.pth")
    model = build_model(
        ModelConfig(
            modalities="ct",
            image_encoder="tiny_2d",
            pretrained=str(tmp_path / "resnet10t.pth"),
        ),
        image_depth=8,
    )
    trunk = model.encoders["ct"].trunk.state_dict()
    stem = backbone.state_dict()["conv1.0.weight"]
    assert trunk["conv1.0.weight"].shape[1] == 1
    assert torch.allclose(trunk["conv1.0.weight"], stem.sum(1, keepdim=True))
    assert torch.equal(trunk["layer4.0.conv2.weight"], backbone.layer4[0].conv2.weight)


@pytest.mark.parametrize("encoder", ["tiny_2d", "ghostnet_2d"])
def test_slice_encoders_read_each_slice_alone(encoder):
    """2D per-slice encoders pool over slices with attention: the embedding does
    not depend on the slice order (a 2.5D stack's does), and the slice weights
    sum to one."""
    torch.manual_seed(0)
    enc = ENCODERS.create(encoder, embed_dim=12).eval()
    x = _batch()["ct"]
    perm = torch.randperm(x.shape[-1])
    with torch.no_grad():
        a, b = enc(x), enc(x[..., perm])
    assert torch.allclose(a, b, atol=1e-5)
    w = enc.pool.last_attention
    assert w.shape == (4, 8) and torch.allclose(w.sum(1), torch.ones(4))
    stack = ENCODERS.create("tiny_25d", embed_dim=12, in_slices=8).eval()
    with torch.no_grad():
        assert not torch.allclose(stack(x), stack(x[..., perm]), atol=1e-3)
