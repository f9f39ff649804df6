"""Comparisons you can trust: per-case results, bootstrap intervals, paired tests with Holm's correction,
several seeds, ``recplug compare``, the ranx export and the run report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from helpers import TESTKIT_ENV, run_cli, tiny_transformer_spec, to_toml, toy_spec, write_ml1m
from recplug._cases import export_ranx, read_cases
from recplug._model_registry import ModelRegistry
from recplug._plugin_manager import get_plugin_manager
from recplug._runner import run_experiment
from recplug._spec import load_spec
from recplug._statistics import bootstrap_intervals, holm, paired_p_values
from recplug.api import SpecError
from recplug.cli import main


def test_the_bootstrap_interval_covers_a_known_mean_at_its_nominal_rate() -> None:
    """1,000 samples of 400 Bernoulli(0.3) cases: the 95% interval holds 0.3 in 95% of them (within 2.5 points,
    about 3.6 standard errors of a coverage estimated from 1,000 samples)."""
    samples = (np.random.default_rng(7).random((1000, 400)) < 0.3).astype(np.float64)
    intervals = bootstrap_intervals(samples, resamples=1000, confidence=0.95, seed=1)
    coverage = np.mean((intervals[:, 0] <= 0.3) & (0.3 <= intervals[:, 1]))
    assert abs(coverage - 0.95) <= 0.025, coverage
    narrower = bootstrap_intervals(samples[:50], resamples=1000, confidence=0.5, seed=1)
    assert np.all(narrower[:, 1] - narrower[:, 0] < intervals[:50, 1] - intervals[:50, 0])


def test_bootstrap_resamples_are_seeded_and_chunked_without_changing_them() -> None:
    values = np.random.default_rng(0).random((3, 50))
    same = bootstrap_intervals(values, resamples=300, seed=4)
    assert np.array_equal(same, bootstrap_intervals(values, resamples=300, seed=4))
    assert not np.array_equal(same, bootstrap_intervals(values, resamples=300, seed=5))
    import recplug._statistics as statistics

    chunk, statistics._CHUNK = statistics._CHUNK, 50 * 7  # seven resamples per chunk
    try:
        assert np.allclose(same, bootstrap_intervals(values, resamples=300, seed=4))
    finally:
        statistics._CHUNK = chunk
    assert np.isnan(bootstrap_intervals(np.zeros((2, 0)))).all()


def test_paired_p_values_are_scipys() -> None:
    rng = np.random.default_rng(3)
    reference = (rng.random(300) < 0.3).astype(float)
    rows = np.stack([(rng.random(300) < p).astype(float) for p in (0.3, 0.35, 0.45)])
    assert np.allclose(paired_p_values(rows, reference), [stats.ttest_rel(r, reference).pvalue for r in rows])
    assert np.allclose(paired_p_values(rows, reference, "wilcoxon"), [stats.wilcoxon(r - reference).pvalue for r in rows])
    assert paired_p_values(reference[None], reference).tolist() == [1.0]  # a row against itself
    assert paired_p_values((reference + 0.1)[None], reference).tolist() == [0.0]  # a constant shift
    with pytest.raises(ValueError, match="unknown paired test"):
        paired_p_values(rows, reference, "z-test")


def test_holm_adjusts_in_order_and_keeps_monotone() -> None:
    adjusted = holm(np.array([0.01, 0.04, 0.03, np.nan, 0.005]))
    assert np.allclose(adjusted[[0, 1, 2, 4]], [0.03, 0.06, 0.06, 0.02]) and np.isnan(adjusted[3])
    assert holm(np.array([0.5, 0.9])).tolist() == [1.0, 1.0]


@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run on small ML-1M-format data: most-popular (reference) and a tiny transformer with seeds 1 and 2."""
    folder = tmp_path_factory.mktemp("seeded")
    data = write_ml1m(folder / "data", n_users=80)
    spec = tiny_transformer_spec(folder / "spec.toml", data, "seeded", registry=folder / "registry",
                                 model="seeds = [1, 2]", training="epochs = 2\nbatch_size = 64",
                                 evaluation='metrics = ["ndcg", "hit_rate", "mrr", "coverage"]\nks = [5, 10]')  # fmt: skip
    text = spec.read_text().replace("[recommenders.transformer]", '[recommenders.most-popular]\nuse = "popularity"\n'
                                    "[recommenders.transformer]")  # fmt: skip
    spec.write_text(text)
    plugins = get_plugin_manager()
    run_experiment(load_spec(spec, plugins), plugins, run_dir=folder / "run")
    return folder / "run", folder / "registry"


