"""The transformer plugin: shapes, masks, features, losses, and new-user serving through the registry."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import run_cli
from recplug import load_model
from recplug._components import RunContext
from recplug._errors import RecplugError
from recplug._runner import run_experiment
from recplug._spec import parse_spec
from recplug_movielens import MovieLens, MovieLensOptions
from recplug_splits import LeaveOneOut, LeaveOneOutOptions
from recplug_transformer import Transformer, TransformerOptions
from recplug_transformer.gelu import TanhGELU


def small_model(data, **options) -> Transformer:
    model = Transformer(TransformerOptions(**options))
    model.prepare(data)
    return model


def load(folder: Path):
    return MovieLens(MovieLensOptions(data_dir=str(folder))).load(RunContext())


def test_seed_architecture_shapes(ml1m_dir: Path) -> None:
    data = load(ml1m_dir)
    model = small_model(data)
    module = model.module
    assert module.interaction[0].in_features == 5 * (32 + 32)  # the seed's flattened join (320)
    assert module.output_layer.bias is None and module.output_layer.out_features == data.n_items
    assert len(module.movies.blocks) == 4 and module.movies.blocks[0].attn.heads == 4
    assert module.movies.tokens.ids.num_embeddings == data.n_items + 1  # + padding token
    users = torch.tensor([0, 1, -1])  # -1: a user the model never saw (cold start)
    histories = torch.tensor([[data.pad_token] * 3 + [1, 2, 3, 4], [1, 2, 3, 4, 5, 6, 7], [data.pad_token] * 6 + [2]])
    scores = model.score(users, histories)
    assert scores.shape == (3, data.n_items) and torch.isfinite(scores).all()
    top, _ = model.recommend(users, histories, k=10)
    for row, history in zip(top.tolist(), histories.tolist()):
        assert not set(row) & set(history)  # items in the history are never recommended


def test_the_activation_option_picks_the_gelu_of_every_block(ml1m_dir: Path) -> None:
    data = load(ml1m_dir)
    x = torch.linspace(-4, 4, 101)
    for activation, approximate, kind in (("gelu_tanh", "tanh", TanhGELU), ("gelu", "none", torch.nn.GELU)):
        model = small_model(data, activation=activation)
        gelus = [block.mlp[1] for block in model.module.movies.blocks]
        assert all(type(g) is kind for g in gelus)
        torch.testing.assert_close(gelus[0](x), F.gelu(x, approximate=approximate))


def test_overfits_one_batch(ml1m_dir: Path) -> None:
    """The seed's sanity check: one batch memorised, loss near zero, argmax equals the targets."""
    torch.manual_seed(0)
    data = load(ml1m_dir)
    split = LeaveOneOut(LeaveOneOutOptions()).split(data, RunContext())
    model = small_model(data, embedding_dropout=0.0, attention_dropout=0.0, residual_dropout=0.0,
                        interaction_hidden=[64])  # fmt: skip
    batch = model.training_examples(split.train).batch(np.arange(64))
    optimizer = torch.optim.Adam(model.module.parameters(), lr=3e-3)
    for _ in range(300):
        optimizer.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        optimizer.step()
    model.module.eval()
    logits = model.module(batch["users"], batch["items"])
    assert F.cross_entropy(logits, batch["targets"]).item() < 0.05
    assert torch.equal(logits.argmax(1), batch["targets"])


def test_padding_does_not_change_the_real_positions(ml1m_dir: Path) -> None:
    data = load(ml1m_dir)
    model = small_model(data, join="last")
    model.module.eval()
    a = model.module.movies(torch.tensor([[data.pad_token, data.pad_token, 3, 4, 5]]))
    b = model.module.movies(torch.tensor([[data.pad_token, data.pad_token, 3, 4, 5]]))
    assert torch.allclose(a, b) and torch.isfinite(a).all()


def _covered_targets(chunks, length: int) -> tuple[np.ndarray, dict]:
    batch = chunks.batch(np.arange(len(chunks)))
    covered = np.concatenate([
        (chunks.ends[i] - length + 1 + np.flatnonzero(batch["mask"][i].numpy())) for i in range(len(chunks))
    ])  # fmt: skip
    return covered, batch


