"""ebt-sweep: plan, launch and fit scaling-law sweeps of EBTs against Transformer++.

Thin on purpose: parse, then hand over to the package. Expected failures (a config, data
or fit error, a file that cannot be read or written, a full disk) end as one line, what,
where and the fix, with exit code 2; --debug shows the traceback instead.
"""
from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from .config import ConfigError, brief

EPILOG = """\
typical use:
  ebt-sweep train examples/tiny.yaml                 train one point, rows under runs/points/
  ebt-sweep think DIR/last.pt                        System-2 evaluation (train --checkpoint-dir DIR)
  ebt-sweep plan sweeps/depth.yaml                   list a sweep's trials, touch nothing
  ebt-sweep prepare sweeps/data.yaml --scale paper   tokenize its dataset once (launch does it too)
  ebt-sweep launch sweeps/depth.yaml                 train every trial (Ray, local or Slurm)
  ebt-sweep status sweeps/depth.yaml                 done / running / failed / pending
  ebt-sweep fit results/ --out analysis/             power laws, intervals, report, PDFs
"""


def _train(args) -> int:
    from dataclasses import replace

    from .config import load_config
    from .results.store import ParquetSink, TeeSink
    from .train import train
    from .train.live import LiveProgress

    cfg = load_config(args.config, args.set)
    out = Path(args.out) / f"{cfg.name}-{cfg.hash()}.parquet"
    placed = {}
    if args.checkpoint_dir:
        placed["checkpoint_dir"] = args.checkpoint_dir
    if args.track is not None:
        placed["track"] = args.track
    # "_": parquet readers skip it, so that pd.read_parquet(args.out) still reads only rows
    placed["track_dir"] = args.track_dir or cfg.train.track_dir or str(Path(args.out) / "_tracking")
    cfg = replace(cfg, train=replace(cfg.train, **placed))
    from .train.preflight import check_runnable
    check_runnable(cfg, str(args.config))
    from .execute.cli import check_trackers
    check_trackers(cfg.train.track, "--track" if args.track is not None else f"{args.config}: train.track")
    print(f"training {cfg.family_name} L={cfg.model.n_layers} d={cfg.model.d_model} "
          f"for {cfg.total_steps} steps ({cfg.total_tokens:,} tokens) -> {out}"
          + (f"; tracking with {cfg.train.track} in {cfg.train.track_dir}" if cfg.train.track else ""),
          flush=True)
    live = None if args.no_progress else LiveProgress(cfg.total_steps, out=sys.stderr,
                                                      every=args.progress_every)
    summary = train(cfg, TeeSink(ParquetSink(out), live))
    if summary.status != "ok":
        first = (summary.error or "?").splitlines()[0]
        if first.startswith(f"{ConfigError.__name__}: "):   # data or config it could not use: one line, exit 2
            raise ConfigError(f"{args.config}: {first.split(': ', 1)[1]}")
        print(f"FAILED: {summary.error}", file=sys.stderr)
        return 1
    print(f"done: val_loss {summary.val_loss:.4f} (ppl {summary.val_ppl:.2f}), {summary.tokens:,} tokens, "
          f"{summary.flops:.3g} FLOPs, {summary.wall_time:.1f} s")
    return 0


