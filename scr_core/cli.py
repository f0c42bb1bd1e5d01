"""Command line: ``python -m scr_core caption|diagnose|answer|demo|eval|compare|calibrate|caption-folder``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

from .config import SCRConfig, check_depth, parse_layer_ranges
from .errors import ConfigError, exit_code
from .extras import require

log = logging.getLogger("scr_core")


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    """argparse type for layer lists (``config.parse_layer_ranges``)."""
    try:
        return parse_layer_ranges(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from .adapters import declared_options
    from .adapters.generic import parse_grid, parse_span

    p.add_argument("--model", help="checkpoint folder or hub id (default: the embedded default)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default=None, help="auto, float32, float16, bfloat16 (default: float32 on CPU)")
    p.add_argument("--attn", default="sdpa", help="attention implementation to load the model with")
    p.add_argument("--quantize", choices=("8bit", "4bit"), default=None,
                   help="load the decoder through bitsandbytes (vision tower, projector, LM head stay unquantized)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run the modeling code a checkpoint ships with it (it executes on this machine; only for "
                        "checkpoints whose source you trust)")
    family = p.add_argument_group("model family options (declared by each family's adapter)")
    for name, (option, model_types) in declared_options().items():
        family.add_argument(option.flag, dest=f"family_{name}", metavar=name.upper(), type=option.type, default=None,
                            help=f"{option.help} [{option.applies_to} option of: {', '.join(model_types)}]")
    generic = p.add_argument_group("generic adapter (models without a built-in adapter)")
    generic.add_argument("--adapter", choices=("auto", "generic"), default="auto",
                         help="auto: the adapter registered for the model type; generic: describe the layout")
    where = generic.add_mutually_exclusive_group()
    where.add_argument("--image-token-id", type=int, help="id of the image placeholder token (h*w copies per image)")
    where.add_argument("--image-span", type=parse_span, metavar="START,END",
                       help="ids of the tokens around each image's h*w visual tokens")
    generic.add_argument("--grid", type=parse_grid, metavar="HxW", help="visual token grid per image, e.g. 16x16")
    generic.add_argument("--layers-path", metavar="PATH",
                         help="dotted path to the decoder layers, e.g. model.language_model.layers")


def _add_scr_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=int, default=SCRConfig.k, help=f"source patches per image grid (default {SCRConfig.k})")
    p.add_argument("--lam", type=float, default=SCRConfig.lam, help=f"λ (default {SCRConfig.lam:.2f})")
    p.add_argument("--diag-layers", type=parse_layers, help="e.g. 8-16 (default: the paper's)")
    p.add_argument("--hook-layers", type=parse_layers, help="e.g. 0-11 (default: the family's)")
    p.add_argument("--query", choices=("post_image", "last"), default="post_image")
    p.add_argument("--selection", choices=("attention", "uniform"), default="attention",
                   help="uniform = the Uniform-Smooth ablation (random sources)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-border", action="store_true", help="allow sources on the grid border")
    p.add_argument("--slice-k", type=int, default=None,
                   help="sources per temporal slice of a video clip (default: K scaled by the slice's size)")


def _add_video_args(p: argparse.ArgumentParser) -> None:
    clips = p.add_argument_group("video clips (.mp4 .webm .mov .mkv, animated .gif)")
    clips.add_argument("--frames", type=int, default=None, help="frames to sample from a clip (default: the family's)")
    clips.add_argument("--fps", type=float, default=None,
                       help="frames per second of video to sample (with --frames: at most that many)")


def _media(args, path: str):
    """The positional input: a ``Clip`` (with --frames / --fps) for a video file, else the image path."""
    from .video import Clip, is_clip

    if is_clip(path):
        return Clip(path, frames=args.frames, fps=args.fps)
    if args.frames is not None or args.fps is not None:
        raise ConfigError(f"--frames and --fps sample video clips; {path} is an image")
    return path


def _check_layers(args, cfg: SCRConfig) -> None:
    """Explicit layer ranges against the checkpoint's depth, before its weights load."""
    from .loading import decoder_depth

    model = args.model
    if model is None:
        from .defaults import default_model

        model = default_model()[0]
    depth = decoder_depth(model) if Path(str(model)).is_dir() else None
    for name in ("diag_layers", "hook_layers"):
        check_depth("--" + name.replace("_", "-"), getattr(cfg, name), depth)