def test_all_position_chunks_cover_every_training_target_once(ml1m_dir: Path) -> None:
    from recplug._examples import SequenceChunks
    from recplug_splits import SeedWindowOptions, SeedWindows

    data = load(ml1m_dir)
    for split in (LeaveOneOut(LeaveOneOutOptions()).split(data, RunContext()),
                  SeedWindows(SeedWindowOptions(test_fraction=0.2)).split(data, RunContext(seed=1))):  # fmt: skip
        chunks = SequenceChunks(split.train, length=4)
        covered, batch = _covered_targets(chunks, 4)
        assert np.sort(covered).tolist() == split.train.target_positions.tolist()
        # the target at each masked position is the item that follows the input there
        targets = batch["targets"][batch["mask"]].numpy()
        assert targets.tolist() == data.items[covered].tolist()


def test_shifted_chunks_move_every_epoch_and_still_cover_each_target_once(ml1m_dir: Path) -> None:
    from recplug._examples import SequenceChunks

    data = load(ml1m_dir)
    split = LeaveOneOut(LeaveOneOutOptions()).split(data, RunContext())
    fixed = SequenceChunks(split.train, length=4)
    chunks = SequenceChunks(split.train, length=4, shift=True)
    assert fixed.ends.tolist() == chunks.ends.tolist()  # before the first epoch: where the fixed chunks are
    layouts = []
    for epoch in range(3):
        chunks.begin_epoch(np.random.default_rng([0, epoch, 1]))
        assert len(chunks) == len(fixed)  # the same number of chunks: an epoch costs the same
        covered, batch = _covered_targets(chunks, 4)
        assert np.sort(covered).tolist() == split.train.target_positions.tolist()
        assert batch["targets"][batch["mask"]].numpy().tolist() == data.items[covered].tolist()
        top = np.r_[True, chunks.users[1:] != chunks.users[:-1]]  # each user's first chunk is its top one
        assert chunks.ends[top].tolist() == fixed.ends[top].tolist()  # the top chunk still ends at the last target
        layouts.append(chunks.ends.tolist())
    assert layouts[0] != layouts[1] != layouts[2]
    fixed.begin_epoch(np.random.default_rng(0))
    assert fixed.ends.tolist() == SequenceChunks(split.train, length=4).ends.tolist()  # no shift: never moves


def test_all_positions_objective_trains(ml1m_dir: Path) -> None:
    data = load(ml1m_dir)
    split = LeaveOneOut(LeaveOneOutOptions()).split(data, RunContext())
    model = small_model(data, objective="all_positions", join="last", context_length=8, embedding_dim=16,
                        num_layers=1, num_heads=2)  # fmt: skip
    batch = model.training_examples(split.train).batch(np.arange(16))
    optimizer = torch.optim.Adam(model.module.parameters(), lr=1e-2)
    first = model.loss(batch).item()
    for _ in range(50):
        optimizer.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 2
    assert model.score(torch.tensor([0]), torch.tensor([[1, 2, 3]])).shape == (1, data.n_items)


def test_tied_output_and_side_features(ml1m_dir: Path) -> None:
    data = load(ml1m_dir)
    model = small_model(data, objective="all_positions", join="last", output="tied", embedding_dim=16, num_heads=2,
                        num_layers=1, user_embedding_dim=8, user_ids=False, user_features=["gender", "age", "occupation"],
                        item_features=["genres", "year"], interaction_hidden=[32])  # fmt: skip
    module = model.module
    assert module.output_layer is None and module.interaction[-1].out_features == 16
    genres, years = module.item_embedding.feature_0, module.item_embedding.feature_1
    assert genres.shape[0] == data.n_items + 1 and torch.allclose(genres[: data.n_items].sum(1), torch.ones(data.n_items))
    assert years.dtype == torch.int64 and int(years[-1]) == 0 and int(years[:-1].min()) >= 1  # 0: padding
    assert module.users.ids is None and len(module.users.features) == 3
    scores = model.score(torch.tensor([0, -1]), torch.tensor([[1, 2, 3], [data.pad_token, 2, 3]]))
    assert scores.shape == (2, data.n_items)
    split = LeaveOneOut(LeaveOneOutOptions()).split(data, RunContext())
    batch = model.training_examples(split.train).batch(np.arange(8))
    model.loss(batch).backward()
    assert module.item_embedding.features[0].weight.grad is not None  # the features are learnt
    # a reloaded model rebuilds the feature tables from the vocabulary's metadata
    clone = Transformer(model.options)
    clone.load_state_dict(model.state_dict(), data)
    assert torch.equal(clone.score(torch.tensor([0]), torch.tensor([[1, 2, 3]])), model.score(torch.tensor([0]), torch.tensor([[1, 2, 3]])))