def _prepare(args) -> int:
    from .config import load_config, load_yaml
    from .data.store import prepare
    from .sweep.spec import TOP_KEYS
    from .train.preflight import check_runnable
    if set(load_yaml(args.target)) & (TOP_KEYS - {"name"}):   # a sweep spec: every trial's data
        from .execute.cli import load
        configs = [t.config for t in load(args.target, args.scale)[1]]
    else:                                       # a point config
        configs = [load_config(args.target, args.set)]
    for cfg in configs:
        check_runnable(cfg, str(args.target), devices=False)
    if args.estimate:
        from .data.store import cache_root, needs
        from .sweep.plan import vocab_size
        for d, need in needs(configs):
            width = 2 if vocab_size(next(c for c in configs if c.data == d)) <= 65536 else 4
            tokens = need + d.val_tokens
            print(f"prepare will read {d.hf_dataset} {d.hf_config} until it holds {tokens:,} tokens "
                  f"({need:,} training + {d.val_tokens:,} validation): a token store of "
                  f"{tokens * width / 1e9:.1f} GB in {cache_root(d)}, and a download of the shards that "
                  f"hold them (about {tokens * 3 / 1e9:.0f} GB at FineWeb's ~3 bytes of parquet per token), "
                  "less whatever is already prepared")
        return 0
    stores = prepare(configs, out=sys.stdout)
    if not stores:
        print(f"{args.target}: nothing to prepare (its data is the embedded corpus or a Markov chain)")
    return 0


def _fit(args) -> int:
    from .report import run_fit, summary
    extrapolate = {}
    for item in args.extrapolate or []:
        if "=" not in item:
            raise ConfigError(f"--extrapolate {item!r}: expected axis=value, e.g. params=1e9")
        k, v = item.split("=", 1)
        try:
            extrapolate[k] = float(v)
        except ValueError:
            raise ConfigError(f"--extrapolate {item!r}: {v!r} is not a number; write e.g. params=1e9") from None
    if not args.metric.endswith("ppl"):
        print(f"warning: --metric {args.metric}: the paper's line is log10(perplexity) on log10(x); on a "
              "loss-like metric it fits log10(loss), a different law whose slopes and gains are not the "
              "paper's (use --metric val_ppl to compare with it)", file=sys.stderr)
    try:
        from .report.style import FigureStyle
        style = FigureStyle(column_width=args.fig_width, page_width=args.page_width, font_size=args.font_size)
        result = run_fit(args.source, Path(args.out), metric=args.metric, axes=args.axis or None,
                         select=args.select, extrapolate=extrapolate or None, latex=args.latex, style=style)
    except ValueError as err:      # the fitter's expected errors name the file, the column and the fix
        raise ConfigError(str(err)) from err
    print(summary(result))
    return 0