def _config(args) -> SCRConfig:
    cfg = SCRConfig(k=args.k, lam=args.lam, diag_layers=args.diag_layers, hook_layers=args.hook_layers,
                    query=args.query, selection=args.selection, seed=args.seed,
                    exclude_border=not args.keep_border, slice_k=getattr(args, "slice_k", None))
    _check_layers(args, cfg)
    return cfg


def _pipeline(args):
    from functools import partial

    from .defaults import default_model
    from .loading import LoadOptions
    from .pipeline import SCRPipeline

    if not args.verbose:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a bar per load is noise on a command line
    model = args.model
    if model is None:
        path, description = default_model()
        print(f"model: {description} ({path})", file=sys.stderr)
        model = path
    adapter_options = {key[len("family_"):]: value for key, value in vars(args).items()
                       if key.startswith("family_") and value is not None}
    generic_flags = [flag for flag, value in (("--image-token-id", args.image_token_id),
                                              ("--image-span", args.image_span), ("--grid", args.grid),
                                              ("--layers-path", args.layers_path)) if value is not None]
    adapter = None
    if args.adapter == "generic":
        from .adapters.generic import GenericAdapter

        if args.grid is None or args.layers_path is None or (args.image_token_id is None and args.image_span is None):
            raise ConfigError("--adapter generic needs --grid HxW, --layers-path PATH and one of "
                              "--image-token-id N or --image-span START,END")
        adapter = partial(GenericAdapter, grid=args.grid, layers_path=args.layers_path,
                          image_token_id=args.image_token_id, image_span=args.image_span)
    elif generic_flags:
        raise ConfigError(f"{', '.join(generic_flags)} only apply with --adapter generic")
    options = LoadOptions(dtype=args.dtype, device=args.device, attn_implementation=args.attn,
                          adapter_options=adapter_options, trust_remote_code=args.trust_remote_code,
                          quantization=args.quantize)
    return SCRPipeline.from_pretrained(model, options, adapter=adapter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scr_core", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)

    cap = sub.add_parser("caption", help="caption an image or a video clip with (default) or without SCR")
    cap.add_argument("image", help="an image or a video clip")
    _add_video_args(cap)
    _add_preset_args(cap)
    cap.add_argument("--no-scr", action="store_true", help="vanilla generation")
    cap.add_argument("--max-new-tokens", type=int, default=64)
    cap.add_argument("--json", action="store_true", help="print the full result as JSON")
    _add_model_args(cap)
    _add_scr_args(cap)

    diag = sub.add_parser("diagnose", help="diagnostic pass: attention map, entropy, plan, heatmap")
    diag.add_argument("image", help="an image or a video clip (one map per slice)")
    diag.add_argument("--prompt", default=None)
    _add_video_args(diag)
    diag.add_argument("--heatmap", type=Path, help="write the heatmap here (.png, .jpg, .webp, ...)")
    diag.add_argument("--overwrite", action="store_true", help="replace an existing heatmap file")
    _add_model_args(diag)
    _add_scr_args(diag)

    ans = sub.add_parser("answer", help="answer a question about an image or a video clip")
    ans.add_argument("image", help="an image or a video clip")
    ans.add_argument("question")
    ans.add_argument("--no-scr", action="store_true", help="vanilla generation")
    ans.add_argument("--long", action="store_true", help="no short-answer instruction after the question")
    ans.add_argument("--max-new-tokens", type=int, default=8)
    _add_video_args(ans)
    _add_model_args(ans)
    _add_scr_args(ans)

    demo = sub.add_parser("demo", help="caption a bundled scene with and without SCR (offline, CPU)")
    demo.add_argument("--out", type=Path, default=Path("scr_demo"), help="folder for the heatmap PNG")
    _add_model_args(demo)

    from .eval.cli import add_parsers

    add_parsers(sub, _add_model_args, _add_scr_args)
    _add_calibrate_parser(sub)
    _add_caption_folder_parser(sub)
    for name in ("eval", "caption-folder"):
        _add_engine_args(sub.choices[name])
    return parser


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process (or the ranks of accelerate launch / torchrun); ray: a pool of Ray "
                        "actors on this machine or a cluster, same outputs (docs/scale-out.md; the ray extra)")
    ray = p.add_argument_group("Ray engine (--engine ray)")
    ray.add_argument("--ray-address", metavar="HOST:PORT",
                     help="the cluster to join (default: RAY_ADDRESS, else a local Ray sized to this machine)")
    ray.add_argument("--ray-actors", type=int, metavar="N",
                     help="model copies at work (default: one per GPU of the cluster with GPUs per actor, else 1)")
    ray.add_argument("--ray-cpus-per-actor", type=float, metavar="C", help="CPUs Ray reserves per actor (default 1)")
    ray.add_argument("--ray-gpus-per-actor", type=float, metavar="G",
                     help="GPUs Ray reserves per actor (default: 1 with --device cuda, else 0)")
    ray.add_argument("--ray-task-retries", type=int, metavar="N",
                     help="retries of a batch whose actor process died (default 3; actors are always recreated)")


