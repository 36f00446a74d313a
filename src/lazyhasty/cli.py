"""Command line: ``lazyhasty --help``."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from .errors import UsageError, signals_interrupt, stopped_by


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 2, no usage dump
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _cmd_list(args) -> int:
    from .experiments import registry

    for name, e in sorted(registry().items()):
        print(f"{name:<14} {e.description}")
        print(f"{'':<14} presets: {', '.join(e.presets)} (default: {e.default_preset})")
    return 0


def _tensorboard(on: bool) -> bool:
    """``--tensorboard``: checked here, then handed explicitly to the experiment (``Output``) or the sweep's jobs."""
    if on:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise UsageError("--tensorboard needs the tensorboard package: pip install 'lazyhasty[tensorboard]'") \
                from None
    return on


def _run(name: str, preset: str | None, sets: list[str], out: str | None, resume: bool = False,
         checkpoint_every: float = 60.0, tensorboard: bool = False) -> int:
    """One experiment into a folder of its own: ``out`` if it holds no records (else exit 2; with ``resume``, an
    earlier run of the same experiment, continued from its checkpoints), or without ``out`` the first
    free one of runs/NAME, runs/NAME.2, ... Every way out leaves experiment.json with a final status."""
    from .config import check_machine, override, to_dict
    from .dynamics.checkpoint import Checkpointing
    from .experiments import REGISTRY
    from .runs.output import claim_output, records_in
    from .runs.records import Output, _now, atomic_write, close_open_records, environment
    from .runs.sweep import get_experiment, run_experiment

    exp = get_experiment(REGISTRY, name)
    preset = preset or exp.default_preset
    cfg = override(exp.preset(preset), sets)
    check_machine(to_dict(cfg))
    if resume and not out:
        raise UsageError("--resume needs --out (the folder of the run to continue)")
    out_dir, lock = claim_output(out, Path("runs") / name, resume=name if resume else None)
    meta = {"experiment": name, "preset": preset, "overrides": sets, "config": to_dict(cfg),
            "env": environment(getattr(cfg, "seed", None), getattr(cfg, "device", "cpu")), "status": "running",
            "started": _now()}
    if resume:  # the same experiment, preset and config, or nothing is written
        old = json.loads((out_dir / "experiment.json").read_text())
        was = old.get("config") if isinstance(old.get("config"), dict) else {}
        now = json.loads(json.dumps(meta["config"]))  # as recorded: tuples become lists
        changed = sorted(k for k in {*now, *was} if was.get(k) != now.get(k) and k not in exp.resume_may_change)
        diff = ([f"preset ({old.get('preset')!r} -> {preset!r})"] if old.get("preset") != preset else []) + [
            f"{k} ({was.get(k)!r} -> {now.get(k)!r})" for k in changed]
        if diff:
            lock.release()
            raise UsageError(f"--resume continues {out_dir} with its own preset and config; this command gives another "
                             f"config: {', '.join(diff)}; nothing was written")
        meta["resumes"] = [*old.get("resumes", []), {"at": _now(), "previous_status": old.get("status"),
                                                     "changed": sorted(k for k in now if was.get(k) != now[k])}]
    atomic_write(out_dir / "experiment.json", meta, reserve=True)
    t0 = time.perf_counter()

    def end(status: str, reason: str = "", **more) -> None:
        close_open_records(status, reason)
        atomic_write(out_dir / "experiment.json", {**meta, "status": status, "reason": reason,
                                                   "wall_s": round(time.perf_counter() - t0, 2), **more}, reserve=True)

    try:
        summary = run_experiment(exp, cfg, Output(out_dir, Checkpointing(out_dir, checkpoint_every, resume),
                                                  tensorboard))
        atomic_write(out_dir / "summary.json", {"wall_s": round(time.perf_counter() - t0, 2), **(summary or {})})
        end("complete")
    except (UsageError, ValueError) as e:  # bad input (a missing dataset, a value a config check let through)
        if resume and isinstance(e, UsageError):  # a refused resume leaves the experiment's record as it was
            close_open_records("failed", str(e))
            atomic_write(out_dir / "experiment.json", old, reserve=True)
            raise
        if not resume and not any(out_dir.rglob("status.json")) and records_in(out_dir) == \
                out_dir / "experiment.json":
            (out_dir / "experiment.json").unlink()  # refused before any run started: the folder is free again
            lock.release(discard=True)
            raise UsageError(str(e)) from None
        if not isinstance(e, UsageError):
            end(*stopped_by(e))
            print(f"lazyhasty: run {name!r} failed: {type(e).__name__}: {e} (records so far in {out_dir})",
                  file=sys.stderr)
            return 1
        end("failed", str(e))
        raise
    except KeyboardInterrupt as e:
        end(*stopped_by(e))
        print(f"lazyhasty: {name} interrupted ({str(e) or 'Ctrl-C'}); every run records how far it got, in "
              f"{out_dir}; continue it with `lazyhasty run {name} --resume --out {out_dir}` (and the same --preset "
              "and --set)", file=sys.stderr)
        return 130
    except Exception as e:
        end(*stopped_by(e))
        if os.environ.get("LAZYHASTY_DEBUG"):
            raise
        print(f"lazyhasty: run {name!r} failed: {type(e).__name__}: {e} (records so far in {out_dir}; "
              f"set LAZYHASTY_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    finally:
        lock.release()
    print(f"[{name}] done in {time.perf_counter() - t0:.1f} s; records in {out_dir}")
    return 0


def _cmd_run(args) -> int:
    return _run(args.experiment, args.preset, args.set or [], args.out, args.resume, args.checkpoint_every,
                _tensorboard(args.tensorboard))


def _cmd_demo(args) -> int:
    """Every experiment's demo preset (``quick``, or a smaller one where quick takes many minutes), then the
    report (what `make demo` runs)."""
    from .data import DatasetError
    from .experiments import registry
    from .report import build_report
    from .runs.output import claim_output

    exps = registry()
    names = args.only.split(",") if args.only else sorted(exps)
    unknown = [n for n in names if n not in exps]
    if unknown:
        raise UsageError(f"unknown experiment {', '.join(map(repr, unknown))}; available: {', '.join(sorted(exps))}")
    from .config import check_machine, override, to_dict

    for name in names:  # every experiment's config is checked before the first one runs
        try:
            check_machine(to_dict(override(exps[name].preset(exps[name].demo_preset), args.set or [])))
        except UsageError as e:
            raise UsageError(f"{name}: {e}") from None
    root, lock = claim_output(args.out, Path("runs") / "demo")
    t0 = time.perf_counter()
    codes, skipped = {}, {}
    for i, name in enumerate(names, 1):
        preset = exps[name].demo_preset
        print(f"=== [{i}/{len(names)}] {name} ({preset} preset) ===", flush=True)
        try:
            codes[name] = _run(name, preset, args.set or [], str(root / name))
        except DatasetError as e:  # a dataset the machine does not have: skip it, say how to get it
            skipped[name] = str(e)
            print(f"[demo] skipped {name}: {e}", flush=True)
        if codes.get(name) == 130:
            return 130
    lock.release()
    report = build_report(root, title="lazyhasty demo: every experiment on CPU")
    failed = [n for n, c in codes.items() if c != 0]
    print(f"\n[demo] {len(codes) - len(failed)}/{len(names)} experiments done in {time.perf_counter() - t0:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else "")
          + (f"; skipped for missing data: {', '.join(skipped)}" if skipped else ""))
    print(f"[demo] report: {report.resolve()}")
    return 1 if failed else 0


def _cmd_sweep(args) -> int:
    from .config import check_machine
    from .experiments import REGISTRY
    from .runs.output import lock_output

    if args.status:  # read only: the table of a sweep's jobs, nothing started
        from .runs.sweep import sweep_status

        rows = sweep_status(Path(args.status))
        for jid, state, why, assignments in rows:
            print(f"{jid}  {state:<11} {assignments}" + (f"  ({why})" if why else ""))
        counts = {s: sum(r[1] == s for r in rows) for s in dict.fromkeys(r[1] for r in rows)}
        print(f"[sweep] {len(rows)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        return 0
    if not args.out:
        raise UsageError("sweep needs --out (the sweep folder), or --status DIR to show one")
    tensorboard = _tensorboard(args.tensorboard)
    spec = {"experiment": args.experiment, "preset": args.preset, "grid": args.grid or [], "seeds": args.seeds,
            "set": args.set or []}
    if args.file:
        from .runs.sweep import load_sweep_file

        f = load_sweep_file(args.file)
        spec = {"experiment": args.experiment or f["experiment"], "preset": args.preset or f["preset"],
                "grid": f["grid"] + spec["grid"], "seeds": args.seeds or f["seeds"], "set": f["set"] + spec["set"]}
    if not spec["experiment"]:
        raise UsageError("name an experiment (lazyhasty sweep EXPERIMENT ...) or set 'experiment' in the sweep file")
    if args.device:
        spec["set"].append(f"device={args.device}")
    for flag, v in (("--workers", args.workers), ("--time", args.time), ("--gpus-per-run", args.gpus_per_run)):
        if v is not None and not 0 < v <= 100_000:
            raise UsageError(f"{flag} must be between 1 and 100000, got {v}")
    if args.executor == "slurm" and not shutil.which("sbatch"):
        raise UsageError("--executor slurm needs a SLURM cluster: sbatch is not on this machine's PATH")
    out, lock = Path(args.out), lock_output(args.out, "sweep folder")  # a second sweep is refused at once
    try:
        from .runs.sweep import plan, run_sweep

        jobs = plan(REGISTRY, spec["experiment"], spec["preset"], spec["set"], spec["grid"], spec["seeds"], out)
        if args.executor != "slurm":  # the jobs run on this machine: its device and paths are checked now
            for job in jobs:
                check_machine(job.config)
    except BaseException:
        lock.release(discard=True)  # bad input: a folder this command created is removed again
        raise
    try:
        result = run_sweep(jobs, out, executor=args.executor, workers=args.workers, lock=lock,
                           checkpoint_every_s=args.checkpoint_every, tensorboard=tensorboard,
                           slurm={"partition": args.partition, "time": args.time, "gpus_per_run": args.gpus_per_run})
    except KeyboardInterrupt as e:
        print(f"lazyhasty: sweep interrupted ({str(e) or 'Ctrl-C'}); finished jobs are kept, run the same command to "
              f"resume (records in {out})", file=sys.stderr)
        return 130
    c = result["counts"]
    print(f"[sweep] {len(jobs)} jobs: {c['complete']} complete, {c['diverged']} diverged, {c['failed']} failed"
          + (f", {c['interrupted']} interrupted" if c["interrupted"] else "") + f" (records in {out})")
    return 1 if c["failed"] or c["interrupted"] else 0


def _cmd_compare(args) -> int:
    """Every regime of a user's model on a user's data, compared at equal progress (``compare_regimes``)."""
    from .compare import compare_regimes
    from .config import MAX_INT
    from .data import Split
    from .dynamics.steppers import GD, SGD
    from .dynamics.train import Stop
    from .runs.output import claim_output
    from .runs.sweep import import_object, parse_seeds

    factory = import_object(args.model, "--model", cwd=True)
    loader = import_object(args.data, "--data", cwd=True)
    try:
        alphas = [float(a) for a in args.alphas.split(",")]
    except ValueError:
        raise UsageError(f"--alphas expects numbers like 1,100; got {args.alphas!r}") from None
    for name, v in (("--lr", args.lr), ("--momentum", args.momentum), ("--target", args.target)):
        if v is not None and not (0 <= v <= 1e12 and (v > 0 or name == "--momentum")):
            raise UsageError(f"{name} must be a number > 0 (momentum >= 0), at most 1e12; got {v}")
    if not 1 <= args.max_steps <= MAX_INT or not 1 <= args.batch_size <= MAX_INT:
        raise UsageError("--max-steps and --batch-size must be integers >= 1")
    progress = tuple(args.progress.split("/"))
    if len(progress) != 3:
        raise UsageError(f"--progress expects split/group/metric, got {args.progress!r}")
    if not callable(loader):
        raise UsageError(f"--data {args.data} must name a function returning the data, got {type(loader).__name__}")
    data = loader()
    if isinstance(data, Split):
        data = {"train": data}
    elif isinstance(data, tuple) and len(data) == 2:
        data = {"train": data[0], "test": data[1]}
    if not isinstance(data, dict) or not isinstance(data.get("train"), Split):
        raise UsageError(f"--data {args.data} must return a lazyhasty.Split, a (train, test) pair of them or a dict "
                         f"with 'train', got {type(data).__name__}")
    stepper = GD(args.lr) if args.stepper == "gd" else SGD(args.lr, args.momentum, args.batch_size)
    out, lock = claim_output(args.out, Path("runs") / "compare")
    try:
        comp = compare_regimes(factory, data.pop("train"), splits=data, alphas=alphas, loss=args.loss,
                               stepper=stepper, stop=Stop(max_steps=args.max_steps), target=args.target,
                               seeds=parse_seeds(args.seeds), linearized=args.linearized, progress=progress,
                               out=out)
    except UsageError:
        lock.release(discard=True)  # refused before anything ran: no folder left behind
        raise
    finally:
        lock.release()
    print(comp.summary())
    print(f"[compare] records, table, verdict and figure in {out}")
    return 0


def _cmd_report(args) -> int:
    from .report import build_report

    path = build_report(args.dir, args.output)
    print(f"[report] {path.resolve()}")
    return 0


def _cmd_claims(args) -> int:
    from .files import atomic_write
    from .report import claims_markdown

    if not Path(args.dir).is_dir():
        raise UsageError(f"no such folder: {args.dir}")
    table = claims_markdown(args.dir)
    if len(table.splitlines()) <= 2:  # a header only: a wrong folder, never a README's table replaced by nothing
        raise UsageError(f"no claims.json under {args.dir}: run an experiment there first")
    if not args.readme:
        print(table, end="")
        return 0
    readme = Path(args.readme)
    begin, end = "<!-- claims:begin -->", "<!-- claims:end -->"
    text = readme.read_text() if readme.is_file() else ""
    if begin not in text or end not in text:
        raise UsageError(f"{readme} has no '{begin}' ... '{end}' block to replace")
    head, rest = text.split(begin, 1)
    try:
        atomic_write(readme, head + begin + "\n" + table + end + rest.split(end, 1)[1])
    except OSError as e:
        raise UsageError(f"cannot write {readme}: {e.strerror or e}") from None
    print(f"[claims] {len(table.splitlines()) - 2} claims from {args.dir} written to {readme}")
    return 0


def _cmd_show(args) -> int:
    from .config import to_dict
    from .experiments import REGISTRY
    from .runs.sweep import get_experiment

    if Path(args.experiment).is_dir():  # a results folder: its claims
        from .report import claims_rows

        rows = claims_rows(args.experiment)
        if not rows:
            raise UsageError(f"no claims.json of an experiment under {args.experiment}")
        for exp, preset, cid, verdict, text, _ in rows:
            print(f"{exp} ({preset})  {cid}: {verdict.upper()}\n    {text}")
        return 0
    exp = get_experiment(REGISTRY, args.experiment)
    print(json.dumps(to_dict(exp.preset(args.preset or exp.default_preset)), indent=2))
    return 0


def _records_args(s: argparse.ArgumentParser) -> None:
    """The flags of ``run`` and ``sweep`` that say how each training run is recorded."""
    s.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS", help="write each training "
                   "run's whole state this often (default 60; 0: never), and on SIGTERM / SIGUSR2: interrupted or "
                   "requeued runs continue from it")
    s.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files in every run's "
                   "folder (needs lazyhasty[tensorboard])")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lazyhasty", description="Train networks in the lazy or the feature-learning regime, "
                "measure them, and reproduce the figures of George et al. (lazy vs hasty) and the "
                "feature-vs-lazy phase diagram of Geiger et al. (`lazyhasty run phase`)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    s = sub.add_parser("demo", help="run every experiment's demo preset (quick; tiny for phase) on CPU, then the "
                       "HTML report (what `make demo` runs)")
    s.add_argument("--out", help="output folder, which must hold no records (default: runs/demo, or runs/demo.2, "
                   "... when that holds an earlier demo)")
    s.add_argument("--only", help="comma-separated experiments to run (default: all)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    s.set_defaults(fn=_cmd_demo)
    s = sub.add_parser("sweep", help="run a grid of configs, skipping completed runs (resumable, fault tolerant)")
    s.add_argument("experiment", nargs="?", help="experiment name (or 'experiment' in --file)")
    s.add_argument("--file", help="sweep file (TOML; YAML with PyYAML): experiment, preset, grid, seeds, set")
    s.add_argument("--grid", action="append", metavar="KEY=V1,V2", help="a grid axis (repeatable); values of "
                   "list-valued keys are separated by ';'")
    s.add_argument("--seeds", help="one job per initialisation seed, e.g. 0-4 or 0,3,7 (sets seed=S, and seeds=1 "
                   "where the experiment has a seed count)")
    s.add_argument("--preset", help="preset of every job (default: the experiment's)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="fixed override for every job")
    s.add_argument("--out", help="sweep folder (re-use it to finish an interrupted sweep)")
    s.add_argument("--status", metavar="DIR", help="print the jobs of the sweep in DIR and their verified state "
                   "(complete, diverged, failed, interrupted, corrupt, pending, missing); starts nothing")
    s.add_argument("--workers", type=int, help="parallel jobs (default and at most, locally: the cores this process "
                   "may use; torch threads are shared out so that workers x threads <= cores); a local worker process "
                   "runs one job after another")
    s.add_argument("--executor", default="local", choices=["local", "slurm"],
                   help="local process pool (default), or SLURM through submitit")
    s.add_argument("--partition", help="SLURM partition")
    s.add_argument("--time", type=int, help="SLURM time limit per job, minutes (default 60)")
    s.add_argument("--gpus-per-run", type=int, help="GPUs per SLURM job")
    s.add_argument("--device", help="device of every run, e.g. cuda (default: the config's, cpu)")
    _records_args(s)
    s.set_defaults(fn=_cmd_sweep)
    s = sub.add_parser("report", help="write one self-contained HTML report of every record under DIR")
    s.add_argument("dir")
    s.add_argument("--output", help="HTML file (default: DIR/report.html)")
    s.set_defaults(fn=_cmd_report)
    s = sub.add_parser("run", help="run one experiment")
    s.add_argument("experiment", help="experiment name (see `lazyhasty list`)")
    s.add_argument("--preset", help="preset name (default: the experiment's, shown by `lazyhasty list`)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    s.add_argument("--out", help="output folder, which must hold no records (default: runs/EXPERIMENT, or "
                   "runs/EXPERIMENT.2, ... when that holds an earlier run)")
    s.add_argument("--resume", action="store_true", help="continue an earlier, interrupted run in --out (same "
                   "experiment, preset and --set; another config is refused and nothing is written) from its "
                   "checkpoints: finished runs are kept, the others continue where they stopped")
    _records_args(s)
    s.set_defaults(fn=_cmd_run)
    s = sub.add_parser("list", help="list experiments and their presets")
    s.set_defaults(fn=_cmd_list)
    s = sub.add_parser("compare", help="train your model in every regime (alpha-scaled, optionally linearized) from "
                       "one initialisation and compare them per group at equal training progress")
    s.add_argument("--model", required=True, metavar="MODULE:FACTORY", help="a function returning your nn.Module "
                   "(called once per seed), e.g. mypkg.models:small_cnn; the current folder is importable")
    s.add_argument("--data", required=True, metavar="MODULE:LOADER", help="a function returning a lazyhasty.Split "
                   "(with its groups), a (train, test) pair, or a dict of Splits with 'train'")
    s.add_argument("--alphas", default="1,100", help="alpha of each regime (default 1,100: feature vs lazy)")
    s.add_argument("--linearized", action="store_true", help="also train the linearized model (the kernel regime)")
    s.add_argument("--seeds", default="0-2", help="initialisation and minibatch-order seeds (default 0-2)")
    s.add_argument("--loss", default="cross_entropy", help="cross_entropy, bce, mse, hinge, soft_hinge, "
                   "quadratic_hinge (default cross_entropy)")
    s.add_argument("--stepper", choices=["sgd", "gd"], default="sgd", help="minibatch SGD (default) or full-batch GD")
    s.add_argument("--lr", type=float, required=True, help="learning rate eta (each regime steps with eta/alpha^2)")
    s.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (default 0)")
    s.add_argument("--batch-size", type=int, default=128, help="SGD batch size (default 128)")
    s.add_argument("--max-steps", type=int, required=True, help="step budget of every run")
    s.add_argument("--target", type=float, help="every run trains until the progress measure reaches this (a loss "
                   "at or below, an accuracy at or above), within --max-steps")
    s.add_argument("--progress", default="train/all/loss", help="the progress measure, split/group/metric "
                   "(default train/all/loss)")
    s.add_argument("--out", help="output folder, which must hold no records (default: runs/compare, or "
                   "runs/compare.2, ...)")
    s.set_defaults(fn=_cmd_compare)
    s = sub.add_parser("show", help="print the resolved config of an experiment's preset, or the claims of a "
                       "results folder")
    s.add_argument("experiment", help="an experiment name, or a folder of results (its claims are printed)")
    s.add_argument("--preset")
    s.set_defaults(fn=_cmd_show)
    s = sub.add_parser("claims", help="the table of every claim under DIR (Markdown); --readme puts it in a README")
    s.add_argument("dir")
    s.add_argument("--readme", help="replace the block between '<!-- claims:begin -->' and '<!-- claims:end -->' "
                   "in this file")
    s.set_defaults(fn=_cmd_claims)
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 1 a run failed, 2 bad input (one line, before anything runs), 130 interrupted (Ctrl-C,
    SIGTERM, SIGHUP): every run then records ``interrupted`` with how far it got."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "fn", None):
            parser.print_help()
            return 2
        if not 0 <= getattr(args, "checkpoint_every", 0) <= 1e9:  # run and sweep (nan and inf too)
            raise UsageError(f"--checkpoint-every must be between 0 (never) and 1e9 s, got {args.checkpoint_every}")
        with signals_interrupt():
            return args.fn(args)
    except UsageError as e:
        print(f"lazyhasty: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"lazyhasty: interrupted ({str(e) or 'Ctrl-C'})", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, or the machine failing: one line, the traceback on request
        if os.environ.get("LAZYHASTY_DEBUG"):
            raise
        print(f"lazyhasty: {type(e).__name__}: {e} (set LAZYHASTY_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
