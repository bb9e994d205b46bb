"""Token states of many texts, packed into one tensor: the output of a text encoder's frozen lower layers.

`finetune_layers` trains only a text encoder's top layers; what its embeddings and lower layers make of each
text never changes, so it is computed once per run and kept here, each text only as long as its tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenStates:
    """Texts' token states [L_i, H] packed as ``states`` [sum of L_i, H]: text i is rows
    ``offsets[i]:offsets[i + 1]``."""

    states: torch.Tensor
    offsets: torch.Tensor

    @classmethod
    def pack(cls, per_text: Sequence[torch.Tensor]) -> TokenStates:
        """Pack each text's [L_i, H] states, in order."""
        lengths = torch.tensor([len(t) for t in per_text], dtype=torch.long)
        offsets = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])
        return cls(torch.cat(list(per_text)), offsets.to(per_text[0].device))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def rows(self, index: Sequence[int] | torch.Tensor) -> dict[str, torch.Tensor]:
        """Texts `index` as {"hidden_states": [B, L, H], "attention_mask": [B, L]}, right-padded with zeros to
        the longest of them."""
        rows = torch.as_tensor(index, dtype=torch.long, device=self.offsets.device)
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        positions = torch.arange(max(1, int(lengths.max())), device=rows.device)
        mask = positions < lengths[:, None]
        hidden = self.states[torch.where(mask, starts[:, None] + positions, 0)] * mask[..., None]
        return {"hidden_states": hidden, "attention_mask": mask.long()}