def test_skip_seen_leaves_window_items_out_of_the_softmax(ml1m_dir: Path) -> None:
    from recplug_transformer import _seen_before

    # 5 is the padding token; every position is trained; a position's own target is never excluded
    items, targets = torch.tensor([[5, 1, 5, 2]]), torch.tensor([1, 3, 1, 0])
    rows, seen = _seen_before(items, torch.ones(1, 4, dtype=torch.bool), targets, n_items=5)
    assert sorted(zip(rows.tolist(), seen.tolist())) == [(1, 1), (3, 1), (3, 2)]
    data = load(ml1m_dir)
    split = LeaveOneOut(LeaveOneOutOptions()).split(data, RunContext())
    for objective, join in (("window", "flatten"), ("all_positions", "last")):
        torch.manual_seed(0)
        plain = small_model(data, objective=objective, join=join, embedding_dropout=0.0, attention_dropout=0.0,
                            residual_dropout=0.0)  # fmt: skip
        skipping = Transformer(attrs.evolve(plain.options, skip_seen=True, loss_skips_seen=True))
        skipping.prepare(data)
        skipping.module.load_state_dict(plain.module.state_dict())
        batch = plain.training_examples(split.train).batch(np.arange(32))
        assert skipping.loss(batch).item() < plain.loss(batch).item()  # less competition in the softmax
        scores = skipping.score(torch.tensor([0]), torch.tensor([[1, 2, 3]]))
        assert torch.isinf(scores[0, [1, 2, 3]]).all() and torch.isfinite(scores[0, 4])


def test_seen_pairs_match_the_dense_mask_on_random_windows() -> None:
    """The (row, item) pairs equal a dense definition: item i is excluded at trained position (b, t) when it is
    among items[b, :t + 1] and is not that position's target."""
    from recplug_transformer import _seen_before

    generator = torch.Generator().manual_seed(0)
    n_items, batch, length = 30, 6, 12
    items = torch.randint(n_items + 1, (batch, length), generator=generator)  # n_items: padding
    mask = torch.rand(batch, length, generator=generator) < 0.7
    targets = torch.randint(n_items, (int(mask.sum()),), generator=generator)
    dense = torch.zeros(batch, length, n_items + 1, dtype=torch.bool)
    for b in range(batch):
        for t in range(length):
            dense[b, t, items[b, : t + 1]] = True
    expected = dense[mask][:, :n_items]
    expected[torch.arange(len(targets)), targets] = False
    rows, seen = _seen_before(items, mask, targets, n_items)
    got = torch.zeros_like(expected)
    got[rows, seen] = True
    assert torch.equal(got, expected)


def registry_spec_data(data_dir: Path, registry_dir: Path) -> dict:
    return {
        "experiment": {"name": "tiny", "seed": 2, "device": "cpu", "registry": str(registry_dir)},
        "dataset": {"movielens": {"data_dir": str(data_dir)}},
        "recommenders": {},
    }


def test_feature_only_user_tower_serves_a_brand_new_user(ml1m_dir: Path, tmp_path: Path, plugins) -> None:
    """A user tower built from gender/age/occupation scores a new user from those features alone."""
    data = registry_spec_data(ml1m_dir, tmp_path / "registry")
    data["recommenders"] = {"transformer": {
        "embedding_dim": 16, "num_layers": 1, "num_heads": 2, "user_embedding_dim": 8, "user_ids": False,
        "user_features": ["gender", "age", "occupation"], "training": {"epochs": 1, "batch_size": 128},
    }}  # fmt: skip
    run_experiment(parse_spec(data, plugins), plugins, run_dir=tmp_path / "run")
    served = load_model("tiny-transformer", registry=tmp_path / "registry")
    known = int(served.vocab.user_ids[3])
    profile = served.vocab.user_info.record(3)
    features = {"gender": profile["gender"], "age": int(profile["age"]), "occupation": int(profile["occupation"])}
    history = served.history(known)
    as_known = served.recommend(user_id=known, k=10)
    as_new = served.recommend(history=history, user_features=features, k=10)
    assert [r["item_id"] for r in as_new] == [r["item_id"] for r in as_known]  # same features, same history
    other = {**features, "gender": "M" if features["gender"] == "F" else "F"}
    scores_other = [r["score"] for r in served.recommend(history=history, user_features=other, k=10)]
    assert scores_other != [r["score"] for r in as_new]  # the features matter
    with pytest.raises(RecplugError, match="unknown age value"):
        served.recommend(history=history, user_features={**features, "age": 7})
    with pytest.raises(RecplugError, match="needs the user feature"):
        served.recommend(history=history, user_features={"gender": "F"})
    ok = run_cli("recommend", "tiny-transformer", "--registry", str(tmp_path / "registry"), "--format", "json",
                 "--history", ",".join(map(str, history)), *[f"--user-feature={k}={v}" for k, v in features.items()])  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert [r["item_id"] for r in json.loads(ok.stdout)["recommendations"]] == [r["item_id"] for r in as_known]
    bad = run_cli("recommend", "tiny-transformer", "--registry", str(tmp_path / "registry"), "--history", "1",
                  "--user-feature", "gender")  # fmt: skip
    assert bad.returncode == 2 and "--user-feature takes NAME=VALUE" in bad.stderr and "Traceback" not in bad.stderr