RAY_FLAGS = ("ray_address", "ray_actors", "ray_cpus_per_actor", "ray_gpus_per_actor", "ray_task_retries")


def _ray_engine(args):
    """A ``RayEngine`` for ``--engine ray`` (None for ``local``), every flag checked before a model loads."""
    import os
    from functools import partial

    given = ["--" + name.replace("_", "-") for name in RAY_FLAGS if getattr(args, name) is not None]
    if args.engine != "ray":
        if given:
            raise ConfigError(f"{', '.join(given)} only apply with --engine ray")
        return None
    require("ray", "--engine ray")
    from .ray_engine import RayEngine, RayOptions

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("--engine ray runs from one process: start it without accelerate launch / torchrun")
    if args.device.startswith("cuda:"):
        raise ConfigError(f"with --engine ray, Ray gives each actor its GPU(s): use --device cuda, not {args.device}")
    gpus = args.ray_gpus_per_actor if args.ray_gpus_per_actor is not None else float(args.device == "cuda")
    options = RayOptions(address=args.ray_address, actors=args.ray_actors, gpus_per_actor=gpus, verbose=args.verbose,
                         cpus_per_actor=1.0 if args.ray_cpus_per_actor is None else args.ray_cpus_per_actor,
                         task_retries=3 if args.ray_task_retries is None else args.ray_task_retries)
    return RayEngine(partial(_pipeline, args), options)


def _add_caption_folder_parser(sub) -> None:
    cf = sub.add_parser("caption-folder", help="caption a folder tree (or a list file) into resumable JSON lines "
                                               "(data-parallel under accelerate launch / torchrun)")
    cf.add_argument("source", type=Path, help="image folder (searched recursively; video clips too) or a text file "
                                              "of image or clip paths")
    cf.add_argument("--out", type=Path, required=True, help="captions file (.jsonl; resumed if it exists)")
    cf.add_argument("--txt", action="store_true", help="also write <image stem>.txt beside each image")
    cf.add_argument("--overwrite-txt", action="store_true", help="replace existing .txt files beside the images")
    cf.add_argument("--prefix", default="", help="with --txt: a trigger word put before each caption "
                                                 "(ohwx -> 'ohwx, a cup ...')")
    cf.add_argument("--suffix", default="", help="with --txt: words put after each caption "
                                                 "('best quality' -> 'a cup, best quality')")
    cf.add_argument("--txt-dir", type=Path, default=None,
                    help="with --txt: write the .txt files under this folder, the source's subfolders and names "
                         "mirrored, instead of beside the images")
    scr = cf.add_mutually_exclusive_group()
    scr.add_argument("--scr", dest="scr", action="store_true", default=True, help="caption with SCR (default)")
    scr.add_argument("--no-scr", dest="scr", action="store_false", help="vanilla captions")
    _add_preset_args(cf)
    cf.add_argument("--max-new-tokens", type=int, default=64)
    cf.add_argument("--batch-size", type=int, default=8)
    _add_video_args(cf)
    _add_model_args(cf)
    _add_scr_args(cf)


