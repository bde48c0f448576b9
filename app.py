"""DreamWorld: `python app.py` serves the GUI; `generate`, `cinema`, `parts`, `upscale` and `info` work headless.

Headless commands print only the saved paths on stdout (`cinema`: the video's, last). Bad input
exits with status 2 and one line on stderr naming the field.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models come from models/, never from a hub at run time
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
if "-v" not in sys.argv and "--verbose" not in sys.argv:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from dreamworld import schema, spec  # noqa: E402


class UserError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message):
        raise UserError(message)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_request_flags(parser: argparse.ArgumentParser, exclude=(), fields=None) -> None:
    """One flag per schema field; values are validated by the schema, not argparse.

    Yes/no fields are switches (--gif / --no-gif); list fields repeat (--seeds 3 --seeds 7, or --seeds 3,7);
    every other flag takes a value."""
    fields = fields or schema.FIELDS
    for name, s in fields.items():
        if name in exclude:
            continue
        if s.type is bool:
            parser.add_argument(_flag(name), dest=name, default=argparse.SUPPRESS,
                                action=argparse.BooleanOptionalAction, help=s.help.replace("%", "%%"))
            continue
        many = s.kind in spec.LIST_KINDS
        help_text = f"{s.help} ({schema.allowed(name, fields)}{'; repeatable' if many else ''})"
        parser.add_argument(_flag(name), dest=name, default=argparse.SUPPRESS, metavar=name.upper(),
                            action="append" if many else "store", help=help_text.replace("%", "%%"))


def common_flags(default=None) -> Parser:
    """The flags every command takes, before or after its name. The subcommands' copies default to
    SUPPRESS, so that a flag given before the subcommand is not overwritten by the subcommand's default."""
    common = Parser(add_help=False)
    common.add_argument("--settings", default=default, help="settings file (default: settings.json)")
    common.add_argument("--models-dir", default=default, help="folder of models (default: from settings)")
    common.add_argument("--creations-dir", default=default, help="folder for creations (default: from settings)")
    common.add_argument("--verbose", "-v", action="store_true", default=default or False,
                        help="log progress to stderr")
    return common


def build_parser() -> Parser:
    common = common_flags(argparse.SUPPRESS)
    parser = Parser(prog="app.py", description="DreamWorld, a local Stable Diffusion studio.",
                    parents=[common_flags()])
    parser.add_argument("--listen", action="store_true", help="serve on 0.0.0.0 instead of 127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--auth", help="user:password required to open the GUI")
    parser.add_argument("--api", action="store_true", help="also serve the A1111-compatible HTTP API")
    parser.add_argument("--api-auth", metavar="USER:PASS", help="HTTP basic credentials the API requires "
                        "(several separated by commas)")
    for name in ("backend", "model", "device"):
        parser.add_argument(_flag(name), dest=name, help=f"default {name} for this session")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)

    generate = sub.add_parser("generate", parents=[common], help="make images and print their paths")
    add_request_flags(generate)
    generate.add_argument("--from", dest="from_file", metavar="FILE",
                          help="re-run a creation from the metadata embedded in FILE (flags override)")

    cinema = sub.add_parser("cinema", parents=[common],
                            help="make an animation; print its video path (GIF first, if asked for, mp4 last)")
    add_request_flags(cinema, fields=schema.CINEMA_FIELDS)
    cinema.add_argument("--from", dest="from_file", metavar="FILE",
                        help="re-run a cinema run from its folder, its cinema.json or one of its frames "
                             "(flags override)")
    cinema.add_argument("--resume", metavar="RUN",
                        help="continue an interrupted run (its folder) from its saved frames")

    add_parts_parser(sub, common)

    upscale = sub.add_parser("upscale", parents=[common], help="upscale an image into a new creation; "
                             "print its path")
    upscale.add_argument("file")
    upscale.add_argument("--scale", default="2", help="how many times larger (from 1 to 8; default 2)")
    upscale.add_argument("--upscaler", default="Lanczos",
                         help="Lanczos, or the name of a model in models/ESRGAN (default Lanczos)")
    upscale.add_argument("--device", default=None, help="torch device for upscaler models (default: settings)")

    info = sub.add_parser("info", parents=[common], help="print the metadata embedded in an image")
    info.add_argument("file")
    info.add_argument("--json", action="store_true", help="print the full request as JSON")
    return parser


