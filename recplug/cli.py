"""The ``recplug`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

from . import __version__
from .errors import RecplugError, SpecError

EPILOG_RUN = """\
examples:
  recplug run examples/ml1m.toml
  recplug run examples/ml1m.toml --set recommenders.transformer.training.epochs=1 --out runs/quick
  recplug run --resume runs/ml1m-20261128-101500      continue an interrupted run from its checkpoints

--set takes KEY.PATH=VALUE with the value in TOML syntax (3, 0.1, true, "text", [3, 5]);
it is validated exactly like the file.
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
    run.set_defaults(handler=cmd_run)

    plugins = commands.add_parser(
        "plugins", help="list registered datasets, splitters, models, baselines and metrics",
        description="List every registered component with its providing distribution and version.",
    )
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(handler=cmd_plugins)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from .plugins import get_registry
    from .runner import run_experiment
    from .spec import apply_overrides, parse_spec, read_toml

    registry = get_registry()
    if args.resume:
        run_dir = Path(args.resume)
        saved = run_dir / "spec.json"
        if not saved.is_file():
            raise SpecError("not a run directory (no spec.json inside)", where=str(run_dir))
        data = json.loads(saved.read_text())
    elif args.spec:
        run_dir = Path(args.out) if args.out else None
        data = read_toml(args.spec)
    else:
        raise SpecError("give a spec file (recplug run SPEC.toml) or --resume RUN_DIR")
    spec = parse_spec(apply_overrides(data, args.overrides), registry)
    result = run_experiment(spec, registry, run_dir=run_dir, resume=bool(args.resume))
    print(f"\n## {spec.experiment.name}: results (run directory {result.run_dir})\n")
    print((result.run_dir / "results.md").read_text())
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import KINDS, get_registry

    registry = get_registry()
    rows = [
        {"kind": c.kind, "name": c.name, "distribution": c.distribution, "version": c.version,
         "plugin": c.plugin, "description": c.description}
        for kind in KINDS for c in registry.of_kind(kind)
    ]  # fmt: skip
    if args.json:
        print(json.dumps({"components": rows, "failures": registry.failures}, indent=2))
        return 0
    headers = ["kind", "name", "distribution", "version", "description"]
    widths = {h: max([len(h)] + [len(str(r[h])) for r in rows]) for h in headers[:-1]}
    print("  ".join(h.upper().ljust(widths.get(h, 0)) for h in headers))
    for r in rows:
        print("  ".join(str(r[h]).ljust(widths.get(h, 0)) for h in headers))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="[recplug] %(message)s", stream=sys.stderr
    )
    warnings.formatwarning = lambda message, *_args, **_kw: f"recplug: warning: {message}\n"
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
