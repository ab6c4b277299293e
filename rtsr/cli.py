"""``python -m rtsr``: prepare-data, metrics, score, runtime, sr, evaluate (the challenge's
toolkit) and validate, pack, publish, registry (the participant's path).

Errors a user can act on (:class:`rtsr.errors.RTSRError`) are caught here, once, and printed
as one line on stderr with exit status 1; bad arguments exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from rtsr import __version__
from rtsr.arguments import HR_FOLDER_HELP, byte_size, hr_folder, non_negative_int, positive_int
from rtsr.constants import JPEG_QUALITY, SCALES, TARGET_SIZE, TIMED_PASSES, TRACK_SCALES, WARMUP_PASSES
from rtsr.devices import PRECISIONS
from rtsr.engines import ENGINE_CHOICES, MIN_FIDELITY_DB, engines_help
from rtsr.errors import InputError, RTSRError, printable
from rtsr.submissions.requests import HUB_LEASE_S, LEASE_S

if TYPE_CHECKING:
    import torch

    from rtsr.devices import Precision
    from rtsr.models import LoadedModel
    from rtsr.submissions.sandbox import Limits


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, like every other rtsr error, and that takes
    options only as written: argparse's default accepts any unambiguous prefix, so that
    ``pack --out X.zip`` would silently mean ``--out-dir X.zip``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(**kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


#: The options of every command, accepted before or after its name (``rtsr -q sr ...`` and
#: ``rtsr sr ... -q`` alike): flags and help.
GLOBAL_OPTIONS = (
    (("-q", "--quiet"), "no progress bars"),
    (("-v", "--verbose"), "log what happens (and the traceback of an internal error)"),
)


def _global_options(default: Any) -> argparse.ArgumentParser:
    """:data:`GLOBAL_OPTIONS` as a parent parser, each a ``store_true`` with ``default``.

    The top-level parser takes them with default False; each command's parser with
    ``argparse.SUPPRESS``, so that it sets one only where it is given after the command and
    never resets one given before it (a command's namespace is copied over the top level's).
    """
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("global options", "before the command or anywhere among its arguments")
    for flags, text in GLOBAL_OPTIONS:
        group.add_argument(*flags, action="store_true", default=default, help=text)
    return parent


class _CommandParser(_Parser):
    """The parser of a command (or of a command's action): takes the global options too."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["parents"] = [*kwargs.get("parents", ()), _global_options(argparse.SUPPRESS)]
        super().__init__(**kwargs)


def _scale(text: str) -> int:
    if text not in {str(s) for s in SCALES}:
        raise argparse.ArgumentTypeError(f"scale must be {' or '.join(map(str, SCALES))}, got {text}")
    return int(text)


def _shown_store(store: Any) -> str:
    """A store as the user named it: a folder as :func:`_shown` shows it, a dataset as hf://."""
    from rtsr.submissions.requests import SqliteStore

    return _shown(store.folder) if isinstance(store, SqliteStore) else store.describe()


def _shown(path: Path) -> str:
    """A path as a user would type it: relative to the working directory when below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _print_metrics_table(rows: list[tuple[str, dict[str, float]]], first: str = "image") -> None:
    """Print rows of the per-image metrics under a header, names padded to one width; the
    columns, headers and formats are the metric specification's (rtsr.leaderboard)."""
    from rtsr.results import IMAGE_METRICS

    width = max(len(first), *(len(name) for name, _ in rows))
    widths = [max(len(m.label), 9) for m in IMAGE_METRICS]
    print(f"{first:<{width}}  " + "  ".join(f"{m.label:>{w}}" for m, w in zip(IMAGE_METRICS, widths, strict=True)))
    for name, values in rows:
        cells = (f"{m.text(values[m.key]):>{w}}" for m, w in zip(IMAGE_METRICS, widths, strict=True))
        print(f"{name:<{width}}  " + "  ".join(cells))


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        metavar="ID|PATH",
        help="built-in (bicubic, rtsrn) or registered id, RTSRN checkpoint, submission folder or zip,"
        " or org/name@<commit> on the Hub",
    )
    p.add_argument(
        "--scale",
        type=_scale,
        metavar="{2,3}",
        help="upscaling factor: 2 (Track 1) or 3 (Track 2); needed for built-in models, a checkpoint knows its own",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--precision", choices=PRECISIONS, default=None, help="default: fp16 on CUDA, fp32 on CPU")
    precision.add_argument(
        "--fp16",
        dest="precision",
        action="store_const",
        const="fp16",
        help="same as --precision fp16 (weights and input in half)",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run a submission's code (a folder, zip, Hub repo or evaluated entry) in this process, not in the"
        " sandbox the worker uses: it then has your environment (tokens included), your files and the network;"
        " for code you wrote yourself. Built-in and bundled models always run here",
    )


def _add_protocol_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeat", type=positive_int, default=TIMED_PASSES, help=f"timed passes (default {TIMED_PASSES})")
    p.add_argument(
        "--warmup", type=non_negative_int, default=WARMUP_PASSES, help=f"untimed passes first (default {WARMUP_PASSES})"
    )
    p.add_argument(
        "--crop-size",
        type=positive_int,
        nargs=2,
        default=list(TARGET_SIZE),
        metavar=("H", "W"),
        help=f"output (HR) size timed; the input is this over the scale"
        f" (default {TARGET_SIZE[0]} {TARGET_SIZE[1]}, 4K)",
    )


def _engine_spec(text: str) -> Any:
    from rtsr.engines import ENGINES, EngineSpec

    # an engine alone runs in --precision; "openvino-bf16" names both
    return text if text in ENGINES else EngineSpec.parse(text)


def _add_engine_timing_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--engine",
        dest="engines",
        type=_engine_spec,
        nargs="+",
        action="extend",
        default=[],
        metavar="ENGINE[-PRECISION]",
        help="also time these engines beside the challenge's eager run, labelled, with their fidelity to FP32, each"
        f" in --precision, or e.g. openvino-bf16: {engines_help()}",
    )


