"""The dirty-MNIST network: timm backbones, the per-position letter head, and their config errors."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from pydantic import ValidationError

from podium.errors import ConfigError
from podium.tasks.multilabel.model import ClassMaxHead, ModelConfig, build_model


def tiny(**kwargs) -> ModelConfig:
    return ModelConfig(name="test_resnet", drop_rate=0.0, drop_path_rate=0.0, **kwargs)


def test_class_max_is_the_classifier_at_every_position_then_the_maximum():
    torch.manual_seed(0)
    model = build_model(tiny(head="class_max", output_stride=8)).eval()
    images = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        logits = model(images).double().numpy()
        features = model.backbone.forward_features(images).double().numpy()
    fc = model.backbone.get_classifier()
    weight, bias = fc.weight.detach().double().numpy(), fc.bias.detach().double().numpy()
    batch, channels, height, width = features.shape
    assert (height, width) == (4, 4), "output stride 8 on 32 px"
    for b in range(batch):
        for k in range(26):
            scores = [sum(weight[k, c] * features[b, c, y, x] for c in range(channels)) + bias[k]
                      for y in range(height) for x in range(width)]
            assert logits[b, k] == pytest.approx(max(scores), abs=1e-5)


def test_class_max_keeps_timm_weights_under_a_backbone_prefix():
    pooled = build_model(tiny())
    headed = build_model(tiny(head="class_max"))
    assert isinstance(headed, ClassMaxHead) and not isinstance(pooled, ClassMaxHead)
    assert list(headed.state_dict()) == [f"backbone.{k}" for k in pooled.state_dict()]
    headed.backbone.load_state_dict(pooled.state_dict())
    images = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(headed.eval().backbone(images), pooled.eval()(images))


def test_dropout_on_features_only_in_training():
    model = build_model(ModelConfig(name="test_resnet", head="class_max", drop_rate=0.5, drop_path_rate=0.0))
    images = torch.randn(2, 1, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(images), model(images))
        model.train()
        torch.manual_seed(1)
        dropped = model(images)
        model.eval()
        assert not torch.equal(dropped, model(images))


def test_output_stride_dilates_instead_of_downsampling():
    sizes = {s: build_model(tiny(output_stride=s)).forward_features(torch.zeros(1, 1, 64, 64)).shape[-1]
             for s in (8, 16, 32)}
    assert sizes == {8: 8, 16: 4, 32: 2}


@pytest.mark.parametrize(
    ("cfg", "call", "needle"),
    [
        (ModelConfig(name="test_vit", output_stride=8), False, "test_vit"),
        (ModelConfig(name="test_vit", head="class_max"), True, "[B, C, H, W]"),
    ],
)
def test_unusable_model_configs_fail_with_a_config_error(cfg: ModelConfig, call: bool, needle: str):
    with pytest.raises(ConfigError, match=r"model") as info:
        model = build_model(cfg)
        if call:
            model(torch.zeros(1, 1, 32, 32))
    assert needle in str(info.value)


def test_an_unknown_timm_name_is_refused_by_the_config():
    with pytest.raises(ValidationError, match="'no_such_model_xyz' is not a timm model"):
        ModelConfig(name="no_such_model_xyz")


def test_the_default_is_timms_own_model():
    model = build_model(tiny())
    reference = timm.create_model("test_resnet", in_chans=1, num_classes=26, drop_rate=0.0, drop_path_rate=0.0)
    assert type(model) is type(reference)
    assert [tuple(v.shape) for v in model.state_dict().values()] == [
        tuple(v.shape) for v in reference.state_dict().values()
    ]
    assert np.prod(model.get_classifier().weight.shape) == 26 * model.num_features