# parts: each stage's request flags (with the engine's: backend, device, precision, jit) and its own
ENGINE = ("backend", "device", "precision", "jit")
PARTS = {
    "text": (("prompt", "negative_prompt", "model", "clip_skip"), "write NAME_text.tiff: the prompts' embeddings"),
    "noise": (("seed", "width", "height", "model"), "write NAME_state1.tiff: the starting latent of a seed"),
    "diffuse": (("steps", "guidance_scale", "scheduler", "model", "strength", "seed"),
                "write NAME_state2.tiff: the latent after the denoising loop (or part of it)"),
    "decode": (("vae", "model"), "write NAME.png and NAME_decoded.tiff: the decoder's output"),
    "encode": (("vae", "model", "width", "height"), "write NAME_state1.tiff: an image's latent"),
}


def add_parts_parser(sub, common) -> None:
    parts = sub.add_parser("parts", parents=[common], help="run one stage of the pipeline, keeping its state "
                                                           "in float TIFF files; print the written paths")
    stages = parts.add_subparsers(dest="stage", parser_class=Parser, required=True)
    for stage, (names, help_text) in PARTS.items():
        p = stages.add_parser(stage, parents=[common], help=help_text)
        add_request_flags(p, exclude=[n for n in schema.FIELDS if n not in names + ENGINE])
        p.add_argument("--out", required=True, metavar="NAME", help="the written files' name, without suffix")
        if stage == "diffuse":
            p.add_argument("state", help="NAME_state1.tiff (or a midway NAME_state2.tiff)")
            p.add_argument("text", help="NAME_text.tiff")
            p.add_argument("--from-step", type=int, default=None, metavar="A", help="continue a midway state")
            p.add_argument("--to-step", type=int, default=None, metavar="B", help="stop after step B")
        elif stage == "decode":
            p.add_argument("state", help="NAME_state2.tiff (or any latent)")
            p.add_argument("--tiled", action="store_true", help="decode in overlapping tiles (bounded memory)")
            p.add_argument("--float32", action="store_true", help="NAME_decoded.tiff as float32, not float16")
        elif stage == "encode":
            p.add_argument("image", help="the image to encode")


def given(args, fields) -> dict:
    """The request fields given on the command line (before or after the subcommand)."""
    return {name: getattr(args, name) for name in fields if getattr(args, name, None) is not None}


def make_world(args):
    from dreamworld import DreamWorld, settings
    folders = {name: settings.check_folder(name, getattr(args, name)) if getattr(args, name) else None
               for name in ("models_dir", "creations_dir")}
    return DreamWorld(settings=settings.load(args.settings, required=bool(args.settings)), **folders)


