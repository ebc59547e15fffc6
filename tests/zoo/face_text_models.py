"""MTCNN's refinement and output networks, and CRNN, in PyTorch as their reference ports define them.

- :class:`RNet` and :class:`ONet` follow facenet-pytorch's port of the Caffe MTCNN: Conv + per-channel PReLU,
  MaxPool with ``ceil_mode=True`` (Caffe's rounding), a (0, 3, 2, 1) permute before flattening (the Caffe weights
  were trained on W, H-transposed maps), Dense + PReLU, then a softmax face probability, box offsets and, for
  O-Net, five landmarks.
- :class:`CRNN` follows Shi et al. 2015 (crnn.pytorch): seven convs that bring a 32-row grayscale line to one row,
  ``squeeze(2).permute(2, 0, 1)`` to a (T, B, C) sequence, two bidirectional LSTMs each with its Linear, and the
  per-column class logits permuted back to batch-first (B, T, classes).

    >>> [t.shape for t in RNet()(torch.zeros(1, 3, 24, 24))]
    [torch.Size([1, 4]), torch.Size([1, 2])]
"""
from __future__ import annotations

import torch
from torch import nn


def _conv_prelu(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel), nn.PReLU(cout)]


class RNet(nn.Module):
    """(N, 3, 24, 24) in [-1, 1] -> box offsets (N, 4), face probability (N, 2)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(*_conv_prelu(3, 28, 3), nn.MaxPool2d(3, 2, ceil_mode=True),
                                      *_conv_prelu(28, 48, 3), nn.MaxPool2d(3, 2, ceil_mode=True),
                                      *_conv_prelu(48, 64, 2))
        self.dense = nn.Sequential(nn.Linear(576, 128), nn.PReLU(128))  # 3 x 3 x 64 after the convs
        self.prob, self.box = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x):
        x = self.features(x).permute(0, 3, 2, 1).contiguous()
        x = self.dense(x.view(x.shape[0], -1))
        return self.box(x), torch.softmax(self.prob(x), dim=1)


class ONet(nn.Module):
    """(N, 3, 48, 48) in [-1, 1] -> box offsets (N, 4), landmarks (N, 10), face probability (N, 2)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(*_conv_prelu(3, 32, 3), nn.MaxPool2d(3, 2, ceil_mode=True),
                                      *_conv_prelu(32, 64, 3), nn.MaxPool2d(3, 2, ceil_mode=True),
                                      *_conv_prelu(64, 64, 3), nn.MaxPool2d(2, 2, ceil_mode=True),
                                      *_conv_prelu(64, 128, 2))
        self.dense = nn.Sequential(nn.Linear(1152, 256), nn.PReLU(256))  # 3 x 3 x 128 after the convs
        self.prob, self.box, self.landmarks = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x):
        x = self.features(x).permute(0, 3, 2, 1).contiguous()
        x = self.dense(x.view(x.shape[0], -1))
        return self.box(x), self.landmarks(x), torch.softmax(self.prob(x), dim=1)


class BidirectionalLSTM(nn.Module):
    """crnn.pytorch's block: a bidirectional LSTM over (T, B, C), then a Linear on every time step."""

    def __init__(self, cin: int, hidden: int, cout: int):
        super().__init__()
        self.rnn = nn.LSTM(cin, hidden, bidirectional=True)
        self.embedding = nn.Linear(2 * hidden, cout)

    def forward(self, x):
        recurrent, _ = self.rnn(x)
        t, b, h = recurrent.shape
        return self.embedding(recurrent.view(t * b, h)).view(t, b, -1)


class CRNN(nn.Module):
    """(N, 1, 32, W) grayscale in [-1, 1] -> (N, W / 4 + 1, classes) CTC logits (class 0 the blank).

    Channel widths are half of the paper's (64..512 -> 32..256) to keep the file small; the layer sequence, the
    (2, 1) poolings with (0, 1) padding and the final 2x2 valid conv are the paper's.
    """

    def __init__(self, *, classes: int = 37, hidden: int = 128, width: int = 32):
        super().__init__()
        w = [width, 2 * width, 4 * width, 4 * width, 8 * width, 8 * width, 8 * width]

        def conv(i: int, cin: int, bn: bool, kernel: int = 3, pad: int = 1) -> list[nn.Module]:
            layers = [nn.Conv2d(cin, w[i], kernel, 1, pad)]
            return layers + ([nn.BatchNorm2d(w[i])] if bn else []) + [nn.ReLU()]

        self.cnn = nn.Sequential(
            *conv(0, 1, False), nn.MaxPool2d(2, 2),  # 16 x W/2
            *conv(1, w[0], False), nn.MaxPool2d(2, 2),  # 8 x W/4
            *conv(2, w[1], True), *conv(3, w[2], False), nn.MaxPool2d((2, 2), (2, 1), (0, 1)),  # 4 x W/4+1
            *conv(4, w[3], True), *conv(5, w[4], False), nn.MaxPool2d((2, 2), (2, 1), (0, 1)),  # 2 x W/4+2
            *conv(6, w[5], True, kernel=2, pad=0))  # 1 x W/4+1
        self.rnn = nn.Sequential(BidirectionalLSTM(w[6], hidden, hidden), BidirectionalLSTM(hidden, hidden, classes))

    def forward(self, x):
        x = self.cnn(x).squeeze(2).permute(2, 0, 1)  # (B, C, 1, T) -> (T, B, C)
        return self.rnn(x).permute(1, 0, 2)  # (T, B, classes) -> (B, T, classes)