def test_inference_trims_padding_and_computes_the_last_block_for_the_last_position_alone(ml1m_dir: Path) -> None:
    """Scoring (join 'last') drops left padding no row needs and runs the last block for the last position only;
    the scores are those of the full, padded pass over every position."""
    data = load(ml1m_dir)
    torch.manual_seed(0)
    model = small_model(data, context_length=12, embedding_dim=16, num_heads=2, num_layers=2, join="last",
                        objective="all_positions", output="tied", user_embedding_dim=8, interaction_hidden=[])  # fmt: skip
    model.module.eval()
    pad = data.pad_token
    histories = torch.tensor([[pad] * 7 + [1, 2, 3], [pad] * 9 + [4], [pad] * 5 + [5, 6, 7, 8, 9]])
    users = torch.tensor([0, 1, -1])
    padded = F.pad(histories, (12 - histories.shape[1], 0), value=pad)
    with torch.no_grad():
        full = model.module.output(model.module.position_features(users, padded)[:, -1])  # every position, context 12
    assert model.module.movies(histories[:, -5:], last_only=True).shape[1] == 1
    assert torch.allclose(model.score(users, histories), full, atol=1e-5)


def test_serving_known_users_from_encoded_vectors_gives_the_full_pass(ml1m_dir: Path) -> None:
    """``recplug serve`` encodes every known user once and answers with a decode: the same top-k as a forward pass
    over the recorded history, for known users, a new history and an excluded item alike."""
    from recplug._model_registry import ServedModel

    data = load(ml1m_dir)
    torch.manual_seed(0)
    model = small_model(data, context_length=8, embedding_dim=16, num_heads=2, num_layers=2, join="last",
                        objective="all_positions", output="tied", user_embedding_dim=8, interaction_hidden=[])  # fmt: skip
    model.module.eval()
    assert model.encodes
    served = ServedModel("m:1", {}, model, data)
    users = [0, 3, 5, -1]
    histories = [None, None, [1, 2, 3], [4, 5]]
    exclude = [[], [7], [], [9]]
    full = served.recommend_tokens(users, histories, 10, exclude)
    served.encode_known_users(batch_size=7)
    assert served.user_vectors is not None and served.user_vectors.shape == (data.n_users, 16)
    cached = served.recommend_tokens(users, histories, 10, exclude)
    assert torch.equal(full[0], cached[0]) and torch.allclose(full[1], cached[1], atol=1e-5)
    assert 7 not in cached[0][1].tolist() and not set(cached[0][2].tolist()) & {1, 2, 3}


def test_shifted_chunks_train_reproducibly_and_resume_to_the_same_result(ml1m_dir: Path, tmp_path: Path,
                                                                          plugins) -> None:  # fmt: skip
    """The trainer moves the chunks before every epoch from the run's seed, so a resumed run moves them as the
    uninterrupted one did; and the moved chunks are what it trains on (the losses differ from fixed chunks)."""

    def fit(name: str, epochs: int, shifted: bool = True, resume: bool = False):
        data = registry_spec_data(ml1m_dir, tmp_path / "registry")
        data["experiment"]["register"] = False
        data["splits"] = {"leave_one_out": {}}
        data["recommenders"] = {"transformer": {
            "objective": "all_positions", "join": "last", "context_length": 4, "embedding_dim": 16, "num_layers": 1,
            "num_heads": 2, "user_embedding_dim": 0, "interaction_hidden": [], "shifted_chunks": shifted,
            "training": {"epochs": epochs, "batch_size": 32, "monitor": "ndcg@10"},
        }}  # fmt: skip
        result = run_experiment(parse_spec(data, plugins), plugins, run_dir=tmp_path / name, resume=resume)
        return [epoch["loss/train"] for epoch in result.fitted[-1].recommender.history]

    full = fit("full", 3)
    fit("part", 1)
    assert fit("part", 3, resume=True) == full
    assert fit("fixed", 3, shifted=False)[1:] != full[1:]
    with pytest.raises(ValueError, match="'shifted_chunks' needs objective = 'all_positions'"):
        TransformerOptions(shifted_chunks=True)
