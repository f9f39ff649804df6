"""SASRec: the transformer plugin's SASRec preset and its BCE loss with one negative per target."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import check_served_like_fitted, train_register_and_reload
from recplug._plugin_manager import get_plugin_manager
from recplug._spec import load_spec
from recplug.api import SpecError
from recplug_transformer import SASRec, SASRecOptions, losses


def test_bce_with_one_negative_per_target_is_sasrecs_loss() -> None:
    torch.manual_seed(0)
    features, table, targets = torch.randn(6, 4), torch.randn(10, 4), torch.tensor([1, 2, 3, 4, 5, 6])
    vectors = lambda items: table if items is None else table[items]  # noqa: E731
    torch.manual_seed(1)
    loss = losses.bce_one_negative(vectors, features, targets, n_items=10)
    torch.manual_seed(1)
    negatives = torch.randint(10, targets.shape)
    positive, negative = (features * table[targets]).sum(-1), (features * table[negatives]).sum(-1)
    expected = -F.logsigmoid(positive) - F.logsigmoid(-negative) * (negatives != targets)
    assert torch.allclose(loss, expected)


def test_the_options_build_a_sasrec_shaped_transformer() -> None:
    o = SASRecOptions().transformer()
    assert (o.context_length, o.embedding_dim, o.num_layers, o.num_heads, o.loss) == (200, 50, 2, 1, "bce")
    assert (o.objective, o.join, o.output, o.user_embedding_dim, o.interaction_hidden) == ("all_positions", "last", "tied", 0, [])
    assert SASRec(SASRecOptions(hidden_units=8, num_heads=2)).options.embedding_dim == 8


@pytest.mark.parametrize("loss", ["bce", "sampled_softmax", "softmax"])
def test_sasrec_trains_registers_reloads_and_serves_a_new_history(tmp_path: Path, loss: str) -> None:
    options = f'max_length = 20\nhidden_units = 16\nloss = "{loss}"\nnegatives = 8'
    result, served = train_register_and_reload(tmp_path, "sasrec", options, "epochs = 1\nbatch_size = 32\nlr = 0.001")
    check_served_like_fitted(result.fitted[0].recommender, served)


def test_sasrec_options_are_checked_when_the_spec_is_read(tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text("[dataset.synthetic]\n[recommenders.sasrec]\nhidden_units = 50\nnum_heads = 4\n")
    with pytest.raises(SpecError, match="'num_heads' \\(4\\) must divide 'hidden_units' \\(50\\)"):
        load_spec(spec, get_plugin_manager())