def stop_gracefully(world) -> None:
    """The first Ctrl-C stops at the next step, keeping what is saved; a second one stops at once."""
    def stop(signum, frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        world.interrupt()

    signal.signal(signal.SIGINT, stop)


def cmd_generate(args) -> int:
    from dreamworld import creations
    world = make_world(args)
    fields = {}
    if args.from_file:
        try:
            fields = creations.request_from_file(args.from_file, world.creations_dir)
        except creations.CreationError as e:
            raise UserError(f"from: {e}") from None
    fields.update(given(args, schema.FIELDS))
    printed = set()

    def show(path):  # each image's path as soon as it is saved
        if str(path) not in printed:
            printed.add(str(path))
            print(path, flush=True)

    stop_gracefully(world)
    result = world.create(on_progress=lambda progress: progress.latest and show(progress.latest), **fields)
    for path in result.paths:
        show(path)
    if result.interrupted:
        print(f"interrupted: {len(result.paths)} of {result.request.count} images are saved", file=sys.stderr)
        return 130
    return 0


def cmd_cinema(args) -> int:
    from dreamworld import creations
    from dreamworld.cinema import runs
    world = make_world(args)
    flags = given(args, schema.CINEMA_FIELDS)
    stop_gracefully(world)
    try:
        if args.resume:
            if flags or args.from_file:
                raise UserError("resume: a resumed run keeps its own settings; give no other flags")
            result = world.resume_cinema(args.resume)
        else:
            fields = runs.load_settings(args.from_file, world.creations_dir) if args.from_file else {}
            result = world.animate(**{**fields, **flags})
    except creations.CreationError as e:
        raise UserError(f"{'resume' if args.resume else 'from'}: {e}") from None
    for path in result.paths:
        print(path, flush=True)
    if result.interrupted:
        print(f"interrupted: {len(result.frames)} of {result.request.frames} frames are saved in {result.run_dir}; "
              f"continue with: app.py cinema --resume {result.run_dir}", file=sys.stderr)
        return 130
    return 0


def cmd_parts(args) -> int:
    from dreamworld.backends.base import Interrupted
    world = make_world(args)
    fields = given(args, schema.FIELDS)
    stages = world.parts
    try:
        if args.stage == "diffuse":
            written = stages.diffuse(args.state, args.text, args.out, from_step=args.from_step,
                                     to_step=args.to_step, **fields)
        elif args.stage == "decode":
            written = stages.decode(args.state, args.out, tiled=args.tiled, float32=args.float32, **fields)
        elif args.stage == "encode":
            written = stages.encode(args.image, args.out, **fields)
        else:
            written = getattr(stages, args.stage)(args.out, **fields)
    except Interrupted:
        print("interrupted", file=sys.stderr)
        return 130
    for path in written if isinstance(written, list) else [written]:
        print(path, flush=True)
    return 0


def cmd_upscale(args) -> int:
    world = make_world(args)
    print(world.upscale(args.file, args.scale, args.upscaler, args.device), flush=True)
    return 0


def cmd_info(args) -> int:
    from dreamworld import creations
    data = creations.read_creation(args.file)
    if args.json:
        print(json.dumps(data["request"] or creations.request_from_file(args.file), indent=2))
    elif data["parameters"]:
        print(data["parameters"])
    else:
        raise UserError(f"file: {args.file} holds no generation parameters")
    return 0


def cmd_gui(args) -> int:
    if not 1 <= args.port <= 65535:
        raise UserError(f"port must be from 1 to 65535, got {args.port}")
    from gui.app import launch
    world = make_world(args)
    for name in ("backend", "model", "device"):
        if getattr(args, name):
            world.settings.defaults[name] = getattr(args, name)
    world.request()  # validate the overrides before serving
    from dreamworld.api.server import parse_auth
    if args.api_auth is not None and not args.api:
        raise UserError("api-auth needs --api")
    try:
        api_auth = parse_auth(args.api_auth)
    except ValueError as e:
        raise UserError(str(e)) from None
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    if args.auth and len(auth) != 2:
        raise UserError("auth must look like user:password")
    note = world.use_known_model()  # an unknown model: one warning, and the GUI opens on the default
    if note:
        logging.getLogger("dreamworld").warning(note)
    host = "0.0.0.0" if args.listen else "127.0.0.1"
    try:
        launch(world, host=host, port=args.port, auth=auth, note=note, api=args.api, api_auth=api_auth)
    except OSError as e:
        if "empty port" not in str(e):  # Gradio's words for a port it cannot bind
            raise
        raise UserError(f"port {args.port} is in use on {host}; choose another with --port") from None
    return 0


def main(argv=None) -> int:
    from dreamworld.errors import USER_ERRORS

    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose or not args.command else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
        command = {"generate": cmd_generate, "cinema": cmd_cinema, "info": cmd_info, "parts": cmd_parts,
                   "upscale": cmd_upscale, None: cmd_gui}[args.command]
        return command(args)
    except (UserError, *USER_ERRORS) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
