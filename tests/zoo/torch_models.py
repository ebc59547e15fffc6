"""PyTorch definitions of the zoo's classifiers and segmenter, written from the papers' block structure.

Every builder returns a model in eval mode whose weights and BatchNorm statistics are seeded but non-trivial, so that
an exporter that drops a BatchNorm, swaps an activation or mis-orders a channel shuffle shows up as a parity error.

    >>> model = build("resnet18", num_classes=10)
    >>> model(torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 10])
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F


def _divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor``, never going below 90% of it (the MobileNet rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, *, groups: int = 1, act: type | None = nn.ReLU):
    """Conv (no bias: the BatchNorm shift replaces it) + BatchNorm + optional activation."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


# --- ResNet-18 (He et al. 2015): BasicBlock x [2, 2, 2, 2] ---------------------------------------------------------

class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(cin, cout, 3, stride), _conv_bn(cout, cout, 3, act=None))
        # Projection shortcut only where the shape changes (option B of the paper).
        self.short = _conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        return F.relu(self.body(x) + self.short(x))


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# --- MobileNetV2 (Sandler et al. 2018): inverted residuals, linear bottlenecks, ReLU6 -------------------------------

class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [_conv_bn(cin, hidden, 1, act=nn.ReLU6)]
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   _conv_bn(hidden, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    # (expansion t, output channels c, repeats n, first stride s): Table 2 of the paper.
    CONFIG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers, cin = [_conv_bn(3, 32, 3, 2, act=nn.ReLU6)], 32
        for t, c, n, s in self.CONFIG:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn(cin, 1280, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# --- MobileNetV3-Small (Howard et al. 2019): hardswish, hard-sigmoid squeeze-excite --------------------------------

class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeezed: int, *, act: type = nn.ReLU, gate: type = nn.Hardsigmoid):
        super().__init__()
        self.reduce, self.act = nn.Conv2d(channels, squeezed, 1), act()
        self.expand, self.gate = nn.Conv2d(squeezed, channels, 1), gate()

    def forward(self, x):
        scale = self.gate(self.expand(self.act(self.reduce(F.adaptive_avg_pool2d(x, 1)))))
        return x * scale


class V3Block(nn.Module):
    def __init__(self, cin: int, kernel: int, hidden: int, cout: int, se: bool, act: type, stride: int):
        super().__init__()
        layers = [] if hidden == cin else [_conv_bn(cin, hidden, 1, act=act)]
        layers.append(_conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcite(hidden, _divisible(hidden / 4)))
        layers.append(_conv_bn(hidden, cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV3Small(nn.Module):
    # (kernel, expanded, out, squeeze-excite, activation, stride): Table 2 of the paper.
    RE, HS = nn.ReLU, nn.Hardswish
    CONFIG = [(3, 16, 16, True, RE, 2), (3, 72, 24, False, RE, 2), (3, 88, 24, False, RE, 1),
              (5, 96, 40, True, HS, 2), (5, 240, 40, True, HS, 1), (5, 240, 40, True, HS, 1),
              (5, 120, 48, True, HS, 1), (5, 144, 48, True, HS, 1), (5, 288, 96, True, HS, 2),
              (5, 576, 96, True, HS, 1), (5, 576, 96, True, HS, 1)]

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers, cin = [_conv_bn(3, 16, 3, 2, act=nn.Hardswish)], 16
        for kernel, hidden, cout, se, act, stride in self.CONFIG:
            layers.append(V3Block(cin, kernel, hidden, cout, se, act, stride))
            cin = cout
        layers.append(_conv_bn(cin, 576, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(), nn.Dropout(0.2),
                                        nn.Linear(1024, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# --- ShuffleNetV2 x1.0 (Ma et al. 2018): channel split, channel shuffle ---------------------------------------------

def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(N, g*k, H, W) -> (N, g, k, H, W) -> swap g and k -> (N, k*g, H, W): interleaves the groups' channels."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride, half = stride, cout // 2
        branch_in = cin if stride == 2 else half
        if stride == 2:
            # Downsampling unit: both branches see the whole input, so the output doubles the channels.
            self.left = nn.Sequential(_conv_bn(cin, cin, 3, 2, groups=cin, act=None), _conv_bn(cin, half, 1))
        self.right = nn.Sequential(_conv_bn(branch_in, half, 1), _conv_bn(half, half, 3, stride, groups=half, act=None),
                                   _conv_bn(half, half, 1))

    def forward(self, x):
        if self.stride == 1:
            keep, work = x.chunk(2, dim=1)  # the channel split
            out = torch.cat([keep, self.right(work)], 1)
        else:
            out = torch.cat([self.left(x), self.right(x)], 1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1))
        units, cin = [], 24
        for cout, repeats in [(116, 4), (232, 8), (464, 4)]:  # x1.0 widths, Table 5 of the paper
            units += [ShuffleUnit(cin if i == 0 else cout, cout, 2 if i == 0 else 1) for i in range(repeats)]
            cin = cout
        self.units = nn.Sequential(*units)
        self.head = _conv_bn(464, 1024, 1)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.head(self.units(self.stem(x)))
        return self.fc(x.mean([2, 3]))


# --- EfficientNet-B0 (Tan & Le 2019): MBConv with SiLU and squeeze-excite -------------------------------------------

class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [_conv_bn(cin, hidden, 1, act=nn.SiLU)]
        layers += [_conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=nn.SiLU),
                   # Squeeze ratio 0.25 of the block's *input* channels, as in the reference implementation.
                   SqueezeExcite(hidden, max(1, cin // 4), act=nn.SiLU, gate=nn.Sigmoid),
                   _conv_bn(hidden, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        # Stochastic depth is the identity in eval mode, so it is left out.
        return x + self.body(x) if self.residual else self.body(x)


class EfficientNetB0(nn.Module):
    # (expansion, kernel, stride, out channels, repeats): Table 1 of the paper.
    CONFIG = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
              (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers, cin = [_conv_bn(3, 32, 3, 2, act=nn.SiLU)], 32
        for expand, kernel, stride, cout, repeats in self.CONFIG:
            for i in range(repeats):
                layers.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(_conv_bn(cin, 1280, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# --- A small U-Net (Ronneberger et al. 2015) ------------------------------------------------------------------------

def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(_conv_bn(cin, cout, 3), _conv_bn(cout, cout, 3))


class UNet(nn.Module):
    """Three 2x poolings; two decoder steps upsample with ConvTranspose2d, the middle one with bilinear Upsample."""

    def __init__(self, num_classes: int = 3, width: int = 16):
        super().__init__()
        w1, w2, w3, w4 = width, 2 * width, 4 * width, 8 * width
        self.enc1, self.enc2, self.enc3 = _double_conv(3, w1), _double_conv(w1, w2), _double_conv(w2, w3)
        self.pool = nn.MaxPool2d(2)
        self.bottom = _double_conv(w3, w4)
        self.up3, self.dec3 = nn.ConvTranspose2d(w4, w3, 2, 2), _double_conv(2 * w3, w3)
        self.up2 = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                 nn.Conv2d(w3, w2, 1))
        self.dec2 = _double_conv(2 * w2, w2)
        self.up1, self.dec1 = nn.ConvTranspose2d(w2, w1, 2, 2), _double_conv(2 * w1, w1)
        self.head = nn.Conv2d(w1, num_classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        b = self.bottom(self.pool(e3))
        d3 = self.dec3(torch.cat([self.up3(b), e3], 1))
        d2 = self.dec2(torch.cat([self.up2(d3), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.head(d1)


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": ResNet18,
    "mobilenet_v2": MobileNetV2,
    "mobilenet_v3_small": MobileNetV3Small,
    "shufflenet_v2": ShuffleNetV2,
    "efficientnet_b0": EfficientNetB0,
    "unet": UNet,
}


def settle_batchnorm(model: nn.Module, sample: torch.Tensor, *, batch: int = 4) -> None:
    """Give every BatchNorm a random affine part and running statistics measured on ``sample``.

    Fresh BatchNorms have mean 0, variance 1, scale 1, shift 0: an exporter that dropped them would still match.
    Statistics measured in train mode (momentum=None: a plain average over the batches) keep activations at a sane
    scale through 50+ layers, which random statistics would not. The average of per-batch variances leaves out how
    much the batch means differ; with ``batch=len(sample)`` the statistics are the sample's own, and eval mode gives
    unit-scale activations on it however different its images are.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in norms:
        nn.init.uniform_(bn.weight, 0.5, 1.5)
        nn.init.normal_(bn.bias, 0.0, 0.2)
        bn.momentum = None
    model.train()
    with torch.no_grad():
        for chunk in sample.split(batch):
            model(chunk)
    for bn in norms:
        bn.momentum = 0.1
    model.eval()


def build(name: str, *, num_classes: int | None = None, image_size: int = 64, seed: int = 0) -> nn.Module:
    """A zoo model with seeded weights and non-trivial BatchNorm statistics, in eval mode.

    >>> build("unet")(torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 3, 64, 64])
    """
    if name not in BUILDERS:
        raise KeyError(f"unknown torch zoo model {name!r}; known: {sorted(BUILDERS)}")
    # fork_rng keeps the caller's global torch RNG untouched.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        model = BUILDERS[name](**kwargs)
        settle_batchnorm(model, torch.rand(16, 3, image_size, image_size) * 2 - 1)
    return model
