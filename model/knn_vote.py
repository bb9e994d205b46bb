"""A vote of the nearest training rows, mixed into the classifier's probabilities (ModelConfig.knn_weight).

After training, the fusion head's last hidden vectors (the input of its output layer, L2-normalised) of
the rows the model was fitted on are stored with their labels. At prediction a row's `neighbours` nearest
stored vectors by cosine vote for their labels with weight exp(cos / temperature); the vote, normalised,
is mixed into the model's probabilities: (1 - weight) x p_model + weight x p_vote. Session 27 screened this
on cross-validation of MVSA-Single (docs/QUALITY.md). Written with MatMul, TopK and Gather only, so that it
exports to ONNX; an empty store (before training ends, or an older checkpoint) leaves the probabilities as
they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KnnVote(nn.Module):
    """The stored vectors and labels of the training rows, and the vote over them."""

    keys: torch.Tensor  # [N, H], L2-normalised
    key_labels: torch.Tensor  # [N, C], one-hot

    def __init__(self, labels: int, weight: float, neighbours: int, temperature: float) -> None:
        super().__init__()
        self.weight, self.neighbours, self.temperature = weight, neighbours, temperature
        self.register_buffer("keys", torch.zeros(0, 0))
        self.register_buffer("key_labels", torch.zeros(0, labels))

    @property
    def filled(self) -> bool:
        """Whether a store is there to vote."""
        return self.keys.shape[0] > 0

    def fill(self, vectors: torch.Tensor, labels: torch.Tensor) -> None:
        """Store the training rows' hidden vectors [N, H] and label indices [N]."""
        if len(vectors) != len(labels) or len(vectors) == 0:
            raise ValueError(f"knn: need one label per stored vector, got {len(vectors)} and {len(labels)}")
        self.keys = F.normalize(vectors.detach().float(), dim=-1)
        self.key_labels = F.one_hot(labels.long(), self.key_labels.shape[1]).float().to(self.keys.device)

    def resize_for(self, rows: int, dim: int) -> None:
        """Empty buffers of a stored shape, so that a checkpoint's store loads into them."""
        device = self.keys.device
        self.keys = torch.zeros(rows, dim, device=device)
        self.key_labels = torch.zeros(rows, self.key_labels.shape[1], device=device)

    def vote(self, hidden: torch.Tensor) -> torch.Tensor:
        """The nearest stored rows' label distribution [B, C] for hidden vectors [B, H]."""
        similarity = F.normalize(hidden.float(), dim=-1) @ self.keys.T
        top = similarity.topk(min(self.neighbours, self.keys.shape[0]), dim=-1)
        weights = (top.values / self.temperature).exp()
        votes = (weights.unsqueeze(-1) * self.key_labels[top.indices]).sum(dim=1)
        return votes / votes.sum(dim=-1, keepdim=True)

    def forward(self, hidden: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
        """The model's probabilities [B, C] with the vote mixed in (unchanged without a store)."""
        if not self.filled:
            return probabilities
        return (1 - self.weight) * probabilities.float() + self.weight * self.vote(hidden)