def _ints(text: str, flag: str) -> list[int]:
    """"1,2,3" -> [1, 2, 3]: positive integers, at least one (the values of `flag`)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1 or max(values) > 100_000:
        raise ConfigError(f"{flag} {brief(text)}: expected comma-separated integers from 1 to 100000, "
                          "like 1,2,3") from None
    return values


def _think(args) -> int:
    from .results.store import write_rows_atomic
    from .train.preflight import check_device
    from .train.think import load_point, system2

    # the flags first: nothing is loaded for a run that cannot start
    steps, candidates = _ints(args.steps, "--steps"), _ints(args.candidates, "--candidates")
    for flag, value in (("--tokens", args.tokens), ("--verify-steps", args.verify_steps)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} {value}: must be >= 1")
    check_device(args.device, "--device")
    try:
        cfg, model, trial_id = load_point(args.checkpoint, device=args.device)
    except (OSError, ConfigError):
        raise
    except Exception as err:     # not a checkpoint: pickle, zip or torch errors, a missing key
        raise ConfigError(f"{args.checkpoint}: not a checkpoint written by train ({type(err).__name__}: "
                          f"{str(err).splitlines()[0][:160] if str(err) else ''}); pass the DIR/last.pt that "
                          "train --checkpoint-dir DIR wrote") from None
    rows, tokens, sequences = system2(cfg, model, sets=args.sets.split(","), steps=steps, candidates=candidates,
                                      verify_steps=args.verify_steps, n_tokens=args.tokens, seed=args.seed,
                                      trial_id=trial_id, sweep=args.sweep)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "think.parquet"
    write_rows_atomic(rows, out)
    if tokens is not None:   # CSV: not a row file, so `ebt-sweep fit` never mistakes it for one
        tokens.to_csv(out.with_name(f"_{out.stem}-tokens.csv"), index=False)   # "_": not a row file
    # per-sequence losses: the fit's intervals for thinking improvements resample them
    sequences.to_csv(out.with_name(f"_{out.stem}-sequences.csv"), index=False)
    if args.track:
        from .execute.cli import check_trackers
        from .results.store import TeeSink, MemorySink
        from .results.trackers import make_trackers
        check_trackers(args.track, "--track")
        sink = TeeSink(MemorySink(), *make_trackers(args.track, args.track_dir or out.parent / "_tracking",
                                                    project=args.sweep or cfg.name))
        for r in rows:
            sink.emit(r)
        sink.close("ok")
    print(f"{cfg.family_name}: {len(rows)} think rows -> {out}")
    for r in rows:
        print(f"  {r.eval_set:11s} steps={r.think_steps:2d} N={r.n_candidates:2d} passes={r.forward_passes:3d} "
              f"ppl={r.val_ppl:8.3f} ood_ratio={r.ood_ratio:.2f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    p = argparse.ArgumentParser(prog="ebt-sweep", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    p.add_argument("--version", action="version", version=f"ebt-sweep (ebt-scaling) {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train one point from a YAML config")
    t.add_argument("config", help="point config (see examples/tiny.yaml)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set model.d_model=128 (repeatable)")
    t.add_argument("--out", default="runs/points", help="folder for the parquet rows (default: runs/points)")
    t.add_argument("--checkpoint-dir", help="save/resume checkpoints here")
    from .execute.cli import track_args
    track_args(t, "<out>/_tracking")
    t.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    t.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                   help="off a terminal: seconds between plain progress lines (default 30)")
    t.set_defaults(func=_train)

    r = sub.add_parser("prepare", help="tokenize a sweep's (or a point's) dataset into the shared token store")
    r.add_argument("target", help="a sweep spec (sweeps/data.yaml) or a point config")
    r.add_argument("--scale", default="auto", choices=("auto", "cpu", "paper"),
                   help="a spec's preset (as for launch; default auto: paper with a CUDA GPU, else cpu)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="a point config's overrides, as for train")
    r.add_argument("--estimate", action="store_true", help="only say how many tokens and GB it would prepare")
    r.set_defaults(func=_prepare)

    k = sub.add_parser("think", help="System-2 evaluation of a trained point (thinking longer, best-of-N)")
    k.add_argument("checkpoint", help="a point's checkpoint (train --checkpoint-dir DIR writes DIR/last.pt)")
    k.add_argument("--steps", default="1,2,3,6,15,30", help="thinking steps to report (default 1,2,3,6,15,30)")
    k.add_argument("--candidates", default="1,2,5,10", help="best-of-N values (default 1,2,5,10)")
    k.add_argument("--verify-steps", type=int, help="steps per candidate (default: the point's eval steps)")
    k.add_argument("--sets", default="val,ood:dyck,ood:arith,ood:python",
                   help="evaluation sets: val, ood:dyck, ood:arith, ood:python, hf:DATASET[:CONFIG]:COLUMN")
    k.add_argument("--tokens", type=int, default=16384,
                   help="tokens per set (default 16384: on a tiny EBT it puts the 95%% interval of the "
                        "validation improvement within +-1 percentage point; 4096 gave +-1.6)")
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1")
    k.add_argument("--sweep", default="thinking", help="sweep name the rows carry (default: thinking)")
    k.add_argument("--out", help="parquet file for the rows (default: think.parquet beside the checkpoint)")
    from .execute.cli import track_args
    track_args(k, "<folder of --out>/_tracking")
    k.set_defaults(func=_think)

    f = sub.add_parser("fit", help="fit scaling laws to results and write the report and figures")
    f.add_argument("source", help="results folder, a parquet file, or a CSV")
    f.add_argument("--out", default="analysis", help="output folder (default: analysis/)")
    f.add_argument("--metric", default="val_ppl",
                   help="column to fit (default: val_ppl). The paper's line is log10(perplexity) on "
                        "log10(x), so its slopes and gains need a perplexity; a loss (val_loss, nats) gives "
                        "log10(loss) on log10(x), a different law, and warns. Saturating and Chinchilla "
                        "laws are fitted on the loss (ln ppl) either way")
    f.add_argument("--axis", action="append", metavar="AXIS",
                   help="fit only this axis (repeatable): data, batch, depth, width, params, flops, "
                        "isoflop, or any numeric column; default: the axes each sweep varied")
    f.add_argument("--select", default="final", choices=("final", "last", "best"),
                   help="each trial's row to fit: final (its final evaluation, finished trials only; "
                        "default), last (its latest evaluation, running trials too) or best (its "
                        "lowest-metric evaluation)")
    f.add_argument("--extrapolate", action="append", metavar="AXIS=VALUE",
                   help="report the loss each family's law predicts at this scale, e.g. params=1e9, and "
                        "draw the figures out to it (by default they span the measured range only)")
    f.add_argument("--latex", action="store_true", help="also write fits.tex (every fitted parameter with "
                   "its 95%% interval, a LaTeX longtable) and tables.tex (report.md's scaling-rate and thinking "
                   "tables); both booktabs")
    f.add_argument("--fig-width", type=float, default=3.3, metavar="INCHES",
                   help="width of single-panel figures (default 3.3: one column of a two-column paper)")
    f.add_argument("--page-width", type=float, default=6.75, metavar="INCHES",
                   help="width of multi-panel figures (default 6.75: the text width)")
    f.add_argument("--font-size", type=float, default=7.5, metavar="PT",
                   help="base font size of the figures in points (default 7.5; ticks and legends 1 pt smaller)")
    f.set_defaults(func=_fit)

    from .execute.cli import register as _register_sweep; _register_sweep(sub)
    return p


# errno -> (what happened, the fix) for the file-system failures a user can act on
OS_FIXES = {
    errno.ENOSPC: ("no space left on the device", "free space, or write elsewhere (--out / --results), then run "
                   "the same command again: finished work is kept"),
    errno.EDQUOT: ("disk quota exceeded", "free space or raise the quota, then run the same command again"),
    errno.EACCES: ("permission denied", "fix the permissions, or write elsewhere (--out / --results)"),
    errno.EPERM: ("operation not permitted", "fix the permissions, or write elsewhere (--out / --results)"),
    errno.EROFS: ("read-only file system", "write elsewhere (--out / --results)"),
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.EISDIR: ("a folder, not a file", "pass a file"),
    errno.ENOTDIR: ("part of the path is not a folder", "check the path"),
}
# pyarrow's OSErrors carry no errno: their message says which
OS_MESSAGES = {"No space left": errno.ENOSPC, "Disk quota": errno.EDQUOT, "Permission denied": errno.EACCES,
               "Read-only file system": errno.EROFS, "No such file": errno.ENOENT}


def os_error_message(err: OSError) -> str:
    """An OSError as one line: what happened, to which file, and the fix."""
    text = (str(err).splitlines() or [type(err).__name__])[0][:200]
    code = err.errno or next((c for words, c in OS_MESSAGES.items() if words in text), None)
    what, fix = OS_FIXES.get(code, (err.strerror or text, "check the path and the machine, then run the "
                                    "same command again"))
    where = err.filename or (text if err.errno is None else "")    # pyarrow names the file in its text
    return f"{where}: {what}; {fix}" if where else f"{what}; {fix}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except BrokenPipeError:     # `ebt-sweep plan ... | head`: the reader left; not an error
        sys.stderr.close()
        return 0
    except (ConfigError, OSError) as e:
        if args.debug:
            raise
        message = str(e) if isinstance(e, ConfigError) else os_error_message(e)
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