#: What the ``--store`` of ``submit``, ``requests`` and ``worker`` says.
_STORE_HELP = "the request store (default: $RTSR_STORE or store/ in the repository)"


def build_parser() -> argparse.ArgumentParser:
    """The ``rtsr`` parser: the global options, then each of :data:`COMMANDS` with its own."""
    parser = _Parser(
        prog="rtsr",
        description="NTIRE 2023 Real-Time Super-Resolution: data, metrics, score, runtime, submissions.",
        parents=[_global_options(False)],
    )
    parser.add_argument("--version", action="version", version=f"rtsr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser)

    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.description)
        command.add_arguments(p)
    return parser


def _add_sandbox_args(p: argparse.ArgumentParser) -> None:
    from rtsr.submissions.sandbox import DEFAULT_LIMITS, format_bytes

    d = DEFAULT_LIMITS
    g = p.add_argument_group("sandbox limits", "bounds on the submission's code (see docs/security.md)")
    g.add_argument(
        "--timeout",
        type=positive_int,
        default=int(d.wall_seconds or 0),
        help=f"seconds the code checks may take, start to finish (default {d.wall_seconds:g})",
    )
    g.add_argument(
        "--memory-limit",
        type=byte_size,
        default=d.memory_bytes,
        metavar="SIZE",
        help=f"memory each of its processes may map, e.g. 8GB or 512MB (default {format_bytes(d.memory_bytes)})",
    )
    g.add_argument(
        "--cpu-limit",
        type=positive_int,
        default=None,
        metavar="SECONDS",
        help="CPU seconds each of its processes may use (default: no bound beyond --timeout)",
    )
    g.add_argument(
        "--process-limit",
        type=positive_int,
        default=d.processes,
        metavar="N",
        help=f"processes and threads it may run at once (default {d.processes})",
    )


def _limits(args: argparse.Namespace) -> Limits:
    from rtsr.submissions.sandbox import Limits

    return Limits(
        memory_bytes=args.memory_limit,
        wall_seconds=args.timeout,
        cpu_seconds=args.cpu_limit,
        processes=args.process_limit,
    )


def _args_prepare_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image-dir", required=True, type=hr_folder, help=HR_FOLDER_HELP)
    p.add_argument("--lr-out-dir", required=True, help="where LR images go (stem.jpg, or stem.png at --jpeg-level 0)")
    p.add_argument("--gt-out-dir", required=True, help="where the cropped GT images go (stem.png)")
    p.add_argument(
        "--downsample-factor", type=_scale, required=True, metavar="{2,3}", help="2 (Track 1) or 3 (Track 2)"
    )
    p.add_argument(
        "--jpeg-level",
        type=non_negative_int,
        default=JPEG_QUALITY,
        help=f"JPEG quality 1-100; 0 saves lossless PNG (default {JPEG_QUALITY})",
    )
    p.add_argument(
        "--crop-size",
        type=positive_int,
        nargs=2,
        metavar=("H", "W"),
        help="centre-crop the GT to H x W (both divisible by the scale)",
    )
    p.add_argument(
        "--resize",
        choices=("pil", "matlab"),
        default="pil",
        help="pil: Pillow's BICUBIC, the challenge's (default); matlab: MATLAB imresize bicubic with antialiasing",
    )


def _cmd_prepare_data(args: argparse.Namespace) -> None:
    from rtsr.degradation import prepare_data

    pairs = prepare_data(
        args.image_dir,
        args.lr_out_dir,
        args.gt_out_dir,
        args.downsample_factor,
        args.jpeg_level,
        tuple(args.crop_size) if args.crop_size else None,
        args.resize,
        progress=not args.quiet,
    )
    kind = f"JPEG q={args.jpeg_level}" if args.jpeg_level else "PNG"
    print(f"prepared {len(pairs)} images at x{args.downsample_factor} ({args.resize} bicubic, {kind})")
    print(f"  LR -> {args.lr_out_dir}")
    print(f"  GT -> {args.gt_out_dir}")


