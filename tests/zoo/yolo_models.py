"""YOLOv8n in PyTorch, module for module as ultralytics builds it (width 0.25, depth 0.33), with the export head.

Conv = Conv2d + BatchNorm(eps 1e-3) + SiLU; C2f splits its 1x1 output in two (chunk), runs bottlenecks on the
second half and concatenates every intermediate; SPPF chains three 5x5 max pools. The head is the decoupled Detect
with its inference tail: DFL (box logits reshaped to (B, 4, 16, A), softmax over the 16 bins, a fixed 1x1 conv with
weights 0..15 taking the expectation), distances to boxes around the anchor points, times the stride, and the
class sigmoid, concatenated as ultralytics exports it: (B, 4 + classes, anchors), boxes as (cx, cy, w, h) pixels.

    >>> YOLOv8(image_size=64)(torch.zeros(1, 3, 64, 64)).shape  # 8x8 + 4x4 + 2x2 anchors
    torch.Size([1, 84, 84])
"""
from __future__ import annotations

import torch
from torch import nn


class Conv(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1):
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(cout, eps=1e-3, momentum=0.03), nn.SiLU())


class Bottleneck(nn.Module):
    def __init__(self, channels: int, shortcut: bool):
        super().__init__()
        self.cv1, self.cv2 = Conv(channels, channels, 3), Conv(channels, channels, 3)
        self.add = shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    def __init__(self, cin: int, cout: int, n: int = 1, shortcut: bool = False):
        super().__init__()
        self.c = cout // 2
        self.cv1 = Conv(cin, 2 * self.c, 1)
        self.cv2 = Conv((2 + n) * self.c, cout, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 5):
        super().__init__()
        hidden = cin // 2
        self.cv1, self.cv2 = Conv(cin, hidden, 1), Conv(4 * hidden, cout, 1)
        self.m = nn.MaxPool2d(kernel, 1, kernel // 2)

    def forward(self, x):
        y = [self.cv1(x)]
        y.extend(self.m(y[-1]) for _ in range(3))
        return self.cv2(torch.cat(y, 1))


class DFL(nn.Module):
    """Distribution focal loss integral: the expected bin of a softmax over ``bins`` distance bins."""

    def __init__(self, bins: int = 16):
        super().__init__()
        self.bins = bins
        self.conv = nn.Conv2d(bins, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(bins, dtype=torch.float32).view(1, bins, 1, 1)

    def forward(self, x):
        b, _, a = x.shape
        return self.conv(x.view(b, 4, self.bins, a).transpose(2, 1).softmax(1)).view(b, 4, a)


def make_anchors(sizes: list[tuple[int, int]], strides: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres (2, A) in grid units and each anchor's stride (1, A), level by level, row-major."""
    points, stride_rows = [], []
    for (h, w), s in zip(sizes, strides):
        sy, sx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        points.append(torch.stack((sx, sy), -1).view(-1, 2))
        stride_rows.append(torch.full((h * w, 1), float(s)))
    return torch.cat(points).T.contiguous(), torch.cat(stride_rows).T.contiguous()


class Detect(nn.Module):
    def __init__(self, channels: list[int], *, classes: int, image_size: int, strides=(8, 16, 32), bins: int = 16):
        super().__init__()
        self.nc, self.bins, self.no = classes, bins, classes + 4 * bins
        c2, c3 = max(16, channels[0] // 4, 4 * bins), max(channels[0], min(classes, 100))
        self.cv2 = nn.ModuleList(nn.Sequential(Conv(c, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * bins, 1))
                                 for c in channels)
        self.cv3 = nn.ModuleList(nn.Sequential(Conv(c, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, classes, 1))
                                 for c in channels)
        self.dfl = DFL(bins)
        anchors, stride_row = make_anchors([(image_size // s, image_size // s) for s in strides], list(strides))
        self.register_buffer("anchors", anchors)
        self.register_buffer("strides", stride_row)

    def forward(self, features):
        b = features[0].shape[0]
        x = torch.cat([torch.cat((box(f), cls(f)), 1).view(b, self.no, -1)
                       for f, box, cls in zip(features, self.cv2, self.cv3)], 2)
        box, cls = x.split((4 * self.bins, self.nc), 1)
        lt, rb = self.dfl(box).chunk(2, 1)  # distances left-top and right-bottom, in grid cells
        x1y1, x2y2 = self.anchors.unsqueeze(0) - lt, self.anchors.unsqueeze(0) + rb
        boxes = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * self.strides  # (cx, cy, w, h) in pixels
        return torch.cat((boxes, cls.sigmoid()), 1)


class YOLOv8(nn.Module):
    """YOLOv8n: (N, 3, S, S) RGB in [0, 1] (letterboxed) -> (N, 4 + classes, (S/8)² + (S/16)² + (S/32)²)."""

    def __init__(self, *, classes: int = 80, image_size: int = 128):
        super().__init__()
        self.b1 = nn.Sequential(Conv(3, 16, 3, 2), Conv(16, 32, 3, 2), C2f(32, 32, 1, True), Conv(32, 64, 3, 2),
                                C2f(64, 64, 2, True))  # P3, stride 8
        self.b2 = nn.Sequential(Conv(64, 128, 3, 2), C2f(128, 128, 2, True))  # P4, stride 16
        self.b3 = nn.Sequential(Conv(128, 256, 3, 2), C2f(256, 256, 1, True), SPPF(256, 256))  # P5, stride 32
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.h1, self.h2 = C2f(384, 128), C2f(192, 64)
        self.down1, self.h3 = Conv(64, 64, 3, 2), C2f(192, 128)
        self.down2, self.h4 = Conv(128, 128, 3, 2), C2f(384, 256)
        self.detect = Detect([64, 128, 256], classes=classes, image_size=image_size)

    def forward(self, x):
        p3 = self.b1(x)
        p4 = self.b2(p3)
        p5 = self.b3(p4)
        t4 = self.h1(torch.cat([self.up(p5), p4], 1))  # top-down (FPN)
        n3 = self.h2(torch.cat([self.up(t4), p3], 1))
        n4 = self.h3(torch.cat([self.down1(n3), t4], 1))  # bottom-up (PAN)
        n5 = self.h4(torch.cat([self.down2(n4), p5], 1))
        return self.detect([n3, n4, n5])
