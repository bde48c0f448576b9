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
import time

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
        flags = [_flag(name)] + [_flag(alias) for alias in s.aliases]
        if s.type is bool:
            parser.add_argument(*flags, dest=name, default=argparse.SUPPRESS,
                                action=argparse.BooleanOptionalAction, help=s.help.replace("%", "%%"))
            continue
        many = s.kind in spec.LIST_KINDS
        help_text = f"{s.help} ({schema.allowed(name, fields)}{'; repeatable' if many else ''})"
        parser.add_argument(*flags, dest=name, default=argparse.SUPPRESS, metavar=name.upper(),
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
    parser.add_argument("--auth", metavar="USER:PASS", help="credentials required to open the GUI (several "
                        "separated by commas; each user has their own jobs)")
    parser.add_argument("--api", action="store_true", help="also serve the A1111-compatible HTTP API")
    parser.add_argument("--api-auth", metavar="USER:PASS", help="HTTP basic credentials the API requires "
                        "(several separated by commas)")
    parser.add_argument("--queue", metavar="redis://HOST:PORT", help="hand image jobs to the workers of this "
                        "Redis (`app.py worker --queue URL` on each machine or GPU)")
    parser.add_argument("--remote-jobs", type=int, default=4, metavar="N",
                        help="with --queue: how many jobs the workers may run at once (default 4)")
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

    add_upscale_parser(sub, common)
    add_queue_parsers(sub, common)

    info = sub.add_parser("info", parents=[common], help="print the metadata embedded in an image")
    info.add_argument("file")
    info.add_argument("--json", action="store_true", help="print the full request as JSON")
    return parser


def add_upscale_parser(sub, common) -> None:
    upscale = sub.add_parser("upscale", parents=[common], help="upscale an image into a new creation; "
                             "print its path")
    upscale.add_argument("file")
    upscale.add_argument("--scale", default="2", help="how many times larger (from 1 to 8; default 2)")
    upscale.add_argument("--upscaler", default="Lanczos",
                         help="Lanczos, or the name of a model in models/ESRGAN (default Lanczos)")
    upscale.add_argument("--device", default=None, help="torch device for upscaler models (default: settings)")


# parts: each stage's request flags (with the engine's: backend, device, precision, jit) and its own
ENGINE = ("backend", "device", "precision", "jit")
PARTS = {
    "text": (("prompt", "negative_prompt", "model", "clip_skip"), "write NAME_text.tiff: the prompts' embeddings"),
    "noise": (("seed", "width", "height", "model"), "write NAME_state1.tiff: the starting latent of a seed"),
    "diffuse": (("steps", "guidance_scale", "ngms", "scheduler", "model", "strength", "seed"),
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


def add_queue_parsers(sub, common) -> None:
    queue = sub.add_parser("queue", parents=[common], help="list, cancel or reorder the jobs of the creations "
                                                           "folder's queue")
    actions = queue.add_subparsers(dest="action", parser_class=Parser, required=True)
    listing = actions.add_parser("list", parents=[common], help="print the jobs, one per line")
    listing.add_argument("--all", action="store_true", help="finished jobs too, not only pending and running")
    cancel = actions.add_parser("cancel", parents=[common], help="cancel a pending job or stop a running one")
    move = actions.add_parser("move", parents=[common], help="put a pending job before another, or last")
    move.add_argument("--before", type=int, metavar="OTHER", help="the job to put it before (default: last)")
    for action in (listing, cancel, move):
        action.add_argument("--user", help="act as this user: only their jobs (default: every user's)")
    for action in (cancel, move):
        action.add_argument("job", type=int, help="the job's number, as `queue list` shows it")
    worker = sub.add_parser("worker", parents=[common], help="run the queued jobs, including those a stopped "
                                                             "server left, until Ctrl-C")
    worker.add_argument("--exit-when-empty", action="store_true", help="stop when no job is left")
    worker.add_argument("--queue", dest="worker_queue", metavar="redis://HOST:PORT",
                        help="take image jobs from the server using this Redis instead of the local queue")
    worker.add_argument("--device", dest="worker_device", help="the device this worker uses (e.g. cuda:1), "
                                                              "whatever the jobs ask")


def given(args, fields) -> dict:
    """The request fields given on the command line (before or after the subcommand)."""
    return {name: getattr(args, name) for name in fields if getattr(args, name, None) is not None}


def make_world(args):
    from dreamworld import DreamWorld, settings
    folders = {name: settings.check_folder(name, getattr(args, name)) if getattr(args, name) else None
               for name in ("models_dir", "creations_dir")}
    return DreamWorld(settings=settings.load(args.settings, required=bool(args.settings)), **folders)


def make_service(world):
    """The queue on the world's creations folder, for this command's own jobs (leftovers of a stopped
    server are for the server or `app.py worker` to resume). The first Ctrl-C stops at the next step,
    keeping what is saved; a second one stops at once."""
    from dreamworld.service import Service
    service = Service(world, adopt=False)

    def stop(signum, frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        world.interrupt()

    signal.signal(signal.SIGINT, stop)
    return service


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

    service = make_service(world)
    task = service.create(on_image=lambda path, info: show(path), **fields)
    result = task.wait()
    for path in result.paths:
        show(path)
    if result.interrupted:
        print(f"interrupted: {len(result.paths)} of {len(result.request.image_seeds())} images are saved", file=sys.stderr)
        return 130
    return 0


def cmd_cinema(args) -> int:
    from dreamworld import creations
    from dreamworld.cinema import runs
    world = make_world(args)
    flags = given(args, schema.CINEMA_FIELDS)
    service = make_service(world)
    try:
        if args.resume:
            if flags or args.from_file:
                raise UserError("resume: a resumed run keeps its own settings; give no other flags")
            result = service.resume_cinema(args.resume).wait()
        else:
            fields = runs.load_settings(args.from_file, world.creations_dir) if args.from_file else {}
            result = service.cinema(**{**fields, **flags}).wait()
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


def cmd_queue(args) -> int:
    from dreamworld import jobs
    world = make_world(args)
    store = jobs.JobStore(world.creations_dir / jobs.QUEUE_FILE)
    user = jobs.safe_name("user", args.user) if args.user else jobs.ADMIN
    if args.action == "list":
        for job in store.list(user, jobs.STATES if args.all else jobs.OPEN):
            progress = f"image {job.image}/{job.images} step {job.step}/{job.steps}" if job.status == "running" else ""
            print("\t".join((job.describe(), progress, job.error or "")).rstrip(), flush=True)
    elif args.action == "cancel":
        job = store.cancel(args.job, user)
        print(f"{job.id}\t{job.status}" + ("\tstopping" if job.status == "running" else ""))
    else:
        store.move(args.job, args.before, user)
    return 0


def cmd_worker(args) -> int:
    world = make_world(args)
    if args.worker_device:
        world.request(device=args.worker_device)  # refused now if unknown
    if args.worker_queue:
        from dreamworld import distributed
        distributed.serve(world, args.worker_queue, device=args.worker_device, burst=args.exit_when_empty)
        return 0
    from dreamworld.service import Service
    service = Service(world)
    try:
        while not (args.exit_when_empty and service.idle()):
            time.sleep(1)
    finally:
        service.close()
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
    from dreamworld.service import Service
    from gui.app import launch
    if not 1 <= args.remote_jobs <= 64:
        raise UserError(f"remote-jobs must be from 1 to 64, got {args.remote_jobs}")
    world = make_world(args)
    for name in ("backend", "model", "device"):
        if getattr(args, name):
            world.settings.defaults[name] = getattr(args, name)
    world.request()  # validate the overrides before serving
    from dreamworld.api.server import parse_auth
    if args.api_auth is not None and not args.api:
        raise UserError("api-auth needs --api")
    try:
        api_auth = parse_auth(args.api_auth, "api-auth")
        auth = parse_auth(args.auth, "auth")  # each user sees their own jobs in the Queue tab
    except ValueError as e:
        raise UserError(str(e)) from None
    note = world.use_known_model()  # an unknown model: one warning, and the GUI opens on the default
    if note:
        logging.getLogger("dreamworld").warning(note)
    host = "0.0.0.0" if args.listen else "127.0.0.1"
    try:
        launch(world, host=host, port=args.port, auth=auth, note=note, api=args.api, api_auth=api_auth,
               service=Service(world, remote=args.queue, workers=args.remote_jobs))
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
                   "upscale": cmd_upscale, "queue": cmd_queue, "worker": cmd_worker, None: cmd_gui}[args.command]
        return command(args)
    except (UserError, *USER_ERRORS) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
