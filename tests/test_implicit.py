"""ALS and BPR-MF through the implicit library, and how a plugin says a component is not available here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import write_ml1m
from recplug._components import RunContext
from recplug._model_registry import ModelRegistry
from recplug._plugin_manager import PluginManager
from recplug.api import PluginError, hookimpl
from recplug_movielens import MovieLens, MovieLensOptions
from recplug_splits import LeaveOneOut, LeaveOneOutOptions

implicit = pytest.importorskip("implicit", reason="recplug[implicit] is not installed (CI installs it)")
from recplug_implicit import ALS, BPR, ALSOptions, BPROptions  # noqa: E402


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory):
    folder = write_ml1m(tmp_path_factory.mktemp("implicit"), n_users=60, n_movies=40)
    data = MovieLens(MovieLensOptions(data_dir=str(folder), cache=False)).load(RunContext())
    return data, LeaveOneOut(LeaveOneOutOptions()).split(data, RunContext())


def test_als_scores_a_history_through_implicits_recalculated_user(split) -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    data, s = split
    model = ALS(ALSOptions(factors=8, iterations=5, alpha=4.0, regularization=0.1))
    model.fit(s.train, s.validation, RunContext(seed=3))
    reference = AlternatingLeastSquares(factors=8, iterations=5, alpha=4.0, regularization=0.1, random_state=3)
    reference.fit(s.train.user_item_matrix(), show_progress=False)
    reference.item_factors = model.item_factors.numpy()  # the same item vectors; users solved by implicit
    histories = torch.tensor([[data.pad_token, 3, 5, 3], [1, 2, 4, 7]])  # padding and a repeat count once
    rows = np.zeros((2, data.n_items), dtype=np.float32)
    rows[0, [3, 5]], rows[1, [1, 2, 4, 7]] = 1, 1
    from scipy import sparse

    users = reference.recalculate_user([0, 1], sparse.csr_matrix(rows))
    expected = torch.from_numpy(users @ reference.item_factors.T)
    assert torch.allclose(model.score(torch.tensor([-1, -1]), histories), expected, atol=1e-4)


def test_bpr_scores_known_users_with_their_vectors_and_new_users_by_item_bias(split) -> None:
    data, s = split
    model = BPR(BPROptions(factors=8, iterations=5))
    model.fit(s.train, s.validation, RunContext(seed=1))
    assert model.item_factors.shape == (data.n_items, 9) and model.user_factors.shape == (data.n_users, 9)
    scores = model.score(torch.tensor([2, -1]), torch.tensor([[1, 2], [1, 2]]))
    assert torch.allclose(scores[0], model.user_factors[2] @ model.item_factors.T)
    assert torch.allclose(scores[1], model.item_factors[:, -1])


@pytest.mark.parametrize("cls, options", [(ALS, ALSOptions(factors=8, iterations=3)), (BPR, BPROptions(factors=8, iterations=3))])
def test_matrix_factorisation_registers_reloads_and_recommends(split, tmp_path: Path, cls, options) -> None:
    data, s = split
    model = cls(options)
    model.fit(s.train, s.validation, RunContext())
    registry = ModelRegistry(tmp_path / "registry")
    registry.register("mf", model, provenance={"plugin": {"kind": "baseline", "name": cls.__name__.lower(),
                      "distribution": "recplug", "version": "0"}, "options": {}, "training": None},
                      spec={}, data=data, metrics={}, protocol={})  # fmt: skip
    served = registry.load("mf")
    histories, users = torch.tensor([[1, 2, 4]]), torch.tensor([5])
    assert torch.allclose(served.recommender.score(users, histories), model.score(users, histories))
    recommended = served.recommend(history=data.item_ids[[1, 2, 4]].tolist(), k=4)
    assert len(recommended) == 4


def test_a_component_a_plugin_cannot_register_here_is_listed_and_explained() -> None:
    class Fake:
        @staticmethod
        @hookimpl
        def register_components(register) -> None:
            register.unavailable("model", "fancy", "needs fancylib: pip install 'fancy[gpu]'")

    plugins = PluginManager()
    plugins.register_plugin(Fake, "fake")
    assert [(m.kind, m.name, m.plugin) for m in plugins.unavailable.values()] == [("model", "fancy", "fake")]
    with pytest.raises(PluginError, match=r"model 'fancy' \(plugin 'fake'\) is not available here: needs fancylib"):
        plugins.find("fancy", ("model", "baseline"), "recommender")
    with pytest.raises(PluginError, match="not available here"):
        plugins.get("model", "fancy")


def test_without_implicit_als_and_bpr_say_how_to_install_it(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['implicit'] = None; from recplug.cli import main; "
            "sys.exit(main(sys.argv[1:]))")  # fmt: skip
    listed = subprocess.run([sys.executable, "-c", code, "plugins"], capture_output=True, text=True, timeout=120)
    assert "als" in listed.stdout and "NOT AVAILABLE: needs the implicit library: pip install 'recplug[implicit]'" in listed.stdout
    spec = tmp_path / "s.toml"
    spec.write_text('[dataset.synthetic]\n[recommenders.als]\n')
    run = subprocess.run([sys.executable, "-c", code, "run", str(spec)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "recommenders.als: baseline 'als' (plugin 'implicit_mf') is not available here: needs the implicit" in run.stderr
