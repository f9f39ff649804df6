"""The ``recplug`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from . import _distributed as distributed
from ._errors import RecplugError, SpecError
from ._version import __version__

if TYPE_CHECKING:
    from importlib.abc import Traversable

EPILOG_RUN = """\
examples:
  recplug run examples/ml1m.toml
  recplug run examples/ml1m.toml --set recommenders.transformer.training.epochs=1 --out runs/quick
  recplug run --resume runs/ml1m-20261128-101500      continue an interrupted run from its checkpoints

--set takes KEY.PATH=VALUE with the value in TOML syntax (3, 0.1, true, "text", [3, 5]);
it is validated exactly like the file.
"""


EPILOG_TUNE = """\
examples:
  recplug tune examples/ml1m-loo-tune.toml --timeout 80
  recplug tune examples/ml1m-loo-tune.toml --jobs 2 --trials 30
  recplug tune --resume runs/ml1m-loo-tune-tune-20261129-101500      continue (or join) a search

The [tune] table:
  [tune]
  trials = 40
  metric = "ndcg@10"                       # always on validation cases
  [tune.space."recommenders.transformer"]
  embedding_dim = { choice = [32, 64, 128] }
  "training.lr" = { log_uniform = [1e-4, 1e-2] }
  residual_dropout = { uniform = [0.0, 0.5] }
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recplug",
        description="Plugin-based recommender experiments: a TOML spec in, a ranking-metrics table and "
        "registered models out.",
        epilog="Run 'recplug COMMAND --help' for each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"recplug {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only print results and errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run an experiment spec: load, split, fit, evaluate, print the table",
        description="Run the experiment described by a TOML spec. Writes a run directory with the resolved "
        "spec, results.json, results.md, tensorboard logs and checkpoints.",
        epilog=EPILOG_RUN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("spec", nargs="?", help="path to the experiment spec (TOML)")
    run.add_argument("--out", metavar="DIR", help="run directory (default: <output_dir>/<name>-<timestamp>)")
    run.add_argument("--set", dest="overrides", metavar="KEY.PATH=VALUE", action="append", default=[],
                     help="override a spec value (repeatable)")
    run.add_argument("--resume", metavar="RUN_DIR", help="resume an interrupted run from its directory")
    run.add_argument("--seeds", type=int, metavar="N",
                     help="train every recommender with N seeds (experiment.seed, +1, ...): tables show the mean and "
                     "standard deviation over seeds")
    run.add_argument("--overwrite", action="store_true",
                     help="let --out name a folder that already holds a run (its files are replaced)")
    run.set_defaults(handler=cmd_run)

    plugins = commands.add_parser(
        "plugins", help="list registered datasets, splitters, models, baselines and metrics",
        description="List every registered component with its providing distribution and version.",
    )
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(handler=cmd_plugins)

    models = commands.add_parser(
        "models", help="list, inspect, alias and delete registered models",
        description="The model registry ($RECPLUG_REGISTRY or ~/.local/share/recplug/registry). "
        "Refer to a model as NAME (latest version), NAME:VERSION or NAME@ALIAS.",
    )
    models.add_argument("--registry", metavar="DIR", help="registry folder (default: $RECPLUG_REGISTRY or the user data dir)")
    actions = models.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every version: name, version, aliases, created, headline metrics")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    show = actions.add_parser("show", help="a model card of one version (--json: everything recorded)")
    show.add_argument("ref", metavar="NAME[:VERSION|@ALIAS]")
    show.add_argument("--json", action="store_true", help="the whole registry entry as JSON")
    alias = actions.add_parser("alias", help="point an alias (e.g. production) at a version")
    alias.add_argument("ref", metavar="NAME:VERSION")
    alias.add_argument("alias", metavar="ALIAS")
    delete = actions.add_parser("delete", help="delete one version")
    delete.add_argument("ref", metavar="NAME:VERSION")
    models.set_defaults(handler=cmd_models)

    recommend = commands.add_parser(
        "recommend", help="top-k recommendations from a registered model",
        description="Recommend for a known user (--user, using their recorded history) or for an ad-hoc history "
        "of raw item ids (--history; a new user: cold start, the model sees no user identity).",
        epilog="examples:\n  recplug recommend ml1m-transformer@production --user 42 -k 10\n"
        "  recplug recommend ml1m-transformer --history 1193,661,914 --format json\n"
        "  recplug recommend ml1m-loo --history 1193,661 --user-feature gender=F --user-feature age=25\n"
        "  recplug recommend ml1m-transformer --user 42 --report user42.html --posters posters/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    recommend.add_argument("ref", metavar="NAME[:VERSION|@ALIAS]")
    recommend.add_argument("--user", help="raw user id (e.g. a MovieLens UserID, or a text id)")
    recommend.add_argument("--all-users", action="store_true",
                           help="every known user's top-k into --out (a .csv, or .parquet with recplug[parquet])")
    recommend.add_argument("--out", metavar="FILE", help="with --all-users: where to write (.csv or .parquet)")
    recommend.add_argument("--history", help="comma-separated raw item ids, oldest first")
    recommend.add_argument(
        "--user-feature", action="append", default=[], metavar="NAME=VALUE",
        help="a new user's feature (with --history), e.g. gender=F, age=25, occupation=4 (repeatable)",
    )
    recommend.add_argument("-k", type=int, default=10, help="how many items (default 10)")
    recommend.add_argument("--format", choices=["table", "json"], default="table")
    recommend.add_argument("--report", metavar="FILE.html", help="also write an HTML page of history and recommendations")
    recommend.add_argument("--posters", metavar="DIR", help="folder of posters named <item_id>.jpg/.png for the report")
    recommend.add_argument("--registry", metavar="DIR", help="registry folder")
    recommend.set_defaults(handler=cmd_recommend)

    evaluate = commands.add_parser(
        "evaluate", help="evaluate a registered model under a protocol (on the data its entry records)",
        description="Load a registered model and the dataset of its recorded spec, split it with the named "
        "protocol and print the metrics table. Useful to measure one model under several protocols.",
    )
    evaluate.add_argument("ref", metavar="NAME[:VERSION|@ALIAS]")
    evaluate.add_argument("--split", default="leave_one_out", help="splitter plugin (default: leave_one_out)")
    evaluate.add_argument("--set", dest="overrides", metavar="KEY.PATH=VALUE", action="append", default=[],
                          help="override the recorded spec (e.g. dataset.movielens.data_dir=...)")
    evaluate.add_argument("--registry", metavar="DIR", help="registry folder")
    evaluate.set_defaults(handler=cmd_evaluate)

    compare = commands.add_parser(
        "compare", help="paired comparison of two runs' recommenders: intervals and significance in one table",
        description="Put the recommenders of two run directories in one table, test every row against a "
        "reference case by case (run A's test and level, Holm-adjusted) and print it. Refused when the runs "
        "measured different data or protocols.",
    )
    compare.add_argument("run_a", metavar="RUN_A")
    compare.add_argument("run_b", metavar="RUN_B")
    compare.add_argument("--reference", metavar="LABEL", help="the row every other is tested against (default: "
                         "run A's first recommender); a label both runs have is written RUN_DIR_NAME:LABEL")
    compare.add_argument("--json", action="store_true", help="the analysed results document as JSON")
    compare.set_defaults(handler=cmd_compare)

    export = commands.add_parser(
        "export-ranx", help="write a run's per-case results as TREC run and qrels files (ranx, trec_eval)",
        description="Write <split>.qrels and <split>.<recommender>.seed-<seed>.run from a run directory's "
        "per-case results; ranx.Qrels.from_file and ranx.Run.from_file read them (kind='trec').",
    )
    export.add_argument("run", metavar="RUN_DIR")
    export.add_argument("--out", metavar="DIR", help="folder to write into (default: RUN_DIR/ranx)")
    export.set_defaults(handler=cmd_export_ranx)

    tune = commands.add_parser(
        "tune", help="search hyper-parameters on validation (Optuna), then test and register the best once",
        description="Run an Optuna study over the spec's [tune] table: every trial is scored on the validation "
        "cases and pruned on its per-epoch validation metric; the best configuration is trained once more, "
        "evaluated once on the test cases and registered with its study. Needs recplug[tune].",
        epilog=EPILOG_TUNE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tune.add_argument("spec", nargs="?", help="a spec with a [tune] table")
    tune.add_argument("--trials", type=int, metavar="N", help="trials to finish, all processes together (default: tune.trials)")
    tune.add_argument("--jobs", type=int, default=1, metavar="J", help="processes on this machine working on the study")
    tune.add_argument("--timeout", type=float, metavar="MIN", help="start no new trial after MIN minutes")
    tune.add_argument("--storage", metavar="URL", help="study database (default: sqlite in the tune directory); "
                      "any SQLAlchemy URL, so processes on several machines share one study")
    tune.add_argument("--out", metavar="DIR", help="tune directory (default: <output_dir>/<name>-tune-<timestamp>)")
    tune.add_argument("--resume", metavar="DIR", help="continue the search in a tune directory (or join it)")
    tune.add_argument("--no-final", action="store_true",
                      help="only run trials: no final training, test evaluation or registration")
    tune.set_defaults(handler=cmd_tune)

    serve = commands.add_parser(
        "serve", help="serve a registered model over HTTP (JSON API, micro-batched); needs recplug[serve]",
        description="Serve a registered model: POST /recommend (and /recommend/batch), GET /models, "
        "/models/{name}, /health, /ready; OpenAPI at /openapi.json and /docs. Requests arriving together are "
        "scored in one forward pass. Serving NAME@ALIAS (or NAME) follows the alias: when it moves, the new "
        "version answers without dropping requests. SIGTERM or Ctrl-C finishes requests in flight, then exits.",
        epilog="examples:\n  recplug serve ml1m-loo-fast-transformer@production\n"
        "  curl -s localhost:8000/recommend -d '{\"user_id\": 42, \"k\": 5}'\n"
        "  curl -s localhost:8000/recommend -d '{\"history\": [1193, 661, 914]}'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("ref", metavar="NAME[:VERSION|@ALIAS]")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="server processes, each with the model (default 1)")
    serve.add_argument("--batch-window-ms", type=float, default=2.0,
                       help="how long a request waits for others to share its forward pass (default 2)")
    serve.add_argument("--max-batch", type=int, default=256, help="requests per forward pass at most (default 256)")
    serve.add_argument("--poll-seconds", type=float, default=2.0,
                       help="how often a served alias is checked for a move (default 2; 0: never)")
    serve.add_argument("--threads", type=int, help="torch threads for scoring (default: all cores but one)")
    serve.add_argument("--registry", metavar="DIR", help="registry folder")
    serve.set_defaults(handler=cmd_serve)

    data = commands.add_parser(
        "data", help="describe a spec's dataset and its splits before training anything",
        description="Inspect the data a spec reads: 'describe' prints its size, density, sequence lengths, time "
        "span, repeat consumption and cleaning, and for each split its sizes, cold start and how many test cases "
        "happen before the latest training interaction.",
    )
    data_actions = data.add_subparsers(dest="action", metavar="ACTION", required=True)
    describe = data_actions.add_parser("describe", help="statistics of the dataset and of each split")
    describe.add_argument("spec", help="path to the experiment spec (TOML)")
    describe.add_argument("--set", dest="overrides", metavar="KEY.PATH=VALUE", action="append", default=[],
                          help="override a spec value (repeatable)")
    describe.add_argument("--format", choices=["text", "json"], default="text")
    data.set_defaults(handler=cmd_data)

    examples = commands.add_parser(
        "examples", help="list the example specs installed with recplug, or copy one out",
        description="The example specs ship with recplug: list them, or copy one into a folder to run or edit.",
        epilog="examples:\n  recplug examples\n  recplug examples popularity --out .\n  recplug run popularity.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    examples.add_argument("name", nargs="?", help="the example to copy (e.g. popularity or popularity.toml)")
    examples.add_argument("--out", metavar="DIR", default=".", help="folder to copy it into (default: here)")
    examples.set_defaults(handler=cmd_examples)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from ._plugin_manager import get_plugin_manager
    from ._runner import check_output_place, read_recorded_spec, run_experiment
    from ._spec import apply_overrides, parse_spec, read_toml

    plugins = get_plugin_manager()
    if args.resume and (args.spec or args.out):
        raise SpecError("--resume continues a run with the spec it recorded: give a spec file (and --out) or "
                        "--resume RUN_DIR, not both", where="run")  # fmt: skip
    if args.resume:
        run_dir: Path | None = Path(args.resume)
        data = read_recorded_spec(Path(args.resume))
    elif args.spec:
        run_dir = Path(args.out) if args.out else None
        data = read_toml(args.spec)
    else:
        raise SpecError("give a spec file (recplug run SPEC.toml) or --resume RUN_DIR")
    overrides = list(args.overrides)
    if args.seeds is not None:
        if args.seeds < 1:
            raise SpecError(f"--seeds must be at least 1, got {args.seeds}", where="--seeds")
        first = data.get("experiment", {}).get("seed", 0) if isinstance(data.get("experiment"), dict) else 0
        overrides.append(f"experiment.seeds={list(range(first, first + args.seeds)) if isinstance(first, int) else []}")
    spec = parse_spec(apply_overrides(data, overrides), plugins, Path(args.spec).resolve().parent if args.spec else None)
    check_output_place(spec, run_dir if not args.resume else None, overwrite=args.overwrite)
    distributed.setup()  # a no-op unless started by torchrun with several processes
    try:
        result = run_experiment(spec, plugins, run_dir=run_dir, resume=bool(args.resume))
    finally:
        distributed.teardown()
    if distributed.is_main() and result.results:
        print(f"\n## {spec.experiment.name}: results (run directory {result.run_dir})\n")
        print((result.run_dir / "results.md").read_text())
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from ._describe import describe, description_text
    from ._plugin_manager import get_plugin_manager
    from ._spec import load_spec

    plugins = get_plugin_manager()
    description = describe(load_spec(args.spec, plugins, args.overrides), plugins)
    print(json.dumps(description, indent=2) if args.format == "json" else description_text(description))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from ._plugin_manager import get_plugin_manager
    from ._registrar import KINDS

    plugins = get_plugin_manager()
    rows = [
        {"kind": c.kind, "name": c.name, "distribution": c.distribution, "version": c.version,
         "plugin": c.plugin, "description": c.description}
        for kind in KINDS for c in plugins.of_kind(kind)
    ]  # fmt: skip
    missing = [{"kind": m.kind, "name": m.name, "distribution": m.distribution, "version": m.version,
                "plugin": m.plugin, "reason": m.reason} for m in plugins.unavailable.values()]  # fmt: skip
    if args.json:
        print(json.dumps({"components": rows, "unavailable": missing, "failures": plugins.failures}, indent=2))
        return 0
    rows += [{**m, "description": f"NOT AVAILABLE: {m['reason']}"} for m in missing]
    headers = ["kind", "name", "distribution", "version", "description"]
    widths = {h: max([len(h)] + [len(str(r[h])) for r in rows]) for h in headers[:-1]}
    print("  ".join(h.upper().ljust(widths.get(h, 0)) for h in headers))
    for r in rows:
        print("  ".join(str(r[h]).ljust(widths.get(h, 0)) for h in headers))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from ._model_registry import ModelRegistry

    registry = ModelRegistry(args.registry)
    if args.action == "list":
        rows = registry.list_versions()
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        print(f"{'NAME':<32} {'VER':>3}  {'ALIASES':<14} {'CREATED':<25} {'SPLIT':<14} HEADLINE")
        for r in rows:
            ndcg, hit = r["metrics"].get("ndcg", {}), r["metrics"].get("hit_rate", {})
            head = " ".join(f"{m}@{k}={v:.4f}" for m, d in (("ndcg", ndcg), ("hit_rate", hit)) for k, v in list(d.items())[-1:])
            print(f"{r['name']:<32} {r['version']:>3}  {','.join(r['aliases']) or '-':<14} {r['created']:<25} "
                  f"{r['split'] or '-':<14} {head}")  # fmt: skip
    elif args.action == "show":
        entry = registry.show(args.ref)
        print(json.dumps(entry, indent=2) if args.json else model_card(entry))
    elif args.action == "alias":
        registry.alias(args.ref, args.alias)
        name, version = registry.resolve(args.ref)
        print(f"{name}@{args.alias} -> {name}:{version}")
    elif args.action == "delete":
        name, version = registry.resolve(args.ref)
        registry.delete(args.ref)
        print(f"deleted {name}:{version}")
    return 0


def model_card(entry: dict) -> str:
    """A registry entry as a readable card: what it is, what it was trained on, how it measured."""
    plugin, data, protocol = entry["plugin"], entry.get("data", {}), entry.get("protocol", {})
    lines = [
        f"{entry['name']}:{entry['version']}" + (f"  (aliases: {', '.join(entry['aliases'])})" if entry["aliases"] else ""),
        f"  {plugin['kind']:<9} {plugin['name']} from {plugin['distribution']} {plugin['version']}",
        f"  data      {data.get('dataset', '?')}: {data.get('users', '?')} users, {data.get('items', '?')} items, "
        f"{data.get('interactions', '?')} interactions (sha256 {str(data.get('fingerprint_sha256', ''))[:12]})",
        f"  protocol  {protocol.get('splitter', '?')}, {protocol.get('test_cases', '?')} test cases, "
        f"{protocol.get('candidates', '?')}, seen items {'excluded' if protocol.get('seen_items_excluded') else 'kept'}",
    ]
    for metric, by_k in entry.get("metrics", {}).items():
        lines.append(f"  {metric:<9} " + "  ".join(f"@{k} {v:.4f}" for k, v in by_k.items()))
    if entry.get("training"):
        t = entry["training"]
        lines.append(f"  training  {t['epochs']} epochs, batch {t['batch_size']}, lr {t['lr']}, {t['schedule']} schedule")
    if entry.get("tuning"):
        tuning = entry["tuning"]
        measure = ", ".join(f"{m} {v:.4f}" for m, v in tuning["validation"].items())
        lines.append(f"  tuned     trial {tuning['trial']} of study {tuning['study']!r} (validation {measure}; "
                     + ", ".join(f"{n} {state}" for state, n in tuning["trials"].items()) + ")")
    lines += [f"  created   {entry['created']} with recplug {entry['versions']['recplug']}, torch {entry['versions']['torch']}",
              f"  path      {entry['path']}"]  # fmt: skip
    return "\n".join(lines)


def _parse_user_features(pairs: list[str]) -> dict[str, str] | None:
    """``["gender=F", "age=25"]`` -> ``{"gender": "F", "age": "25"}`` (None when there are none)."""
    if not pairs:
        return None
    bad = [p for p in pairs if "=" not in p or not p.split("=", 1)[0].strip()]
    if bad:
        raise SpecError(f"--user-feature takes NAME=VALUE, got {bad[0]!r}", where="recommend")
    return dict((name.strip(), value.strip()) for name, value in (p.split("=", 1) for p in pairs))


def cmd_recommend(args: argparse.Namespace) -> int:
    from ._model_registry import ModelRegistry

    if args.k <= 0:
        raise SpecError(f"-k must be positive, got {args.k}", where="recommend")
    if args.all_users:
        return _recommend_all_users(args)
    if args.user is None and not args.history:
        raise SpecError("give --user ID, --history ID,ID,... or --all-users --out FILE", where="recommend")
    history = [x.strip() for x in args.history.split(",") if x.strip()] if args.history else None
    features = _parse_user_features(args.user_feature)
    if args.posters and not Path(args.posters).is_dir():
        raise SpecError(f"--posters {args.posters!r} is not a folder", where="recommend")
    if args.report and (Path(args.report).is_dir() or not Path(args.report).resolve().parent.is_dir()):
        raise SpecError(f"--report {args.report!r} must be a file in an existing folder", where="recommend")
    served = ModelRegistry(args.registry).load(args.ref)
    if args.user is not None:
        args.user = _raw_id(args.user, served.vocab.user_ids)
    if history is not None:
        history = [_raw_id(i, served.vocab.item_ids) for i in history]
    items = served.recommend(user_id=args.user, history=history, k=args.k, user_features=features)
    raw_history = history if history is not None else served.history(args.user)
    recent = raw_history[-10:]
    tokens = served.item_tokens(recent)
    shown = [{"item_id": i, **served.item_metadata(t)} for i, t in zip(recent, tokens)]
    if args.report:
        from ._report import render_report

        who = f"user {args.user}" if args.user is not None else "a new user (cold start)"
        kinds = served.vocab.item_info.kinds if served.vocab.item_info is not None else {}
        page = render_report(f"{served.ref}: recommendations for {who}", shown, items, kinds,
                             Path(args.posters) if args.posters else None)  # fmt: skip
        Path(args.report).write_text(page, encoding="utf-8")
    if args.format == "json":
        print(json.dumps({"model": served.ref, "user": args.user, "history": shown, "recommendations": items}, indent=2))
        return 0
    print(f"{served.ref} — {'user ' + str(args.user) if args.user is not None else 'new user (history only)'}")
    print(f"\nrecent history ({len(recent)} of {len(raw_history)}):")
    for item, token in zip(shown, tokens):
        print(f"  {item['item_id']:>6}  {served.describe(token)}")
    print(f"\ntop {args.k}:")
    for rank, (item, token) in enumerate(zip(items, served.item_tokens([i["item_id"] for i in items])), 1):
        print(f"  {rank:>2}. {item['item_id']:>6}  {served.describe(token)}  {item['score']:.3f}")
    return 0


def _raw_id(text: str, ids: object) -> int | str:
    """An id given on the command line as the model's ids are: an integer where they are integers."""
    integers = getattr(ids, "dtype", None) is not None and ids.dtype.kind in "iu"  # type: ignore[attr-defined]
    return int(text) if integers and text.lstrip("-").isdigit() else text


def _recommend_all_users(args: argparse.Namespace) -> int:
    """``recommend REF --all-users -k K --out FILE``: every user's top-k, vectorised, into a CSV or Parquet file."""
    from ._model_registry import ModelRegistry

    if args.user is not None or args.history or args.report:
        raise SpecError("--all-users takes no --user, --history or --report", where="recommend")
    out = Path(args.out) if args.out else None
    if out is None or out.suffix not in (".csv", ".parquet"):
        raise SpecError("--all-users needs --out FILE.csv or FILE.parquet", where="recommend")
    if out.is_dir() or not out.resolve().parent.is_dir():
        raise SpecError(f"--out {args.out!r} must be a file in an existing folder", where="recommend")
    if out.suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise SpecError("writing Parquet needs pyarrow: pip install 'recplug[parquet]' (or write a .csv)",
                            where="recommend") from None  # fmt: skip
    served = ModelRegistry(args.registry).load(args.ref)
    frame = served.recommend_all(args.k, progress=not args.quiet)
    frame.to_parquet(out, index=False) if out.suffix == ".parquet" else frame.to_csv(out, index=False)
    print(f"{served.ref}: top {min(args.k, served.vocab.n_items)} of {served.vocab.n_users} users written to {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ._comparison import results_markdown
    from ._model_registry import ModelRegistry
    from ._plugin_manager import get_plugin_manager
    from ._runner import evaluate_registered
    from ._spec import apply_overrides, parse_spec

    plugins = get_plugin_manager()
    served = ModelRegistry(args.registry).load(args.ref)
    recorded = apply_overrides(served.entry["spec"], args.overrides)
    recorded["splits"] = {args.split: {}}
    print(results_markdown(evaluate_registered(served, parse_spec(recorded, plugins), plugins)))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ._comparison import compare_runs, results_markdown
    from ._plugin_manager import get_plugin_manager

    compared = compare_runs(Path(args.run_a), Path(args.run_b), get_plugin_manager(), args.reference)
    print(json.dumps(compared, indent=2) if args.json else results_markdown(compared))
    return 0


def cmd_export_ranx(args: argparse.Namespace) -> int:
    from ._cases import export_ranx

    run = Path(args.run)
    written = export_ranx(run, Path(args.out) if args.out else run / "ranx")
    print(f"wrote {len(written)} files into {written[0].parent}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from ._plugin_manager import get_plugin_manager
    from ._tuning import TuneRun, parse_tune_spec, read_search, record_search, require_optuna, run_search

    require_optuna()
    plugins = get_plugin_manager()
    if args.jobs < 1 or (args.trials is not None and args.trials < 1) or (args.timeout is not None and args.timeout <= 0):
        raise SpecError("--jobs and --trials must be at least 1, --timeout above 0", where="tune")
    if args.resume and (args.spec or args.out or args.storage):
        raise SpecError("--resume continues the search its directory records: give a spec (with --out, "
                        "--storage) or --resume DIR, not both", where="tune")  # fmt: skip
    if args.resume:
        run, raw, base_dir = TuneRun.open(Path(args.resume))
    elif args.spec:
        raw, base_dir = read_search(Path(args.spec))
    else:
        raise SpecError("give a spec file (recplug tune SPEC.toml) or --resume DIR", where="tune")
    changes = {k: v for k, v in (("trials", args.trials), ("timeout_minutes", args.timeout)) if v is not None}
    if changes and isinstance(raw.get("tune"), dict):
        raw = {**raw, "tune": {**raw["tune"], **changes}}
    tune_spec = parse_tune_spec(raw, plugins, base_dir)
    if args.resume:
        record_search(run, raw, base_dir)  # a new --trials or --timeout holds for every process from now on
    else:
        run = TuneRun.create(tune_spec, Path(args.out) if args.out else None, args.storage, raw)
    summary = run_search(tune_spec, run, plugins, jobs=args.jobs, final=not args.no_final)
    if summary is None:
        return 0
    metric = tune_spec.options.metric
    counts = ", ".join(f"{n} {state}" for state, n in summary["trials"].items())
    print(f"\n## {run.study_name}: search finished ({counts}); tune directory {run.folder}\n")
    print(f"best: trial {summary['trial']}, validation {metric} {summary['validation'][metric]:.4f}")
    print("params: " + ", ".join(f"{k} = {v!r}" for k, v in summary["params"].items()))
    print("test (once): " + ", ".join(f"{r['metric']}@{r['k']} {r['value']:.4f}" for r in summary["test"]))
    print(f"registered: {', '.join(summary['registered']) or 'nothing'}; report: {run.folder / 'tune.html'}; "
          f"best spec: {run.folder / 'best.toml'}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ._serving import ServeOptions, require_serving, serve

    require_serving()
    counts = (args.workers, args.max_batch, args.threads if args.threads is not None else 1)
    if not 0 < args.port < 65536 or min(counts) < 1 or args.batch_window_ms < 0 or args.poll_seconds < 0:
        raise SpecError("--port must be 1..65535, --workers, --max-batch and --threads at least 1, "
                        "--batch-window-ms and --poll-seconds at least 0", where="serve")  # fmt: skip
    serve(ServeOptions(ref=args.ref, registry=args.registry, host=args.host, port=args.port, workers=args.workers,
                       batch_window_ms=args.batch_window_ms, max_batch=args.max_batch, poll_seconds=args.poll_seconds,
                       threads=args.threads))
    return 0


def _example_specs() -> Traversable:
    """The example specs: the wheel's data package ``recplug.example_specs``, else (an editable install,
    whose finder cannot map a sub-package) the checkout's ``examples/`` folder."""
    from importlib.resources import files

    try:
        return files("recplug.example_specs")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "examples"


def cmd_examples(args: argparse.Namespace) -> int:
    specs = {f.name: f for f in _example_specs().iterdir() if f.name.endswith(".toml")}
    if not args.name:
        for name, spec in sorted(specs.items()):
            summary = next((line.lstrip("# ").strip() for line in spec.read_text().splitlines() if line.startswith("#")), "")
            print(f"{name:<34} {summary}")
        return 0
    name = args.name if args.name.endswith(".toml") else f"{args.name}.toml"
    if name not in specs:
        from ._config import unknown_name_message

        raise SpecError(unknown_name_message("example", name, list(specs)), where="examples")
    target = Path(args.out) / name
    if target.exists():
        raise SpecError(f"{target} already exists; choose another --out", where="examples")
    if not Path(args.out).is_dir():
        raise SpecError(f"--out {args.out!r} is not a folder", where="examples")
    target.write_text(specs[name].read_text())
    print(f"copied {name} to {target}; run it with: recplug run {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = args.quiet or int(os.environ.get("RANK", "0")) > 0  # under torchrun only rank 0 reports progress
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="[recplug] %(message)s", stream=sys.stderr)
    warnings.formatwarning = _format_warning
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except RecplugError as exc:
        print(f"recplug: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("recplug: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (recplug models show ... | head): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:  # fmt: skip
    """``recplug: warning: [plugin NAME] ...`` for a warning raised in a plugin's code, naming the plugin."""
    from ._plugin_manager import plugin_of_file

    plugin = plugin_of_file(filename)
    return f"recplug: warning: {f'[plugin {plugin}] ' if plugin else ''}{message}\n"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