def test_a_run_keeps_every_cases_ranking_and_the_metrics_follow_from_it(seeded_run: tuple[Path, Path]) -> None:
    run, _ = seeded_run
    results = json.loads((run / "results.json").read_text())
    cases = read_cases(run)
    assert [(c.recommender, c.seed) for c in cases] == [("most-popular", 0), ("transformer", 1), ("transformer", 2)]
    for c in cases:
        assert len(c.users) == results["protocols"]["leave_one_out"]["test_cases"] and c.max_k == 10
        hit = c.target_rank < 10
        assert np.array_equal(c.top_items[hit, c.target_rank[hit]], c.targets[hit])  # the rank points at the target
        assert not (c.top_items[~hit] == c.targets[~hit][:, None]).any()  # a miss is nowhere in the list
    transformer = [c for c in cases if c.recommender == "transformer"]
    per_seed = [float(np.mean(c.target_rank < 10)) for c in transformer]
    row = next(r for r in results["rows"] if (r["recommender"], r["metric"], r["k"]) == ("transformer", "hit_rate", 10))
    assert row["per_seed"] == pytest.approx(per_seed) and row["value"] == pytest.approx(np.mean(per_seed))
    assert row["seeds"] == [1, 2] and row["std"] == pytest.approx(np.std(per_seed, ddof=1))


def test_every_per_case_row_has_an_interval_and_the_others_a_holm_adjusted_test(seeded_run: tuple[Path, Path]) -> None:
    run, _ = seeded_run
    results = json.loads((run / "results.json").read_text())
    analysis = results["protocols"]["leave_one_out"]["analysis"]
    assert analysis["reference"] == "most-popular" and "t-test" in analysis["test"]
    per_case = [r for r in results["rows"] if r["metric"] != "coverage"]
    assert all(r["ci"][0] <= r["value"] <= r["ci"][1] for r in per_case)
    assert not any("ci" in r for r in results["rows"] if r["metric"] == "coverage")  # not a mean over cases
    tested = [r for r in per_case if r["recommender"] == "transformer"]
    assert len(tested) == 6 and not any("p_value" in r for r in per_case if r["recommender"] == "most-popular")
    assert np.allclose([r["p_adjusted"] for r in tested], holm(np.array([r["p_value"] for r in tested])))
    assert all(r["significant"] == (r["p_adjusted"] < 0.05) for r in tested)
    table = (run / "results.md").read_text()
    assert "±" in table and "[" in table and "Holm-Bonferroni over the 6 tests" in table
    ndcg10 = next(r for r in tested if (r["metric"], r["k"]) == ("ndcg", 10))
    assert "Difference from most-popular (adjusted p-value)" in table
    assert f"{ndcg10['difference']:+.4f} (p {ndcg10['p_adjusted']:.2g})" in table


def test_every_seed_is_registered_and_the_best_by_validation_is_aliased(seeded_run: tuple[Path, Path]) -> None:
    run, registry_dir = seeded_run
    registry = ModelRegistry(registry_dir)
    entries = [registry.load(f"seeded-transformer:{v}").entry for v in (1, 2)]
    assert [e["seed"] for e in entries] == [1, 2]
    fits = {f["seed"]: f for f in json.loads((run / "results.json").read_text())["fits"] if f["recommender"] == "transformer"}
    best = max((max(e["validation/ndcg@10"] for e in fits[s]["history"]), s) for s in (1, 2))[1]
    assert registry.load("seeded-transformer@best").entry["seed"] == best
    assert [e["epoch"] for e in fits[1]["history"]] == [1, 2]


def test_p_values_and_means_agree_with_ranx_on_the_exported_run(seeded_run: tuple[Path, Path], tmp_path: Path) -> None:
    ranx = pytest.importorskip("ranx", reason="ranx (recplug[dev]) is not installed")
    run, _ = seeded_run
    export_ranx(run, tmp_path)
    qrels = ranx.Qrels.from_file(str(tmp_path / "leave_one_out.qrels"), kind="trec")
    seeds = {"most-popular": 0, "transformer": 1}
    runs = [ranx.Run.from_file(str(tmp_path / f"leave_one_out.{name}.seed-{seed}.run"), kind="trec", name=name)
            for name, seed in seeds.items()]  # fmt: skip
    report = ranx.compare(qrels, runs, metrics=["ndcg@10", "hit_rate@10", "mrr@10"], stat_test="student",
                          make_comparable=True)  # fmt: skip
    cases = {c.recommender: c for c in read_cases(run) if c.seed == seeds[c.recommender]}
    ranked = {name: c.ranked() for name, c in cases.items()}
    ours = {"ndcg@10": lambda r: r.ndcgs(10), "hit_rate@10": lambda r: r.hits(10), "mrr@10": lambda r: r.reciprocal_ranks(10)}
    for metric, per_case in ours.items():
        values = {name: per_case(r).numpy() for name, r in ranked.items()}
        for name in values:
            assert report.results[name][metric] == pytest.approx(values[name].mean(), abs=1e-9)
        expected = report.comparisons[frozenset(["most-popular", "transformer"])][metric]["p_value"]
        assert paired_p_values(values["transformer"][None], values["most-popular"])[0] == pytest.approx(expected, rel=1e-6)


def compare(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``recplug compare ARGS`` in this process: exit status, stdout, stderr."""
    status = main(["compare", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_compare_two_runs_pairs_their_cases_and_refuses_other_data(seeded_run: tuple[Path, Path], tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    run, _ = seeded_run
    status, out, err = compare(capsys, str(run), str(run), "--reference", "B:transformer")
    assert status == 0, err
    assert "| A:transformer | 10 |" in out and "differs from B:transformer" in out
    status, out, _ = compare(capsys, str(run), str(run), "--json")
    a_vs_b = [r for r in json.loads(out)["rows"] if r["recommender"] == "B:most-popular" and "p_value" in r]
    assert a_vs_b and all(r["p_value"] == 1.0 and r["difference"] == 0.0 for r in a_vs_b)  # the same cases twice

    plugins = get_plugin_manager()
    spec = tiny_transformer_spec(tmp_path / "o.toml", write_ml1m(tmp_path / "data", n_users=70), "other",
                                 registry=tmp_path / "registry", training="epochs = 1\nbatch_size = 64")  # fmt: skip
    run_experiment(load_spec(spec, plugins), plugins, run_dir=tmp_path / "other")
    status, _, err = compare(capsys, str(run), str(tmp_path / "other"))
    assert status == 2 and "different data" in err and "Traceback" not in err
    assert "no recommender is labelled 'nope'" in compare(capsys, str(run), str(run), "--reference", "nope")[2]
    assert "not a finished run directory" in compare(capsys, str(run), str(tmp_path / "data"))[2]


def test_compare_refuses_runs_under_other_protocols(seeded_run: tuple[Path, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    run, _ = seeded_run
    other = tmp_path / "other"
    (other / "cases").mkdir(parents=True)
    (other / "spec.json").write_text((run / "spec.json").read_text())
    results = json.loads((run / "results.json").read_text())
    results["protocols"]["leave_one_out"]["min_interactions"] = 5
    (other / "results.json").write_text(json.dumps(results))
    status, _, err = compare(capsys, str(run), str(other))
    assert status == 2 and "different protocols (leave_one_out differ)" in err


def test_the_run_report_renders_its_tables_and_plots_in_headless_chromium(seeded_run: tuple[Path, Path],
                                                                           chromium: str, tmp_path: Path) -> None:  # fmt: skip
    from PIL import Image
    from test_report import screenshot

    run, _ = seeded_run
    page = (run / "results.html").read_text()
    assert page.count('src="data:image/png;base64,') == 5  # hit_rate@k, ndcg@k, two training curves, fit times
    for alt in ("at_k_plot", "curve_plot", "fit_times_plot"):
        assert f'alt="{alt}"' in page
    assert "most-popular" in page and "Holm-Bonferroni" in page
    shot = tmp_path / "report.png"
    screenshot(chromium, run / "results.html", shot)
    image = Image.open(shot).convert("RGB")
    colors = image.getcolors(maxcolors=1_000_000)
    assert len(colors) > 50  # text, table rules and plot lines, not a blank page
    blue = sum(n for n, c in colors if c[2] > 150 and c[0] < 100)  # matplotlib's tab:blue lines and bars
    assert blue > 200


def test_seeds_from_the_spec_are_checked_and_not_inherited(tmp_path: Path) -> None:
    plugins = get_plugin_manager()
    spec = tiny_transformer_spec(tmp_path / "s.toml", tmp_path / "data", "s", evaluation='reference = "transfromer"')
    with pytest.raises(SpecError, match="no recommender is labelled 'transfromer'.*did you mean 'transformer'"):
        load_spec(spec, plugins)
    spec = tiny_transformer_spec(tmp_path / "s.toml", tmp_path / "data", "s", model="seeds = [1, 1]")
    with pytest.raises(SpecError, match="distinct seeds"):
        load_spec(spec, plugins)
    spec.write_text(spec.read_text().replace("seeds = [1, 1]", "seeds = [3, 4]")
                    + '[recommenders.wide]\nextends = "transformer"\nembedding_dim = 32\n')  # fmt: skip
    loaded = load_spec(spec, plugins)
    assert [loaded.seeds_of(r) for r in loaded.recommenders] == [[3, 4], [0]]  # a row's seeds are its own


def test_seeds_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "toy.toml"
    spec.write_text(to_toml(toy_spec(seed=5, registry=tmp_path / "registry")))
    done = run_cli("-q", "run", str(spec), "--seeds", "2", "--out", str(tmp_path / "run"), env=TESTKIT_ENV)
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert rows and all(r["seeds"] == [5, 6] for r in rows)
    assert main(["run", str(spec), "--seeds", "0"]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err


def test_evaluating_a_registered_model_shows_intervals_too(seeded_run: tuple[Path, Path],
                                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    _, registry = seeded_run
    assert main(["-q", "evaluate", "seeded-transformer@best", "--registry", str(registry)]) == 0
    out = capsys.readouterr().out
    assert "95% percentile bootstrap" in out and "differs from" not in out  # one row: intervals, nothing to test
    row = next(line for line in out.splitlines() if line.startswith("| seeded-transformer:") and "| 10 |" in line)
    assert row.count("[") == 3  # ndcg, hit_rate and mrr have intervals; coverage has none
