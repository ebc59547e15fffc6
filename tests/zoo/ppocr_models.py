"""PP-OCR's three networks in PyTorch, scaled down but with PaddleOCR's block structure.

- :class:`DBNet`: the text detector (PP-OCRv4/v5 det): a PP-LCNet backbone (depthwise-separable blocks, hard-swish,
  hard-sigmoid squeeze-excite), an RSE-FPN neck (nearest upsampling, Add, Concat) and the DB head (ConvTranspose2d
  twice, Sigmoid). v5 swaps hard-swish for GELU.
- :class:`DirectionClassifier`: the text-line direction classifier (PP-OCR v2.0 cls): MobileNetV3-Small x0.35 with
  PaddleOCR's (2, 1) strides, which halve the height and keep the width, then average pooling and a 2-class softmax.
- :class:`SVTRRecognizer`: the recognizer (PP-OCRv4 rec): a PP-LCNet-style backbone down to one row, an SVTR
  global-mixing encoder (multi-head self-attention, LayerNorm, GELU MLP) and a CTC head with a softmax per column.

Paddle's squeeze-excite gates use ``hard_sigmoid(x, slope=0.2, offset=0.5)``, which Paddle2ONNX writes as
``HardSigmoid(alpha=0.2)``; torch's ``nn.Hardsigmoid`` is the 1/6 slope (PP-LCNet's own SE). Both appear here.

    >>> DBNet()(torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 1, 64, 64])
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class _PaddleHardSigmoid(torch.autograd.Function):
    """clip(0.2 x + 0.5, 0, 1), exported as one HardSigmoid(alpha=0.2, beta=0.5) node like Paddle2ONNX writes."""

    @staticmethod
    def forward(ctx, x):
        return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)

    @staticmethod
    def symbolic(g, x):
        return g.op("HardSigmoid", x, alpha_f=0.2, beta_f=0.5)


class PaddleHardSigmoid(nn.Module):
    def forward(self, x):
        return _PaddleHardSigmoid.apply(x)


def divisible(value: float, divisor: int = 8) -> int:
    """PaddleOCR's make_divisible: round to a multiple of ``divisor``, never below 90 % of ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBN(nn.Sequential):
    """Conv (no bias) + BatchNorm + optional activation; ``stride`` may be (sh, sw) as in Paddle's rec backbones."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, *, groups: int = 1, act: type | None = nn.Hardswish):
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        layers = [nn.Conv2d(cin, cout, (kh, kw), stride, (kh // 2, kw // 2), groups=groups, bias=False),
                  nn.BatchNorm2d(cout)]
        super().__init__(*layers, *([act()] if act is not None else []))


class SqueezeExcite(nn.Module):
    """Global average pool, 1x1 reduce, ReLU, 1x1 expand, gate, scale the input by the gate."""

    def __init__(self, channels: int, *, reduction: int = 4, gate: type = nn.Hardsigmoid):
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // reduction, 1)
        self.expand = nn.Conv2d(channels // reduction, channels, 1)
        self.gate = gate()

    def forward(self, x):
        return x * self.gate(self.expand(F.relu(self.reduce(F.adaptive_avg_pool2d(x, 1)))))


class DepthwiseSeparable(nn.Sequential):
    """PP-LCNet's block: depthwise kxk + BN + act, optional SE, pointwise 1x1 + BN + act."""

    def __init__(self, cin: int, cout: int, kernel: int, stride, se: bool, act: type):
        layers = [ConvBN(cin, cin, kernel, stride, groups=cin, act=act)]
        if se:
            layers.append(SqueezeExcite(cin))
        super().__init__(*layers, ConvBN(cin, cout, 1, act=act))


# PP-LCNet's stages (kernel, in, out, stride, SE) at scale 1.0; stage 6 carries the SE blocks.
LCNET_DET = [
    [(3, 32, 64, 2, False), (3, 64, 64, 1, False)],
    [(3, 64, 128, 2, False), (3, 128, 128, 1, False)],
    [(3, 128, 256, 2, False)] + [(5, 256, 256, 1, False)] * 3,
    [(5, 256, 512, 2, True), (5, 512, 512, 1, True)],
]


