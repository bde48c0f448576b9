"""Writing files so that a reader never sees half of one: the one atomic-write helper, and the clean-up of
what a writer that died (`kill -9`, a power cut) left behind."""
from __future__ import annotations

import errno
import json
import os
import re
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

# A writer's hidden temp file: `.NAME.PID-THREAD.tmp` or, keeping the suffix for tools that read it (ffmpeg),
# `.STEM.PID-THREAD.tmp.EXT`.
_TEMP = re.compile(r"^\..+?(?:\.(\d+)-\d+)?\.tmp(?:\.\w+)?$")


def temp_path(path: Path, keep_suffix: bool = False) -> Path:
    """The hidden temp file beside `path` that this thread writes before renaming it into place."""
    tag = f"{os.getpid()}-{threading.get_ident()}"
    return path.with_name(f".{path.stem}.{tag}.tmp{path.suffix}" if keep_suffix else f".{path.name}.{tag}.tmp")


@contextmanager
def atomic(path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces `path`, on any failure it is removed."""
    path = Path(path)
    tmp = temp_path(path, keep_suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path, data: bytes | None = None, save: Callable | None = None) -> Path:
    """Write `data` (or call `save(file)`) to a temp file beside `path`, then rename it into place."""
    with atomic(path) as tmp, open(tmp, "wb") as f:
        if save is None:
            f.write(data)
        else:
            save(f)
    return Path(path)


def write_json(path, data) -> Path:
    return write_atomic(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def reason(error: OSError) -> str:
    """Why a file could not be written, in words."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full (free some space and try again)"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "it is not writable"
    if error.errno in (errno.ENOTDIR, errno.EEXIST):
        return "a part of that path is a file, not a folder"
    return (error.strerror or str(error) or type(error).__name__).rstrip(".").lower()


def _writer_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":  # elsewhere os.kill(pid, 0) would not just ask
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, as another user's process
        return True
    return True


def remove_stale_temp_files(folder) -> list[Path]:
    """Remove the temp files that writers which died left in `folder`: those whose writer process is gone
    or unknown. Return what was removed."""
    removed = []
    for path in Path(folder).iterdir():
        match = _TEMP.match(path.name)
        if not match or not path.is_file() or (match.group(1) and _writer_alive(int(match.group(1)))):
            continue
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed
