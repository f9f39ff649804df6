"""BERT4Rec: bidirectional blocks, masked-item training and mask-last inference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import check_served_like_fitted, train_register_and_reload
from recplug._plugin_manager import get_plugin_manager
from recplug._spec import load_spec
from recplug_transformer import BERT4Rec, BERT4RecOptions
from recplug_transformer.modules import MaskedItemModel


def test_every_position_sees_the_whole_sequence_but_no_padding() -> None:
    torch.manual_seed(0)
    model = MaskedItemModel(n_items=20, context=6, dim=8, layers=2, heads=2, dropout=0.0, eps=1e-12).eval()
    items = torch.tensor([[20, 20, 3, 4, 5, 21]])  # two padding tokens, three items, the mask
    later = items.clone()
    later[0, 4] = 9
    first = model.tower(items)[0, 2]
    assert not torch.allclose(first, model.tower(later)[0, 2])  # an item is read in the light of later ones
    other_padding = items.clone()
    other_padding[0, :2] = torch.tensor([20, 20])
    assert torch.allclose(model.tower(items)[0, 2:], model.tower(other_padding)[0, 2:])
    shorter = items[:, 2:]  # the same items without padding: padding changes nothing
    assert torch.allclose(model.tower(items)[0, 2:], model.tower(shorter)[0], atol=1e-5)


def test_training_hides_only_training_items_and_at_least_one_per_chunk() -> None:
    model = BERT4Rec(BERT4RecOptions(max_length=4, hidden_units=8, num_heads=2, mask_probability=0.01))
    model.n_items, model.pad_token = 10, 10
    model.module = MaskedItemModel(10, 4, 8, 1, 2, 0.0, 1e-12)
    seen: list[torch.Tensor] = []
    model.module.tower.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    batch = {"targets": torch.tensor([[10, 1, 2, 3], [4, 5, 6, 7]]),
             "mask": torch.tensor([[False, False, True, True], [True, True, True, True]])}  # fmt: skip
    loss = model.loss(batch)
    assert torch.isfinite(loss)
    hidden = seen[0] == model.module.mask_token
    assert hidden.any(1).all() and not (hidden & ~batch["mask"]).any()


def test_scores_come_from_a_mask_placed_after_the_history() -> None:
    torch.manual_seed(0)
    model = BERT4Rec(BERT4RecOptions(max_length=4, hidden_units=8, num_heads=2))
    model.n_items, model.pad_token = 10, 10
    model.module = MaskedItemModel(10, 4, 8, 1, 2, 0.0, 1e-12)
    histories = torch.tensor([[10, 1, 2, 3, 4], [10, 10, 10, 5, 6]])
    scores = model.score(torch.tensor([0, 1]), histories)
    expected = model.module.logits(model.module.tower(torch.tensor([[2, 3, 4, 11], [10, 5, 6, 11]]))[:, -1])
    assert scores.shape == (2, 10) and torch.allclose(scores, expected, atol=1e-5)


def test_bert4rec_trains_registers_reloads_and_serves_a_new_history(tmp_path: Path) -> None:
    result, served = train_register_and_reload(tmp_path, "bert4rec", "max_length = 20\nhidden_units = 16",
                                               "epochs = 2\nbatch_size = 16\nlr = 0.001")  # fmt: skip
    history = result.fitted[0].recommender.history
    assert len(history) == 2 and history[1]["loss/train"] < history[0]["loss/train"]
    check_served_like_fitted(result.fitted[0].recommender, served)


def test_bert4rec_options_are_checked(tmp_path: Path) -> None:
    from recplug.api import SpecError

    spec = tmp_path / "s.toml"
    spec.write_text("[dataset.synthetic]\n[recommenders.bert4rec]\nmask_probability = 1.5\n")
    with pytest.raises(SpecError, match="mask_probability"):
        load_spec(spec, get_plugin_manager())