class LCNetBackbone(nn.Module):
    """Stem (stride 2) and PP-LCNet stages; returns the stride 4, 8, 16 and 32 features."""

    def __init__(self, *, scale: float = 0.5, act: type = nn.Hardswish):
        super().__init__()
        self.stem = nn.Sequential(ConvBN(3, divisible(16 * scale), 3, 2, act=act),
                                  DepthwiseSeparable(divisible(16 * scale), divisible(32 * scale), 3, 1, False, act))
        self.stages = nn.ModuleList(
            nn.Sequential(*[DepthwiseSeparable(divisible(cin * scale), divisible(cout * scale), k, s, se, act)
                            for k, cin, cout, s, se in stage])
            for stage in LCNET_DET)
        self.channels = [divisible(stage[-1][2] * scale) for stage in LCNET_DET]

    def forward(self, x):
        x, features = self.stem(x), []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class RSELayer(nn.Module):
    """RSE-FPN's conv with a residual squeeze-excite: y = conv(x); y + SE(y) (Paddle's 0.2-slope gate)."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.se = SqueezeExcite(cout, gate=PaddleHardSigmoid)

    def forward(self, x):
        y = self.conv(x)
        return y + self.se(y)


class RSEFPN(nn.Module):
    """Top-down sum of 1x1-projected levels, 3x3 per level to a quarter of the width, upsampled to stride 4, Concat."""

    def __init__(self, channels: list[int], out_channels: int = 64):
        super().__init__()
        self.ins = nn.ModuleList(RSELayer(c, out_channels, 1) for c in channels)
        self.outs = nn.ModuleList(RSELayer(out_channels, out_channels // 4, 3) for _ in channels)

    def forward(self, features):
        ins = [conv(f) for conv, f in zip(self.ins, features)]
        for i in range(len(ins) - 2, -1, -1):  # coarse to fine: in4 += up(in5), in3 += up(in4), ...
            ins[i] = ins[i] + F.interpolate(ins[i + 1], scale_factor=2.0, mode="nearest")
        outs = [conv(x) for conv, x in zip(self.outs, ins)]
        ups = [outs[0]] + [F.interpolate(o, scale_factor=2.0 ** i, mode="nearest") for i, o in enumerate(outs) if i]
        return torch.cat(ups[::-1], 1)  # Paddle's order: p5, p4, p3, p2


class DBHead(nn.Module):
    """3x3 conv + BN + ReLU, then two ConvTranspose2d 2x2 stride 2 back to the input size, Sigmoid probability map."""

    def __init__(self, channels: int):
        super().__init__()
        quarter = channels // 4
        self.body = nn.Sequential(
            nn.Conv2d(channels, quarter, 3, padding=1, bias=False), nn.BatchNorm2d(quarter), nn.ReLU(),
            nn.ConvTranspose2d(quarter, quarter, 2, 2), nn.BatchNorm2d(quarter), nn.ReLU(),
            nn.ConvTranspose2d(quarter, 1, 2, 2))

    def forward(self, x):
        return torch.sigmoid(self.body(x))


class MobileNetV3Backbone(nn.Module):
    """PP-OCRv3 mobile det's backbone: MobileNetV3-Large (Paddle's units, 0.2-slope hard-sigmoid SE) at ``scale``,
    with its last 1x1 conv; returns the stride 4, 8, 16 and 32 features."""

    RE, HS = nn.ReLU, nn.Hardswish
    # (kernel, expanded, out, SE, activation, stride): Table 1 of the MobileNetV3 paper (Large)
    CONFIG = [(3, 16, 16, False, RE, 1), (3, 64, 24, False, RE, 2), (3, 72, 24, False, RE, 1),
              (5, 72, 40, True, RE, 2), (5, 120, 40, True, RE, 1), (5, 120, 40, True, RE, 1),
              (3, 240, 80, False, HS, 2), (3, 200, 80, False, HS, 1), (3, 184, 80, False, HS, 1),
              (3, 184, 80, False, HS, 1), (3, 480, 112, True, HS, 1), (3, 672, 112, True, HS, 1),
              (5, 672, 160, True, HS, 2), (5, 960, 160, True, HS, 1), (5, 960, 160, True, HS, 1)]
    TAPS = (2, 5, 11)  # the units after which a stride 4, 8, 16 feature is taken

    def __init__(self, *, scale: float = 0.5):
        super().__init__()
        cin = divisible(16 * scale)
        self.stem = ConvBN(3, cin, 3, 2)
        self.units, self.channels = nn.ModuleList(), []
        for i, (kernel, hidden, cout, se, act, stride) in enumerate(self.CONFIG):
            self.units.append(ResidualUnit(cin, divisible(scale * hidden), divisible(scale * cout), kernel, stride,
                                           se, act))
            cin = divisible(scale * cout)
            if i in self.TAPS:
                self.channels.append(cin)
        self.last = ConvBN(cin, divisible(scale * 960), 1)
        self.channels.append(divisible(scale * 960))

    def forward(self, x):
        x, features = self.stem(x), []
        for i, unit in enumerate(self.units):
            x = unit(x)
            if i in self.TAPS:
                features.append(x)
        return features + [self.last(x)]


class LCNetClassifier(nn.Module):
    """PP-LCNet (Cui et al. 2021) as an ImageNet classifier: the PP-LCNet backbone, global average pooling, a 1x1
    conv to 1280 with hard-swish (PP-LCNet's last conv), then the fully connected layer; logits out."""

    def __init__(self, *, scale: float = 0.5, classes: int = 1000):
        super().__init__()
        self.backbone = LCNetBackbone(scale=scale)
        self.last = nn.Sequential(nn.Conv2d(self.backbone.channels[-1], 1280, 1), nn.Hardswish())
        self.fc = nn.Linear(1280, classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.backbone(x)[-1], 1)
        return self.fc(torch.flatten(self.last(x), 1))


class DBNet(nn.Module):
    """PP-OCR det: (N, 3, H, W) ImageNet-normalised RGB -> (N, 1, H, W) text probability; H, W multiples of 32.
    ``backbone``: "lcnet" (PP-OCRv4/v5) or "mobilenet_v3" (PP-OCRv3 mobile)."""

    def __init__(self, *, act: type = nn.Hardswish, scale: float = 0.5, fpn_channels: int = 64,
                 backbone: str = "lcnet"):
        super().__init__()
        self.backbone = LCNetBackbone(scale=scale, act=act) if backbone == "lcnet" else MobileNetV3Backbone(scale=scale)
        self.neck = RSEFPN(self.backbone.channels, fpn_channels)
        self.head = DBHead(fpn_channels)

    def forward(self, x):
        return self.head(self.neck(self.backbone(x)))


class ResidualUnit(nn.Module):
    """Paddle's MobileNetV3 unit: 1x1 expand, kxk depthwise, optional SE (0.2-slope gate), 1x1 linear projection."""

    def __init__(self, cin: int, hidden: int, cout: int, kernel: int, stride, se: bool, act: type):
        super().__init__()
        layers = [ConvBN(cin, hidden, 1, act=act), ConvBN(hidden, hidden, kernel, stride, groups=hidden, act=act)]
        if se:
            layers.append(SqueezeExcite(hidden, gate=PaddleHardSigmoid))
        self.body = nn.Sequential(*layers, ConvBN(hidden, cout, 1, act=None))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class DirectionClassifier(nn.Module):
    """PP-OCR cls: (N, 3, 48, 192) in [-1, 1] -> (N, 2) softmax over {0°, 180°}.

    PaddleOCR's rec_mobilenet_v3 "small" at scale 0.35: the stem halves both axes, the four strided units halve
    only the height ((2, 1) strides), a 2x2 max pool ends the backbone.
    """

    RE, HS = nn.ReLU, nn.Hardswish
    # (kernel, expanded, out, SE, activation, stride): PaddleOCR's MobileNetV3-Small table
    CONFIG = [(3, 16, 16, True, RE, (2, 1)), (3, 72, 24, False, RE, (2, 1)), (3, 88, 24, False, RE, 1),
              (5, 96, 40, True, HS, (2, 1)), (5, 240, 40, True, HS, 1), (5, 240, 40, True, HS, 1),
              (5, 120, 48, True, HS, 1), (5, 144, 48, True, HS, 1), (5, 288, 96, True, HS, (2, 1)),
              (5, 576, 96, True, HS, 1), (5, 576, 96, True, HS, 1)]

    def __init__(self, *, scale: float = 0.35, classes: int = 2):
        super().__init__()
        cin = divisible(16 * scale)
        layers = [ConvBN(3, cin, 3, 2)]
        for kernel, hidden, cout, se, act, stride in self.CONFIG:
            layers.append(ResidualUnit(cin, divisible(scale * hidden), divisible(scale * cout), kernel, stride,
                                       se, act))
            cin = divisible(scale * cout)
        layers += [ConvBN(cin, divisible(scale * 576), 1), nn.MaxPool2d(2, 2)]
        self.backbone = nn.Sequential(*layers)
        self.fc = nn.Linear(divisible(scale * 576), classes)

    def forward(self, x):
        x = torch.flatten(F.adaptive_avg_pool2d(self.backbone(x), 1), 1)
        return F.softmax(self.fc(x), dim=1)


class LearnableAffine(nn.Module):
    """PP-LCNetV3's learnable affine block after each activation: scale * x + bias, two scalars."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([1.0]))
        self.bias = nn.Parameter(torch.tensor([0.0]))

    def forward(self, x):
        return self.scale * x + self.bias


class AffineHardswish(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Hardswish(), LearnableAffine())


# PP-LCNetV3's recognition stages at scale 1.0: (kernel, in, out, stride, SE); (2, 1) halves the height only,
# (1, 2) the width only, so a 48-row line ends 3 rows high before the final 3x2 average pool.
LCNET_REC = [(3, 16, 32, 1, False), (3, 32, 64, 1, False), (3, 64, 64, 1, False),
             (3, 64, 128, (2, 1), False), (3, 128, 128, 1, False),
             (3, 128, 256, (1, 2), False), (5, 256, 256, 1, False),
             (5, 256, 512, (2, 1), True), (5, 512, 512, 1, True), (5, 512, 512, (2, 1), False), (5, 512, 512, 1, False)]


class Attention(nn.Module):
    """SVTR's global mixer: multi-head self-attention over the N positions of a (B, N, C) sequence."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        # (B, N, 3C) -> (3, B, heads, N, head_dim): PaddleOCR's transpose((2, 0, 3, 1, 4)) moves the batch axis.
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = F.softmax(q.matmul(k.transpose(-2, -1)), dim=-1)
        return self.proj(attn.matmul(v).transpose(1, 2).reshape(b, n, c))


class SVTRBlock(nn.Module):
    """Post-norm transformer block as PaddleOCR's EncoderWithSVTR builds it (prenorm=False)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2):
        super().__init__()
        self.mixer, self.norm1 = Attention(dim, heads), nn.LayerNorm(dim, eps=1e-5)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x):
        x = self.norm1(x + self.mixer(x))
        return self.norm2(x + self.mlp(x))


class SVTREncoder(nn.Module):
    """EncoderWithSVTR: narrow convs, flatten to a sequence, SVTR blocks, back to a map, concat the shortcut."""

    def __init__(self, channels: int, *, dims: int = 64, hidden: int = 64, depth: int = 2, heads: int = 8):
        super().__init__()
        self.conv1 = ConvBN(channels, channels // 8, (1, 3), act=nn.SiLU)
        self.conv2 = ConvBN(channels // 8, hidden, 1, act=nn.SiLU)
        self.blocks = nn.Sequential(*[SVTRBlock(hidden, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(hidden, eps=1e-6)
        self.conv3 = ConvBN(hidden, channels, 1, act=nn.SiLU)
        self.conv4 = ConvBN(2 * channels, channels // 8, (1, 3), act=nn.SiLU)
        self.conv5 = ConvBN(channels // 8, dims, 1, act=nn.SiLU)

    def forward(self, x):
        h = self.conv2(self.conv1(x))
        b, c, rows, cols = h.shape
        h = self.norm(self.blocks(h.flatten(2).transpose(1, 2)))  # (B, C, H, W) -> (B, H*W, C)
        h = self.conv3(h.reshape(b, rows, cols, c).permute(0, 3, 1, 2))
        return self.conv5(self.conv4(torch.cat([x, h], 1)))


class SVTRRecognizer(nn.Module):
    """PP-OCR rec: (N, 3, 48, W) in [-1, 1] -> (N, W / 8, classes) per-column softmax (CTC, class 0 the blank)."""

    def __init__(self, *, scale: float = 0.5, classes: int = 97, dims: int = 64):
        super().__init__()
        cin = divisible(16 * scale)
        layers = [ConvBN(3, cin, 3, 2, act=AffineHardswish)]
        for kernel, _, cout, stride, se in LCNET_REC:
            layers.append(DepthwiseSeparable(cin, divisible(cout * scale), kernel, stride, se, AffineHardswish))
            cin = divisible(cout * scale)
        self.backbone = nn.Sequential(*layers)
        self.encoder = SVTREncoder(cin, dims=dims)
        self.fc = nn.Linear(dims, classes)

    def forward(self, x):
        x = F.avg_pool2d(self.backbone(x), (3, 2))  # PP-LCNetV3's inference pooling: 3 rows -> 1
        x = self.encoder(x).squeeze(2).permute(0, 2, 1)  # Im2Seq: (B, C, 1, T) -> (B, T, C)
        return F.softmax(self.fc(x), dim=2)
