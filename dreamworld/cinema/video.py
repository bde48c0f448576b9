"""Writing and reading videos: mp4 through imageio-ffmpeg's bundled ffmpeg, GIF through Pillow.

Files are written to a hidden temporary name beside the target and renamed when complete, so a
failed or interrupted encoding never leaves a half-written video. On Linux the ffmpeg that encodes
is killed when the thread that started it dies (even by `kill -9`), instead of finishing a
temporary file nobody will rename; one left all the same (power loss) is removed when the run
resumes (files.remove_stale_temp_files).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image

from .. import files
from ..errors import VideoError

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif"}


def ffmpeg_exe() -> str:
    """The ffmpeg bundled with imageio-ffmpeg (or IMAGEIO_FFMPEG_EXE)."""
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # imageio-ffmpeg missing or its binary unusable
        raise VideoError(f"no ffmpeg is available to write mp4 files ({e}); reinstall imageio-ffmpeg") from None


_PR_SET_PDEATHSIG = 1
_death_signal_lock = threading.Lock()


def _ffmpeg_dies_with_its_parent() -> None:
    """Linux: every ffmpeg that imageio-ffmpeg starts gets SIGKILL when the thread that started it dies.

    imageio-ffmpeg takes no Popen arguments, so its private `_popen_kwargs()` is wrapped to add
    prctl(PR_SET_PDEATHSIG) to the preexec_fn it already uses (os.setpgrp); where that function is
    missing (another imageio-ffmpeg version) or IMAGEIO_FFMPEG_NO_PREVENT_SIGINT asks for no preexec_fn,
    nothing changes and a killed run may leave ffmpeg finishing its temp file."""
    if not sys.platform.startswith("linux") or os.getenv("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT"):
        return
    from imageio_ffmpeg import _io

    with _death_signal_lock:
        original = getattr(_io, "_popen_kwargs", None)
        if original is None or getattr(original, "dies_with_parent", False):
            return
        import ctypes
        prctl = ctypes.CDLL(None, use_errno=True).prctl

        def popen_kwargs(*args, **kwargs):
            options = original(*args, **kwargs)
            before, parent = options.get("preexec_fn"), os.getpid()

            def preexec():
                if before is not None:
                    before()
                prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
                if os.getppid() != parent:  # the parent died before the signal was asked for
                    os._exit(1)
            return {**options, "preexec_fn": preexec}

        popen_kwargs.dies_with_parent = True
        _io._popen_kwargs = popen_kwargs


def _fps(fps: float):
    """An exact rate for ffmpeg: 12 -> 12, 29.97 -> 2997/100."""
    value = Fraction(fps).limit_denominator(1001)
    return int(value) if value.denominator == 1 else value


def write_mp4(frames: Iterable[np.ndarray], path, fps: float, quality: float = 8) -> Path:
    """Encode RGB uint8 frames as H.264 yuv420p at `fps`; return the path."""
    path = Path(path)
    os.environ.setdefault("IMAGEIO_FFMPEG_EXE", ffmpeg_exe())
    _ffmpeg_dies_with_its_parent()
    try:
        with files.atomic(path, keep_suffix=True) as tmp:
            _encode(frames, tmp, fps, quality)
    except (VideoError, KeyboardInterrupt):
        raise
    except Exception as e:
        raise VideoError(f"ffmpeg could not write {path.name}: {str(e).strip().splitlines()[-1:] or e}") from e
    return path


def _encode(frames: Iterable[np.ndarray], target: Path, fps: float, quality: float) -> None:
    import imageio_ffmpeg

    writer = None
    try:
        for frame in frames:
            frame = np.ascontiguousarray(frame, dtype=np.uint8)
            if writer is None:
                height, width = frame.shape[:2]
                if width % 2 or height % 2:
                    raise VideoError(f"H.264 video needs an even width and height, got {width}x{height}")
                writer = imageio_ffmpeg.write_frames(
                    str(target), (width, height), fps=_fps(fps), codec="libx264", pix_fmt_out="yuv420p",
                    quality=quality, macro_block_size=2, ffmpeg_log_level="error",
                    output_params=["-movflags", "+faststart"])
                writer.send(None)
            writer.send(frame)
        if writer is None:
            raise VideoError("there are no frames to write")
        writer.close()
        writer = None
    finally:
        if writer is not None:  # a failure: stop ffmpeg quietly, the error above is what counts
            try:
                writer.close()
            except Exception:
                pass


def write_gif(frames: Iterable[np.ndarray], path, fps: float) -> Path:
    """An endlessly looping GIF at `fps` (GIF stores delays in hundredths of a second)."""
    path = Path(path)
    # Fast octree quantisation: Pillow's default (median cut) costs as much as the mp4 many times over.
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)).quantize(256, method=Image.Quantize.FASTOCTREE)
              for f in frames]
    if not images:
        raise VideoError("there are no frames to write")
    with files.atomic(path, keep_suffix=True) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], loop=0,
                       duration=max(20, round(1000 / fps)), disposal=1, optimize=False)
    return path


def read_info(path) -> dict:
    """{"fps", "frames", "size"} of a video or GIF file (frames counted by decoding)."""
    fps, count, size = None, 0, None
    for fps, frame in read_frames(path):
        count += 1
        size = (frame.shape[1], frame.shape[0])
    return {"fps": fps, "frames": count, "size": size}


def read_frames(path, every_nth: int = 1, limit: int | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (frames per second of the source, RGB uint8 frame) for every Nth frame of a video or GIF."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"cannot read {path.name!r} as a video: the file does not exist")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise VideoError(f"cannot read {path.name!r} as a video: use an mp4, mov, mkv, webm, avi or gif file")
    source = _gif_frames(path) if path.suffix.lower() == ".gif" else _ffmpeg_frames(path)
    taken = 0
    try:
        for i, (fps, frame) in enumerate(source):
            if limit is not None and taken >= limit:
                break
            if i % every_nth == 0:
                taken += 1
                yield fps, frame
    finally:
        source.close()


def _gif_frames(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    try:
        with Image.open(path) as gif:
            index = 0
            while True:
                try:
                    gif.seek(index)
                except EOFError:
                    return
                delay = gif.info.get("duration") or 100
                yield 1000 / delay, np.asarray(gif.convert("RGB"))
                index += 1
    except (OSError, SyntaxError) as e:
        raise VideoError(f"cannot read {path.name!r} as a video: {e}") from None


def _ffmpeg_frames(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    import imageio_ffmpeg

    os.environ.setdefault("IMAGEIO_FFMPEG_EXE", ffmpeg_exe())
    _ffmpeg_dies_with_its_parent()
    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as e:
        raise VideoError(f"cannot read {path.name!r} as a video: {str(e).strip().splitlines()[-1:] or e}") from None
    width, height = meta["size"]
    fps = float(meta.get("fps") or 0) or 24.0
    try:
        for raw in reader:
            yield fps, np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
    finally:
        reader.close()
