"""LiExNet as the paper describes it, its ablations, and the model registry."""
import pytest
import torch

from workers.models import count_parameters, create_model, list_models
from workers.models.liexnet import EfficientChannelAttention, LiExNet, eca_kernel_size


pytestmark = pytest.mark.usefixtures("one_torch_thread")



def test_default_liexnet_is_under_50k_parameters_and_outputs_logits():
    m = create_model("liexnet")
    assert 40_000 <= count_parameters(m) <= 50_000
    assert m(torch.zeros(3, 1, 48, 48)).shape == (3, 7)


def test_blocks_follow_the_paper_order_and_widths():
    m = create_model("liexnet")
    widths = []
    for block in m.features:
        kinds = [type(l).__name__ for l in block.body]
        assert kinds == ["Conv2d", "ReLU", "BatchNorm2d", "Conv2d", "ReLU", "BatchNorm2d",
                         "EfficientChannelAttention", "Conv2d", "ReLU", "MaxPool2d"]
        dw = block.body[3]
        assert dw.groups == dw.in_channels == dw.out_channels  # depthwise
        widths.append(block.body[7].out_channels)
    assert widths == [24, 48, 72, 96]
    head = [type(l).__name__ for l in m.classifier]
    assert head == ["Flatten", "Linear", "ReLU", "Dropout", "Linear"]
    assert m.classifier[3].p == pytest.approx(0.3)


@pytest.mark.parametrize("channels,k", [(24, 3), (48, 3), (96, 3), (256, 5), (512, 5), (4, 1)])
def test_eca_kernel_is_odd_and_follows_the_formula(channels, k):
    assert eca_kernel_size(channels) == k
    assert eca_kernel_size(channels) % 2 == 1


def test_eca_reweights_channels_without_changing_shape():
    eca = EfficientChannelAttention(24)
    x = torch.randn(2, 24, 6, 6)
    y = eca(x)
    assert y.shape == x.shape
    ratio = y / x
    # One weight per (image, channel), in (0, 1).
    assert torch.allclose(ratio, ratio[:, :, :1, :1].expand_as(ratio), atol=1e-5)
    assert ((ratio > 0) & (ratio < 1)).all()


def _conv_params(cin, cout, k, groups=1):
    return cin // groups * cout * k * k + cout


def test_ablations_remove_exactly_their_layers():
    full = count_parameters(create_model("liexnet"))
    filters = (24, 48, 72, 96)
    dw_and_bn = sum(_conv_params(f, f, 3, groups=f) + 2 * f for f in filters)
    eca = sum(eca_kernel_size(f) for f in filters)
    assert full - count_parameters(create_model("liexnet_a2")) == dw_and_bn
    assert full - count_parameters(create_model("liexnet_a3")) == eca
    # a1: no first conv; depthwise conv and ECA work on the block's input channels and
    # the last conv widens them to the block's filters.
    head = 96 * 3 * 3 * 16 + 16 + 16 * 7 + 7
    a1 = 0
    for cin, f in zip((1,) + filters[:-1], filters):
        a1 += _conv_params(cin, cin, 3, groups=cin) + 2 * cin + eca_kernel_size(cin) + _conv_params(cin, f, 1)
    assert count_parameters(create_model("liexnet_a1")) == a1 + head
    # a4: no last conv; pooling moves into a stride-2 first conv, so the head is unchanged.
    last = sum(_conv_params(f, f, 1) for f in filters)
    assert full - count_parameters(create_model("liexnet_a4")) == last
    for name in ("liexnet_a1", "liexnet_a2", "liexnet_a3", "liexnet_a4"):
        assert create_model(name)(torch.zeros(2, 1, 48, 48)).shape == (2, 7)


def test_config_sets_size_colour_kernels_and_hidden_width():
    m = create_model("liexnet", input_size=(64, 64), in_channels=3, num_classes=3, hidden=32, dw_kernel=5)
    assert m(torch.zeros(2, 3, 64, 64)).shape == (2, 3)
    assert m.features[0].body[3].kernel_size == (5, 5)
    assert m.classifier[1].out_features == 32
    assert m.classifier[1].in_features == 96 * 4 * 4
    with pytest.raises(ValueError, match="too small"):
        create_model("liexnet", input_size=(8, 8))
    with pytest.raises(ValueError, match="one kernel size per block"):
        create_model("liexnet", conv_kernel=(3, 1))


def test_registry_names_a_teacher_and_rejects_unknown_names():
    names = list_models()
    assert {"liexnet", "liexnet_a1", "liexnet_a4", "resnet_face"} <= set(names)
    teacher = create_model("resnet_face")
    assert count_parameters(teacher) > 20 * count_parameters(create_model("liexnet"))
    assert teacher(torch.zeros(2, 1, 48, 48)).shape == (2, 7)
    with pytest.raises(ValueError, match="unknown model"):
        create_model("liexnet_a9")
    with pytest.raises(ValueError, match="unknown ablation"):
        LiExNet(ablation="a5")

