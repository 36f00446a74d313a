"""Command line: ``lazyhasty --help``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .errors import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 2, no usage dump
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _cmd_list(args) -> int:
    from .experiments import registry

    for name, e in sorted(registry().items()):
        print(f"{name:<14} {e.description}")
        print(f"{'':<14} presets: {', '.join(e.presets)} (default: {e.default_preset})")
    return 0


def _run(name: str, preset: str | None, sets: list[str], out: str | None) -> int:
    from .config import override, to_dict
    from .experiments import get_experiment
    from .runs.output import prepare_output
    from .runs.records import atomic_write_json, environment

    exp = get_experiment(name)
    preset = preset or exp.default_preset
    cfg = override(exp.preset(preset), sets)
    out_dir = prepare_output(out or Path("runs") / name)
    atomic_write_json(out_dir / "experiment.json", {"experiment": name, "preset": preset, "overrides": sets,
                                                   "config": to_dict(cfg),
                                                   "env": environment(getattr(cfg, "seed", None),
                                                                      getattr(cfg, "device", "cpu"))})
    t0 = time.perf_counter()
    try:
        summary = exp.main(cfg, out_dir)
    except UsageError:
        raise
    except KeyboardInterrupt:
        print(f"lazyhasty: interrupted; partial records are in {out_dir}", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("LAZYHASTY_DEBUG"):
            raise
        print(f"lazyhasty: run {name!r} failed: {type(e).__name__}: {e} (records so far in {out_dir}; "
              f"set LAZYHASTY_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    wall = time.perf_counter() - t0
    atomic_write_json(out_dir / "summary.json", {"wall_s": round(wall, 2), **(summary or {})})
    print(f"[{name}] done in {wall:.1f} s; records in {out_dir}")
    return 0


def _cmd_run(args) -> int:
    return _run(args.experiment, args.preset, args.set or [], args.out)


def _cmd_demo(args) -> int:
    return _run("demo", "quick", args.set or [], args.out)


def _cmd_show(args) -> int:
    from .config import to_dict
    from .experiments import get_experiment

    exp = get_experiment(args.experiment)
    print(json.dumps(to_dict(exp.preset(args.preset or exp.default_preset)), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lazyhasty", description="Train networks in the lazy or the feature-learning regime, "
                "measure them, and reproduce the figures of George et al. and Geiger et al.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    s = sub.add_parser("demo", help="run the default reproduction on CPU and write a report (what `make demo` runs)")
    s.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    s.set_defaults(fn=_cmd_demo)
    s = sub.add_parser("run", help="run one experiment")
    s.add_argument("experiment", help="experiment name (see `lazyhasty list`)")
    s.add_argument("--preset", help="preset name (default: the experiment's, shown by `lazyhasty list`)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    s.add_argument("--out", help="output folder (default: runs/EXPERIMENT)")
    s.set_defaults(fn=_cmd_run)
    s = sub.add_parser("list", help="list experiments and their presets")
    s.set_defaults(fn=_cmd_list)
    s = sub.add_parser("show", help="print the resolved config of an experiment's preset")
    s.add_argument("experiment")
    s.add_argument("--preset")
    s.set_defaults(fn=_cmd_show)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "fn", None):
            parser.print_help()
            return 2
        return args.fn(args)
    except UsageError as e:
        print(f"lazyhasty: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
