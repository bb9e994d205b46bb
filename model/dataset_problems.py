"""What can be wrong with a dataset: problem kinds, `DatasetProblem`, and the `DatasetError` listing them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

KINDS = (
    "missing_image",
    "unreadable_image",
    "empty_text",
    "unknown_label",
    "duplicate",
    "bad_row",
    "path_outside_root",
    "no_data",
)
_EXAMPLES_PER_KIND = 3


@dataclass(frozen=True)
class DatasetProblem:
    """One thing wrong with a dataset, e.g. ("missing_image", "train.jsonl:12", "images/a.jpg not found")."""

    kind: str
    location: str
    detail: str

    def __str__(self) -> str:
        return f"{self.location}: {self.detail}" if self.detail else self.location


class DatasetError(ValueError):
    """A dataset failed validation; `.problems` lists every problem and `.counts` counts them per kind."""

    def __init__(self, problems: Sequence[DatasetProblem]) -> None:
        self.problems = list(problems)
        self.counts: dict[str, int] = dict(Counter(p.kind for p in self.problems))
        super().__init__(summarize_problems(self.problems))


def summarize_problems(problems: Sequence[DatasetProblem]) -> str:
    """One line: the first few problems of each kind, with counts (the message of a DatasetError)."""
    parts = []
    for kind, count in Counter(p.kind for p in problems).items():
        examples = [str(p) for p in problems if p.kind == kind][:_EXAMPLES_PER_KIND]
        more = f"; and {count - len(examples)} more" if count > len(examples) else ""
        parts.append(f"{kind} x{count} ({'; '.join(examples)}{more})")
    noun = "problem" if len(problems) == 1 else "problems"
    return f"invalid dataset, {len(problems)} {noun}: " + ", ".join(parts)