def _add_calibrate_parser(sub) -> None:
    from .calibrate.grid import DEFAULT_KS, DEFAULT_LAMS

    cal = sub.add_parser("calibrate", help="does SCR help this model on these yes/no questions? (grid, held-out "
                                           "split, McNemar + Holm, bootstrap CI, report and plot)")
    cal.add_argument("--data", type=Path, required=True,
                     help="POPE folder, AMBER folder (discriminative queries) or a .jsonl question file")
    cal.add_argument("--format", choices=("auto", "pope", "amber", "jsonl"), default="auto")
    cal.add_argument("--out", type=Path, required=True,
                     help="folder for report.md, calibration.json/.png, answers.json")
    cal.add_argument("--overwrite", action="store_true", help="replace the files of an earlier calibration in --out")
    cal.add_argument("--lam", default=",".join(f"{x:g}" for x in DEFAULT_LAMS), help="λ values (default %(default)s)")
    cal.add_argument("--k", default=",".join(map(str, DEFAULT_KS)), help="K values (default %(default)s)")
    cal.add_argument("--hook-layers", action="append", default=None, metavar="SET",
                     help="a hook-layer set to try, written as for caption (0-11, or 0-3,8); repeat the flag or "
                          "separate sets with ';' for several (default: 0-7, 0-11 and 0-15, scaled on decoders "
                          "under 28 layers)")
    cal.add_argument("--diag-layers", type=parse_layers, help="shared by the grid (default: the paper's)")
    cal.add_argument("--query", choices=("post_image", "last"), default="post_image")
    cal.add_argument("--keep-border", action="store_true", help="allow sources on the grid border")
    cal.add_argument("--holdout", type=float, default=0.5, help="share of the images held out (default 0.5)")
    cal.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm (default 0.05)")
    cal.add_argument("--limit", type=int, help="seeded subset of questions (per POPE split)")
    cal.add_argument("--seed", type=int, default=0, help="fixes the subset, the split and the bootstrap")
    cal.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    cal.add_argument("--batch-size", type=int, default=8)
    cal.add_argument("--removal", action="store_true",
                     help="also run the removal ablation (SCR's sources zeroed) at each K and hook range")
    _add_model_args(cal)


def _add_preset_args(p: argparse.ArgumentParser) -> None:
    from .defaults import TESTBED_PRESET_NOTE
    from .prompts import CAPTION_LENGTHS, CAPTION_PRESETS

    p.add_argument("--preset", choices=tuple(CAPTION_PRESETS), default=None,
                   help="what to ask for (scr_core.prompts.CAPTION_PRESETS; default: descriptive, or custom "
                        f"when --prompt is given). Without --model, {TESTBED_PRESET_NOTE}")
    p.add_argument("--length", choices=tuple(CAPTION_LENGTHS), default="any", help="caption length (default any)")
    p.add_argument("--prompt", default=None, help="your own instruction (the custom preset)")


def _caption_instruction(args) -> str | None:
    """The instruction ``--preset``, ``--length`` and ``--prompt`` ask for; ``None`` without any of them
    (the library's default, the descriptive preset)."""
    from .prompts import instruction_for

    if args.preset is None and args.length == "any" and args.prompt is None:
        return None
    preset = args.preset or ("custom" if args.prompt is not None else "descriptive")
    if args.prompt is not None and preset != "custom":
        raise ConfigError(f"--prompt is the custom preset's instruction; drop it or use --preset custom "
                          f"(not {preset})")
    return instruction_for(preset, args.length, args.prompt)


