"""Common behaviour of image and text encoders: output width, weight identity, freezing and fine-tuning."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from model.config import FINETUNE_MODES
from model.encoders.token_states import TokenStates

# What one encoder can do; the model's "text" mode gives each encoder one of these.
ENCODER_FINETUNE_MODES = tuple(mode for mode in FINETUNE_MODES if mode != "text")


class Encoder(nn.Module):
    """An encoder mapping a batch of one modality to features [B, out_dim].

    Pretrained encoders start frozen; ``set_finetune`` unfreezes all of them or only ``last_blocks()``.
    Encoders trained from scratch are always trainable.
    """

    def __init__(self, name: str, out_dim: int, pretrained: bool) -> None:
        super().__init__()
        self.name = name
        self.out_dim = out_dim
        self.pretrained = pretrained
        self.finetune = "all"

    @property
    def identity(self) -> str:
        """Encoder name + a hash of its current weights: equal identities give equal features.

        Hashes every tensor (~0.1 s for MiniLM), so callers should read it once per run.
        """
        digest = hashlib.sha256()
        for key, tensor in sorted(self.state_dict().items()):
            digest.update(key.encode())
            digest.update(str(tensor.dtype).encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return f"{self.name}@{digest.hexdigest()[:16]}"

    @property
    def frozen(self) -> bool:
        """True when no weight is trained, so features can be computed once and cached."""
        return not any(p.requires_grad for p in self.parameters())

    def last_blocks(self) -> Sequence[nn.Module]:
        """The modules unfrozen by ``set_finetune("last")``."""
        raise NotImplementedError(f"{self.name} has no pretrained blocks")

    def set_finetune(self, mode: str) -> None:
        """Choose which pretrained weights train: "none", the "last" blocks, or "all"."""
        if mode not in ENCODER_FINETUNE_MODES:
            raise ValueError(f"finetune: must be one of {', '.join(ENCODER_FINETUNE_MODES)}; got {mode!r}")
        if not self.pretrained:
            mode = "all"
        self.finetune = mode
        self.requires_grad_(mode == "all")
        if mode == "last":
            for block in self.last_blocks():
                block.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> Encoder:
        """Follow ``mode``, except that frozen encoders and pretrained batch-norm statistics stay in eval."""
        super().train(mode and not self.frozen)
        if self.pretrained and self.training:
            # A few hundred images would only corrupt ImageNet running statistics.
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


class ImageEncoder(Encoder):
    """Encoder of normalised pixels [B, 3, H, W]."""


class TextEncoder(Encoder):
    """Encoder of tokenized texts; ``tokenize`` turns raw strings into its input tensors.

    ``train_top_layers`` trains only the top transformer layers of an encoder that has them; the encoder
    then also takes the token states of its frozen part (``frozen_states``) in place of tokens.
    """

    trained_layers = 0  # 0: what ``set_finetune`` chose; n: only the top n transformer layers train

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Normalise and tokenize raw texts into a dict of [B, L] tensors."""
        raise NotImplementedError

    def set_finetune(self, mode: str) -> None:
        """As `Encoder.set_finetune`; it also ends ``train_top_layers``."""
        self.trained_layers = 0
        super().set_finetune(mode)

    def train_top_layers(self, layers: int) -> None:
        """Train only the top `layers` transformer layers; the embeddings and the layers below freeze.

        Encoders without pretrained transformer layers train whole, as every encoder trained from
        scratch does (`Encoder.set_finetune`).
        """

    def frozen_states(self, inputs: Mapping[str, torch.Tensor]) -> TokenStates:
        """The token states of `tokenize` output after the frozen embeddings and layers."""
        raise NotImplementedError(f"{self.name} has no frozen layers")
