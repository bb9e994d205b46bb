"""The `--set KEY=VALUE` overrides that bench.quality and bench.recipe_compare read recipes from."""

from __future__ import annotations

from bench.quality import parse_overrides


def test_values_are_json_where_they_parse_and_strings_otherwise() -> None:
    model_kw, train_kw = parse_overrides(
        [
            *("m.fusion=sum", "m.hidden_dim=512", "m.image_mean=[0.5,0.5,0.5]"),
            *("finetune=text", "lr=1e-3", "class_weighted=true", "metric=macro_f1"),
        ]
    )
    assert model_kw == {"fusion": "sum", "hidden_dim": 512, "image_mean": [0.5, 0.5, 0.5]}
    # "text" and "true" start alike: only the second is JSON.
    assert train_kw == {"finetune": "text", "lr": 0.001, "class_weighted": True, "metric": "macro_f1"}