def _say_preset_note(args, prompt: str | None) -> None:
    """On stderr, when the bundled testbed is asked what it was not trained on (``preset_note``)."""
    from .defaults import TESTBED_CHECKPOINT, preset_note

    note = preset_note(args.model if args.model is not None else TESTBED_CHECKPOINT, prompt)
    if note:
        print(note, file=sys.stderr)


def _check_prompt_arg(args) -> None:
    from .prompts import check_prompt

    if args.prompt is not None:
        check_prompt(args.prompt)


def cmd_caption(args) -> None:
    from .prompts import CAPTION_PROMPT

    prompt = _caption_instruction(args)
    scr = None if args.no_scr else _config(args)
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1 (got {args.max_new_tokens})")
    pipe = _pipeline(args)
    _say_preset_note(args, prompt)
    result = pipe.caption(_media(args, args.image), prompt, scr=scr, max_new_tokens=args.max_new_tokens)[0]
    if args.json:
        print(json.dumps({"prompt": prompt or CAPTION_PROMPT, **result.to_dict()}, indent=2))
    else:
        print(result.text)
        print(result.timings.summary(), file=sys.stderr)


def cmd_diagnose(args) -> None:
    from .heatmap import IMAGE_SUFFIXES, save_heatmap
    from .outputs import check_new_file

    _check_prompt_arg(args)
    cfg = _config(args)
    if args.heatmap:
        check_new_file(args.heatmap, IMAGE_SUFFIXES, overwrite=args.overwrite)
    pipe = _pipeline(args)
    batch = pipe.prepare(_media(args, args.image), args.prompt)
    diagnosis = pipe.diagnose(batch, config=cfg)[0]
    for index, (_, grid) in enumerate(zip(diagnosis.maps, diagnosis.plan.grids)):
        where = diagnosis.grids[index].frames if index < len(diagnosis.grids) else None
        name = f"grid {index}" if where is None else f"grid {index} (clip slice, frames {where[0]}-{where[1] - 1})"
        print(f"{name}: {grid.height}x{grid.width}, {grid.num_sources} sources, "
              f"{len(grid.neighbours)} neighbours, coverage {grid.coverage:.0%}")
        print(f"  sources (row, col): {[divmod(s, grid.width) for s in grid.sources]}")
    print(f"entropy: {diagnosis.entropy:.3f} nats")
    if args.heatmap:
        save_heatmap(args.heatmap, batch.images[0], diagnosis)
        print(f"heatmap: {args.heatmap}")


def cmd_answer(args) -> None:
    from .prompts import check_prompt

    check_prompt(args.question)
    media = _media(args, args.image)
    scr = None if args.no_scr else _config(args)
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1 (got {args.max_new_tokens})")
    result = _pipeline(args).answer(media, args.question, scr=scr, max_new_tokens=args.max_new_tokens,
                                    short_answer=not args.long)[0]
    print(result.text)
    print(result.timings.summary(), file=sys.stderr)


def cmd_demo(args) -> None:
    from .demo import run_demo

    run_demo(_pipeline(args), args.out)


def cmd_eval(args) -> None:
    require("eval", "python -m scr_core eval")
    from .eval.cli import cmd_eval as run_eval

    run_eval(args, _pipeline, _config, _ray_engine)