def _args_metrics(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sr-dir", required=True)
    p.add_argument("--gt-dir", required=True, type=hr_folder, help=HR_FOLDER_HELP)
    p.add_argument(
        "--crop-border",
        type=non_negative_int,
        default=0,
        help="pixels removed from each side first (default 0, the challenge's)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def _cmd_metrics(args: argparse.Namespace) -> None:
    from rtsr.metrics import mean_metrics, measure_folders
    from rtsr.outputs import write_json

    results = measure_folders(args.sr_dir, args.gt_dir, args.crop_border, args.device, progress=not args.quiet)
    mean = mean_metrics(list(results.values()))
    _print_metrics_table([*((n, m.as_dict()) for n, m in results.items()), ("mean", mean.as_dict())])
    if args.json:
        write_json(
            {"images": [{"name": n, **m.as_dict()} for n, m in results.items()], "mean": mean.as_dict()}, args.json
        )
        print(f"wrote {args.json}")


def _args_score(p: argparse.ArgumentParser) -> None:
    p.add_argument("--psnr", type=float, required=True, help="mean PSNR (RGB) of the method, dB")
    p.add_argument("--runtime", type=float, required=True, metavar="MS", help="mean runtime per image, ms")
    p.add_argument("--bicubic-psnr", type=float, required=True, help="mean PSNR (RGB) of bicubic on the same set, dB")
    p.add_argument("--json", action="store_true", help="print JSON instead of the bare score")


def _cmd_score(args: argparse.Namespace) -> None:
    from rtsr.scoring import score

    try:
        value = score(args.psnr, args.runtime, args.bicubic_psnr)
    except ValueError as e:
        raise RTSRError(str(e)) from None
    if args.json:
        print(
            json.dumps(
                {
                    "psnr": args.psnr,
                    "runtime_ms": args.runtime,
                    "bicubic_psnr": args.bicubic_psnr,
                    "psnr_gain": args.psnr - args.bicubic_psnr,
                    "score": value,
                }
            )
        )
    else:
        from rtsr.results import metric

        print(metric("score").text(value))


def _load(args: argparse.Namespace) -> tuple[LoadedModel, torch.device, Precision]:
    from rtsr.devices import resolve_device, resolve_precision
    from rtsr.loading import load

    device = resolve_device(args.device)
    precision = resolve_precision(device, args.precision)
    loaded = load(args.model, args.scale)
    # the precisions torch will run in: the model's, and those of torch engines timed beside it
    torch_engines = [e for e in getattr(args, "engines", []) if not isinstance(e, str) and e.engine != "openvino"]
    if "bf16" in [precision, *(e.precision for e in torch_engines)]:
        from rtsr.engines import emulated_bf16_warning

        # said before the run, which emulated bf16 can make minutes long
        warning = emulated_bf16_warning(loaded.module, device, loaded.descriptor.id)
        if warning:
            print(f"rtsr {args.command}: warning: {warning}", file=sys.stderr, flush=True)
    return loaded, device, precision


def _spec_in(engine: Any, precision: Precision) -> Any:
    """An ``--engine`` value as an EngineSpec: an engine alone runs in ``precision``."""
    from rtsr.engines import EngineSpec

    return EngineSpec(engine, precision) if isinstance(engine, str) else engine


def _print_engines(engines: list[dict[str, Any]], precision: str) -> None:
    """The engines timed beside the eager run (``runtime.engines`` of a report or document)."""
    from rtsr.engines import fidelity_text

    if not engines:
        return
    print(f"engines   beside eager {precision}, same input and passes (the challenge's figure is eager):")
    labels = [f"{e['engine']} {e['precision']}" for e in engines]
    width = max(map(len, labels))
    for label, e in zip(labels, engines, strict=True):
        db = e["fidelity_db"]
        fidelity = fidelity_text(db)
        print(
            f"  {label:<{width}}  mean {e['stats']['mean_ms']:.3f} ms  median {e['stats']['median_ms']:.3f}"
            f"  {e['relative_to_eager']:.2f}x eager  {fidelity}"
        )
        # labelled by what it computed in; where that is not what was asked, say so under it
        if e.get("note"):
            print(f"  {'':<{width}}  {e['engine']} {e['asked_precision']} asked: {e['note']}")


def _print_runtime(report: Any) -> None:
    model = report.model
    r, b = report.runtime, report.bicubic
    h, w = report.input_size
    print(f"model     {model['id']}: {model['name']}, x{model['scale']} (Track {model['track']})")
    print(f"size      {report.params:,} params, {report.flops / 1e9:.2f} GFLOPs (torch.utils.flop_counter, 2 per MAC)")
    print(f"device    {report.device}, {report.precision.upper()}, {report.timer} timer")
    print(
        f"input     1x3x{h}x{w} -> {report.output_size[0]}x{report.output_size[1]},"
        f" {report.warmup} warm-up + {r.passes} timed passes"
    )
    for name, s in (("runtime", r), ("bicubic", b)):
        print(f"{name:<9} mean {s.mean_ms:.3f} ms  median {s.median_ms:.3f}  p95 {s.p95_ms:.3f}  std {s.std_ms:.3f}")
    print(f"relative  {report.relative_to_bicubic:.2f}x bicubic on the same device")
    _print_engines(report.as_dict()["engines"], report.precision)
    if report.check is not None:
        c = report.check
        graph = "identical" if c["graph_agreement_db"] is None else f"{c['graph_agreement_db']:.1f} dB"
        print(
            f"sandboxed each of {c['passes_checked']} passes timed from outside the sandbox; size counted from"
            f" its exported graph ({graph} from {c['graph_passes_compared']} timed passes)"
        )
    if report.device_type == "cpu":
        print("note      CPU wall-clock times; the challenge's figures are FP16 on an RTX 3090 with CUDA events")


def _confined(args: argparse.Namespace) -> Any:
    """A :class:`rtsr.submissions.confined.ConfinedModel` for ``--model`` when it is someone
    else's code (a submission folder, zip, Hub repo or evaluated entry), as the worker runs it;
    None for a model to load here (built-in, a checkpoint, a bundled entry, or
    ``--in-process``)."""
    if args.in_process:
        return None
    from rtsr.devices import resolve_device
    from rtsr.submissions.confined import ConfinedModel, strangers_submission

    submission = strangers_submission(args.model)
    if submission is None:
        return None
    if getattr(args, "engines", None):
        raise InputError(
            "--engine times engines beside eager with the model in this process: a submission's code runs in"
            " the sandbox, where the protocol times eager alone (--in-process runs your own code here)"
        )
    if not args.quiet:  # said first, as the model may fail for what the sandbox withholds
        print(
            f"rtsr {args.command}: {submission.name} runs in the sandbox, as the worker runs it"
            " (no network, no token, read-only files; --in-process runs your own code here)",
            file=sys.stderr,
            flush=True,
        )
    return ConfinedModel(submission, resolve_device(args.device), args.precision, scale=args.scale)


def _args_runtime(p: argparse.ArgumentParser) -> None:
    _add_model_args(p)
    _add_protocol_args(p)
    _add_engine_timing_arg(p)
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")


def _cmd_runtime(args: argparse.Namespace) -> None:
    from rtsr.outputs import write_json
    from rtsr.runtime import lr_size, measure_runtime

    confined = _confined(args)
    if confined is not None:
        with confined:
            size = lr_size(confined.descriptor.scale, tuple(args.crop_size))
            report = confined.runtime_report(size, args.warmup, args.repeat, not args.quiet)
    else:
        loaded, device, precision = _load(args)
        specs = [_spec_in(e, precision) for e in args.engines]
        report = measure_runtime(
            loaded, device, precision, tuple(args.crop_size), args.warmup, args.repeat, not args.quiet, specs
        )
    _print_runtime(report)
    if args.json:
        write_json(report.as_dict(), args.json)
        print(f"wrote {args.json}")


def _args_sr(p: argparse.ArgumentParser) -> None:
    _add_model_args(p)
    p.add_argument("--lr-dir", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default="auto",
        help=f"auto (default): the fastest engine whose output is within {MIN_FIDELITY_DB:g} dB of FP32 eager on a"
        f" check image; or one engine, in --precision: {engines_help()}",
    )
    p.add_argument(
        "--tile",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="upscale images with a side above N LR pixels in N x N tiles, each with the model's receptive field"
        " around it, in bounded memory (default 0: whole images)",
    )


def _cmd_sr(args: argparse.Namespace) -> None:
    from rtsr.inference import upscale_folder, upscale_folder_with

    confined = _confined(args)
    if confined is not None:
        with confined:
            d, engines = confined.descriptor, list[Any]()

            def upscale_one(image: Any, on_tile: Any) -> Any:
                done = confined.upscale(image, args.engine, args.tile, on_tile)
                engines[:] = [done.engine]
                return done.sr

            desc = f"sr x{d.scale} {args.engine}"
            written = upscale_folder_with(upscale_one, args.lr_dir, args.out_dir, desc, not args.quiet, args.tile)
        tiled = f", tiles of {args.tile} px" if args.tile else ""
        print(f"upscaled {len(written)} images x{d.scale} with {d.id} on {confined.device.type}{tiled}, in the sandbox")
        if engines:
            print(f"engine {engines[0].describe()}")
        print(f"wrote {args.out_dir}")
        return
    loaded, device, _ = _load(args)
    d = loaded.descriptor
    written, choice = upscale_folder(
        loaded.module,
        d.scale,
        args.lr_dir,
        args.out_dir,
        device,
        args.precision,
        progress=not args.quiet,
        engine=args.engine,
        tile=args.tile,
        multiple=d.pad_multiple,
    )
    tiled = f", tiles of {args.tile} px" if args.tile else ""
    print(f"upscaled {len(written)} images x{d.scale} with {d.id} on {device.type}{tiled}")
    print(f"engine {choice.describe()}")
    print(f"wrote {args.out_dir}")


def _args_evaluate(p: argparse.ArgumentParser) -> None:
    _add_model_args(p)
    p.add_argument("--lr-dir", required=True)
    p.add_argument("--gt-dir", required=True, type=hr_folder, help=HR_FOLDER_HELP)
    p.add_argument("--out", required=True, metavar="FILE.json")
    p.add_argument("--dataset", metavar="NAME", help="name of the set in the results (default: the GT folder's name)")
    p.add_argument(
        "--crop-border",
        type=non_negative_int,
        default=0,
        help="pixels removed from each side before metrics (default 0)",
    )
    _add_protocol_args(p)
    _add_engine_timing_arg(p)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from rtsr.evaluation import evaluate
    from rtsr.results import METRICS, read_evaluation, write_evaluation

    confined = _confined(args)
    if confined is not None:
        with confined:
            doc = confined.evaluate(
                args.lr_dir, args.gt_dir, tuple(args.crop_size), args.warmup, args.repeat,
                args.crop_border, args.dataset, not args.quiet,
            )  # fmt: skip
        precision = confined.precision
    else:
        loaded, device, precision = _load(args)
        doc = evaluate(
            loaded,
            args.lr_dir,
            args.gt_dir,
            device,
            precision,
            crop_border=args.crop_border,
            dataset=args.dataset,
            target_size=tuple(args.crop_size),
            warmup=args.warmup,
            repeat=args.repeat,
            progress=not args.quiet,
            engines=[_spec_in(e, precision) for e in args.engines],
        )
    # checked against the schema before it is written, and printed as the leaderboard reads it
    evaluation = read_evaluation(write_evaluation(doc, args.out))
    print(
        f"{doc['model']['id']} on {doc['dataset']['name']} ({doc['dataset']['images']} images),"
        f" {precision.upper()} on {doc['device']}"
    )
    _print_metrics_table([("model", doc["metrics"]["mean"]), ("bicubic", doc["bicubic"]["mean"])], first="mean of")
    others = [m for m in METRICS if not m.per_image]
    width = max(len(m.label) for m in others)
    for m in others:
        print(f"{m.label:<{width}}  {m.text(m.read(evaluation))}")
    _print_engines(doc["runtime"].get("engines", []), precision)
    print(f"wrote {args.out}")


def _args_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", type=_scale, required=True, metavar="{2,3}")
    p.add_argument("--train-dir", required=True, help="HR images, directly or one folder down")
    p.add_argument("--val-dir", help="held-out HR images (default: every 20th training image, held out)")
    p.add_argument("--out", required=True, help="run folder: state.pt, train.log, and submission/ at the end")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--steps", type=positive_int, default=8000)
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--patch", type=positive_int, default=48, help="LR patch side (default 48)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate at the start (default 1e-3)")
    p.add_argument("--val-every", type=positive_int, default=500, help="steps between validations (default 500)")
    p.add_argument("--checkpoint-every", type=positive_int, default=500, help="steps between checkpoints (default 500)")
    p.add_argument("--seed", type=non_negative_int, default=0)


def _cmd_train(args: argparse.Namespace) -> None:
    from rtsr.training import TrainConfig, train

    config = TrainConfig(
        scale=args.scale,
        train_dir=args.train_dir,
        val_dir=args.val_dir,
        steps=args.steps,
        batch_size=args.batch_size,
        patch=args.patch,
        lr=args.lr,
        val_every=args.val_every,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
    )
    folder = train(config, Path(args.out), resume=args.resume, progress=not args.quiet)
    print(f"trained RTSRN x{args.scale} for {args.steps} steps -> {folder}")
    print(f"check it with: python -m rtsr validate {folder}")


_MARKS = {"pass": "PASS", "fail": "FAIL", "warn": "WARN", "skip": "SKIP"}


def _print_checks(title: str, checks: list[Any]) -> bool:
    """Print a checklist; return whether nothing failed."""
    print(title)
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"  {_MARKS[c.status]}  {c.name:<{width}}  {c.detail}")
    counts = {status: sum(c.status == status for c in checks) for status in _MARKS}
    words = {"pass": "passed", "fail": "failed", "warn": "warnings", "skip": "skipped"}
    summary = ", ".join(f"{n} {words[status]}" for status, n in counts.items() if n)
    ok = counts["fail"] == 0
    print(f"{'ok' if ok else 'FAILED'}: {summary}")
    return ok


def _args_validate(p: argparse.ArgumentParser) -> None:
    p.add_argument("submission", metavar="PATH|ZIP|org/name@rev")
    p.add_argument("--lr-dir", help="LR images whose results/ PNGs to check and reproduce")
    p.add_argument(
        "--scale",
        type=_scale,
        metavar="{2,3}",
        help="the model's scale when it has no submission.json (default: read from a forward pass in the"
        " sandbox); the checks confirm it",
    )
    _add_sandbox_args(p)


def _cmd_validate(args: argparse.Namespace) -> None:
    from rtsr.submissions.validation import validate

    validation = validate(args.submission, args.lr_dir and Path(args.lr_dir), _limits(args), args.scale)
    submission, meta = validation.submission, validation.submission.meta
    about = f"x{meta.scale}, Track {meta.track}" if meta.scale else "scale unknown"
    if not _print_checks(f"validate {submission.source} ({about})", validation.checks):
        raise SystemExit(1)


def _args_pack(p: argparse.ArgumentParser) -> None:
    p.add_argument("submission", metavar="PATH")
    p.add_argument("--out-dir", default=".", help="where the zip goes (default: here)")


def _cmd_pack(args: argparse.Namespace) -> None:
    from rtsr.submissions.submission import missing_entry_point, open_submission, pack

    submission = open_submission(args.submission)
    missing = missing_entry_point(submission)
    if missing:
        print(f"warning: {missing}", file=sys.stderr)
    target = pack(submission, Path(args.out_dir))
    print(f"wrote {target} ({target.stat().st_size / 1024:.0f} KiB)")


def _args_publish(p: argparse.ArgumentParser) -> None:
    p.add_argument("submission", metavar="PATH")
    p.add_argument("--repo-id", required=True, metavar="user/name")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--dry-run", action="store_true", help="stage exactly what would be uploaded, upload nothing")
    p.add_argument("--out", help="staging folder (default: publish-<name> here)")
    p.add_argument("--eval", metavar="FILE.json", help="an rtsr evaluate document whose numbers go on the card")
    p.add_argument("--lr-dir", help="also check results/ against these LR images")
    p.add_argument(
        "--scale",
        type=_scale,
        metavar="{2,3}",
        help="the model's scale when it has no submission.json (default: found by the checks)",
    )
    _add_sandbox_args(p)


def _cmd_publish(args: argparse.Namespace) -> None:
    from rtsr.submissions.publishing import publish
    from rtsr.submissions.submission import open_submission

    submission = open_submission(args.submission)
    if args.scale is not None:
        submission = submission.with_scale(args.scale)
    out = Path(args.out or f"publish-{submission.name}")
    result = publish(
        submission,
        args.repo_id,
        out,
        private=args.private,
        dry_run=args.dry_run,
        evaluation=args.eval and Path(args.eval),
        lr_dir=args.lr_dir and Path(args.lr_dir),
        limits=_limits(args),
    )
    _print_checks(f"validate {submission.source}", result.checks)
    files = sorted(p.relative_to(result.stage).as_posix() for p in result.stage.rglob("*") if p.is_file())
    print(f"staged {len(files)} files in {result.stage}: {', '.join(files[:8])}{' ...' if len(files) > 8 else ''}")
    if result.commit is None:
        print(f"dry run: nothing uploaded to {args.repo_id}")
    else:
        print(f"uploaded to https://huggingface.co/{args.repo_id} as commit {result.commit}")
        print(f"register it with: {result.registry_command(args.repo_id)}")


def _args_registry(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry", help="registry file (default: $RTSR_REGISTRY or submissions/registry.json)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=_CommandParser)
    actions.add_parser("list", help="print the registered entries")
    a = actions.add_parser("add", help="validate a submission and register it, pinned and hashed")
    a.add_argument("submission", metavar="org/name@rev|PATH", help="a Hub commit, or a folder below the registry's")
    a.add_argument("--id", help="registry id (default: the repo's or folder's name)")
    a.add_argument("--lr-dir", help="also check results/ against these LR images")
    a.add_argument(
        "--scale",
        type=_scale,
        metavar="{2,3}",
        help="the model's scale when it has no submission.json (default: found by the checks)",
    )
    _add_sandbox_args(a)


def _cmd_registry(args: argparse.Namespace) -> None:
    from rtsr.submissions.registry import Registry, entry_for
    from rtsr.submissions.submission import open_submission
    from rtsr.submissions.validation import run_validation

    registry = Registry.read(args.registry)
    if args.action == "list":
        if not registry.entries:
            print(f"{_shown(registry.path)}: no entries")
        for e in registry.entries:
            where = f"{e.source}@{e.revision[:12]}" if e.revision else e.source
            print(f"{e.id:<20} x{e.scale} Track {e.track}  {e.name} ({e.team or '?'})  {where}")
        return
    submission = open_submission(args.submission)
    if args.scale is not None:
        submission = submission.with_scale(args.scale)
    registry.check_addable(submission, args.id)  # a taken id, a folder outside: refused before the slow checks
    validation = run_validation(submission, args.lr_dir and Path(args.lr_dir), _limits(args))
    if not _print_checks(f"validate {submission.source}", validation.checks):
        raise RTSRError(f"{args.submission} failed validation; not registered")
    entry = entry_for(validation.submission, registry.path.parent, args.id)  # with the scale confirmed or found
    registry.add(entry)
    registry.write()
    print(f"registered {entry.id} (x{entry.scale}, {len(entry.sha256)} files hashed) in {_shown(registry.path)}")


def _args_submit(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "spec", metavar="org/name[@rev]|PATH", help="a Hub repo (pinned now to its commit), or a folder or zip"
    )
    p.add_argument("--track", type=int, choices=sorted(TRACK_SCALES), default=1, help="1 (x2) or 2 (x3); default 1")
    p.add_argument("--submitter", default=None, help="who submits (default: this machine's user)")
    p.add_argument("--store", help=_STORE_HELP)


def _cmd_submit(args: argparse.Namespace) -> None:
    import getpass

    from rtsr.submissions.requests import submit
    from rtsr.submissions.stores import open_store

    store = open_store(args.store)
    request = submit(store, args.spec, args.track, args.submitter or getpass.getuser())
    what = f"{request.repo}@{request.revision[:12]}" if request.repo else f"{args.spec} (copied as {request.spec})"
    print(f"{request.id}: {what}, Track {request.track}, pending in {_shown_store(store)}")


def _args_requests(p: argparse.ArgumentParser) -> None:
    p.add_argument("--status", choices=["pending", "running", "finished", "failed"], help="only this state")
    p.add_argument("--json", action="store_true", help="print a JSON list of request objects")
    p.add_argument("--store", help=_STORE_HELP)


def _cmd_requests(args: argparse.Namespace) -> None:
    from rtsr.submissions.stores import open_store

    store = open_store(args.store)
    requests = store.list(args.status)
    if args.json:
        print(json.dumps([r.as_dict() for r in requests], indent=2))
        return
    if not requests:
        print(f"{_shown_store(store)}: no requests" + (f" {args.status}" if args.status else ""))
    for r in requests:
        d = r.as_dict()
        # what a participant named (a folder, a reason from their code) is printed printable
        what = f"{r.repo}@{r.revision[:12]}" if r.repo else r.spec
        when = d["finished"] or d["started"] or d["submitted"]
        print(printable(f"{r.id}  {r.status:<8}  Track {r.track}  {what}  {r.submitter}  {when}"))
        for line in (r.reason or "").splitlines():
            print(f"    {printable(line)}")
        if r.entry_id:
            print(f"    served as {r.entry_id}; results: {', '.join(r.results)}")


def _args_worker(p: argparse.ArgumentParser) -> None:
    p.add_argument("--once", action="store_true", help="evaluate what is pending, then exit (default: keep polling)")
    p.add_argument("--backend", choices=["local", "hf-jobs"], default="local", help="where to evaluate (default local)")
    p.add_argument("--store", help=_STORE_HELP)
    p.add_argument(
        "--test-set",
        action="append",
        metavar="[NAME=]FOLDER|bundled:NAME|datasets/org/name[@rev][:folder]",
        help="HR images to evaluate on, degraded as the challenge does; repeatable"
        " (default: bundled:Set5, testsets/Set5 of the repository)",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument(
        "--poll", type=float, default=10.0, metavar="S", help="seconds between looks at the queue (default 10)"
    )
    p.add_argument(
        "--workers", type=positive_int, default=1, metavar="N", help="requests evaluated at once (default 1)"
    )
    p.add_argument(
        "--lease",
        type=float,
        default=None,
        metavar="S",
        help="a request whose worker stops renewing for this long goes back to pending"
        f" (default {LEASE_S:g}; {HUB_LEASE_S:g} for a store on the Hub)",
    )
    p.add_argument(
        "--offer-results",
        action="store_true",
        help="after a passing evaluation of a Hub repo, open a pull request on it that adds the results to its"
        " model card's model-index (off by default)",
    )
    p.add_argument(
        "--board-url",
        metavar="URL",
        help="the leaderboard the pull request links (default: the Space, when run on one)",
    )
    j = p.add_argument_group("hf-jobs backend", "each request as a Hugging Face Job (HfApi.run_job)")
    j.add_argument("--flavor", default="l4x1", help="the one GPU flavor every submission is timed on (default l4x1)")
    j.add_argument("--image", default=None, help="the job's image, e.g. hf.co/spaces/org/space (required for hf-jobs)")
    j.add_argument(
        "--test-set-token-env",
        default="RTSR_TEST_SET_TOKEN",
        metavar="VAR",
        help="environment variable holding a read-only token for a private test set (default RTSR_TEST_SET_TOKEN)",
    )
    j.add_argument("--job-timeout", type=positive_int, default=3600, metavar="S", help="seconds a job may run")
    _add_protocol_args(p)
    _add_sandbox_args(p)


def _cmd_worker(args: argparse.Namespace) -> None:
    import os

    from rtsr.submissions.backends import Backend, HfJobsBackend, LocalBackend
    from rtsr.submissions.evaluating import EvaluationSettings, TestSet
    from rtsr.submissions.stores import open_store
    from rtsr.submissions.worker import Offer, run_workers

    store = open_store(args.store)
    settings = EvaluationSettings(
        device=args.device,
        target_size=tuple(args.crop_size),
        warmup=args.warmup,
        repeat=args.repeat,
        limits=_limits(args),
    )
    if args.test_set:
        settings = EvaluationSettings(
            **{**settings.__dict__, "test_sets": tuple(TestSet.parse(t) for t in args.test_set)}
        )
    backend: Backend
    if args.backend == "local":
        backend = LocalBackend(settings, progress=not args.quiet)
    else:
        from huggingface_hub import HfApi

        if not args.image:
            raise RTSRError("--backend hf-jobs needs --image (the job's image, e.g. hf.co/spaces/org/space)")
        backend = HfJobsBackend(
            HfApi(), args.image, args.flavor, settings, os.environ.get(args.test_set_token_env), args.job_timeout
        )
    if not args.quiet:  # what the worker does, step by step: its loop, the evaluation, the job
        for name in ("worker", "evaluating", "backends"):
            logging.getLogger(f"rtsr.submissions.{name}").setLevel(logging.INFO)
    offer = None
    if args.offer_results:
        space = os.environ.get("SPACE_ID")  # set on a Space: the board is that Space
        offer = Offer(args.board_url or (f"https://huggingface.co/spaces/{space}" if space else None))
    done = run_workers(store, backend, args.workers, args.once, args.poll, lease_s=args.lease, offer=offer)
    for r in done:
        outcome = f"finished, served as {r.entry_id}" if r.status == "finished" else f"{r.status}: {r.reason}"
        print(printable(f"{r.id}: {outcome}"))
    if args.once:
        print(f"{len(done)} request{'' if len(done) == 1 else 's'} evaluated; {len(store.list('pending'))} pending")


@dataclass(frozen=True)
class Command:
    """One command of ``rtsr``: its name and help, what it takes (``add_arguments``, given its
    own parser) and what it does (``run``, given the parsed arguments)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]
    description: str | None = None


#: The commands, in the order ``rtsr --help`` lists them. A new command is a pair of
#: functions (``_args_<name>``, ``_cmd_<name>``) and one entry here.
COMMANDS: tuple[Command, ...] = (
    Command(
        "prepare-data",
        "degrade HR images as the challenge does (bicubic + JPEG)",
        _args_prepare_data,
        _cmd_prepare_data,
        description="Crop each image so its sides divide by the scale, downsample it with bicubic, save the LR as"
        " JPEG and the GT as PNG.",
    ),
    Command(
        "metrics",
        "PSNR/SSIM on RGB and Y of an SR folder against a GT folder",
        _args_metrics,
        _cmd_metrics,
        description="Pair images by file stem and print PSNR and SSIM on RGB and on BT.601 Y, per image and averaged.",
    ),
    Command(
        "score",
        "the challenge score from PSNR and runtime",
        _args_score,
        _cmd_score,
        description="score = 2^(PSNR - PSNR_bicubic) * 2 / (0.1 * sqrt(runtime_ms)); 0 when not above bicubic.",
    ),
    Command(
        "runtime",
        "time a model with the challenge's protocol, beside bicubic",
        _args_runtime,
        _cmd_runtime,
        description="Random input of the LR size of a 4K output; warm-up passes, then timed passes (CUDA events on"
        " GPU, wall clock on CPU); bicubic timed the same way.",
    ),
    Command(
        "sr",
        "upscale a folder of LR images to PNG",
        _args_sr,
        _cmd_sr,
        description="Upscale every image of --lr-dir; outputs are PNGs named as the inputs.",
    ),
    Command(
        "evaluate",
        "metrics, bicubic reference, runtime and score as one JSON document",
        _args_evaluate,
        _cmd_evaluate,
        description="Upscale --lr-dir, measure against --gt-dir beside bicubic, run the runtime protocol, and write"
        " the results document the leaderboard reads.",
    ),
    Command(
        "train",
        "train RTSRN on the challenge's degradation and write a submission folder",
        _args_train,
        _cmd_train,
        description="Random HR crops degraded on the fly (bicubic + JPEG, as prepare-data), L1 loss, Adam with a"
        " cosine-decaying learning rate, mixed precision; checkpoints for --resume; validation PSNR in"
        " the log.",
    ),
    Command(
        "validate",
        "check a submission: files, srmodel(), forward passes, FP16 fidelity, results/",
        _args_validate,
        _cmd_validate,
        description="Run the checklist on a submission folder, zip or org/name@<commit>. The submission's code runs"
        " in the sandbox (no network, read-only files, limits below); any failed check exits non-zero.",
    ),
    Command(
        "pack",
        "write submission_<id>.zip in the challenge's layout",
        _args_pack,
        _cmd_pack,
    ),
    Command(
        "publish",
        "validate, write a model card, and upload a submission to the Hugging Face Hub",
        _args_publish,
        _cmd_publish,
        description="Validate first; then stage the folder to upload (the submission and a README.md model card) and"
        " upload it as one commit with huggingface_hub. --dry-run stops after staging.",
    ),
    Command(
        "registry",
        "list or add the submissions the app may run",
        _args_registry,
        _cmd_registry,
    ),
    Command(
        "submit",
        "queue a submission for evaluation by a worker; print the request id",
        _args_submit,
        _cmd_submit,
    ),
    Command(
        "requests",
        "list the evaluation requests and their states",
        _args_requests,
        _cmd_requests,
    ),
    Command(
        "worker",
        "evaluate pending requests in the sandbox and record their results",
        _args_worker,
        _cmd_worker,
    ),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 1 an error, 2 bad arguments, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        next(c for c in COMMANDS if c.name == args.command).run(args)
    except RTSRError as e:
        print(f"rtsr {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"rtsr {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not bad input: still one line unless asked for more
        if args.verbose:
            raise
        print(
            f"rtsr {args.command}: internal error: {e.__class__.__name__}: {e} (rerun with -v for the traceback)",
            file=sys.stderr,
        )
        return 3
    return 0