def cmd_calibrate(args) -> None:
    require("eval", "python -m scr_core calibrate")
    from .calibrate import calibrate, load_questions, split_holdout, write_outputs
    from .calibrate.grid import parse_hook_grid, parse_numbers
    from .calibrate.report import OUTPUT_FILES
    from .runs import check_sizes

    check_sizes(args.limit, args.batch_size)
    lams, ks = parse_numbers(args.lam, float, "--lam"), parse_numbers(args.k, int, "--k")
    hooks = parse_hook_grid(args.hook_layers) if args.hook_layers else None
    if args.bootstrap < 100:
        raise ConfigError(f"--bootstrap must be at least 100 resamples (got {args.bootstrap})")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a file; give a folder")
    in_the_way = [args.out / name for name in OUTPUT_FILES if (args.out / name).exists()]
    if in_the_way and not args.overwrite:
        raise ConfigError(f"{in_the_way[0]} exists (an earlier calibration); pass --overwrite or another --out")
    base = SCRConfig(diag_layers=args.diag_layers, query=args.query, exclude_border=not args.keep_border)
    _check_layers(args, base)
    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha must be between 0 and 1 (got {args.alpha})")
    questions = load_questions(args.data, args.format, args.limit, args.seed)
    split_holdout(questions, args.holdout, args.seed)  # a bad --holdout fails before the model loads
    pipe = _pipeline(args)
    result = calibrate(pipe, questions, lams=lams, ks=ks, hook_layers=hooks, base=base, holdout=args.holdout,
                       seed=args.seed, alpha=args.alpha, batch_size=args.batch_size, n_resamples=args.bootstrap,
                       progress=True, work_dir=args.out, removal=args.removal)
    result.meta.update(model=str(args.model or "embedded default"), data=str(args.data))
    paths = write_outputs(result, args.out)
    print(result.verdict)
    print(f"report: {paths['report.md']}")


def cmd_caption_folder(args) -> None:
    from contextlib import nullcontext

    from .caption_folder import caption_folder, check_caption_run
    from .caption_quality import degenerate_line
    from .runs import check_sizes
    from .shards import Shard, launched_shard

    prompt = _caption_instruction(args)
    check_sizes(None, args.batch_size)
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1 (got {args.max_new_tokens})")
    scr = _config(args) if args.scr else None
    engine = _ray_engine(args)
    shard, args.device = (Shard(), args.device) if engine else launched_shard(args.device)
    if (args.txt_dir is not None or args.suffix) and not args.txt:
        raise ConfigError("--txt-dir and --suffix apply to the .txt files: add --txt")
    check_caption_run(args.source, args.out, args.txt, args.overwrite_txt, shard, args.txt_dir,
                      args.prefix, args.suffix)  # before the model loads
    if shard.main:
        _say_preset_note(args, prompt)
    with engine or nullcontext():
        summary = caption_folder(None if engine else _pipeline(args), args.source, args.out, scr=scr, prompt=prompt,
                                 max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, txt=args.txt,
                                 overwrite_txt=args.overwrite_txt, prefix=args.prefix, suffix=args.suffix,
                                 txt_dir=args.txt_dir, model_name=str(args.model or "embedded default"),
                                 shard=shard, engine=engine, frames=args.frames, fps=args.fps)
    if not shard.main:
        return
    print(f"{summary['captioned']} of {summary['images']} images captioned: {args.out}")
    for entry in summary["unreadable"]:
        print(f"unreadable: {entry['image']}: {entry['error']}", file=sys.stderr)
    degenerate = [(e["image"], e["reason"]) for e in summary["degenerate"]]
    if degenerate:
        print(degenerate_line(degenerate, summary["captioned"]), file=sys.stderr)
    for entry in summary.get("txt_failed", []):
        print(f"not written: {entry['file']}: {entry['error']}", file=sys.stderr)


def cmd_compare(args) -> None:
    require("eval", "python -m scr_core compare")
    from .eval.cli import cmd_compare as run_compare

    run_compare(args)


COMMANDS = {"caption": cmd_caption, "diagnose": cmd_diagnose, "answer": cmd_answer, "demo": cmd_demo, "eval": cmd_eval,
            "compare": cmd_compare, "calibrate": cmd_calibrate,
            "caption-folder": cmd_caption_folder}


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Command-line users need the message, not the library's source line."""
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    warnings.formatwarning = _one_line_warning
    return exit_code(lambda: COMMANDS[args.command](args), args.debug)
