"""Browsing the creations folder: its entries newest first (a cinema run is one entry, shown by its first
frame), found by words of their prompt, model, date or name."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .creations import RUN_SETTINGS, CreationError, list_creations, read_creation


@dataclass(frozen=True)
class Entry:
    path: Path  # the image shown: a creation, or a run's first frame
    run: Path | None = None  # the cinema run folder, for a run

    @property
    def caption(self) -> str:
        return f"▶ {self.run.name}" if self.run else self.path.name

    def text(self) -> str:
        """What a search looks in: the path, and the parameters (a run: its settings file)."""
        try:
            if self.run:
                inside = json.dumps(json.loads((self.run / RUN_SETTINGS).read_text(encoding="utf-8")))
            else:
                inside = read_creation(self.path)["parameters"] or ""
        except (OSError, ValueError, CreationError):
            inside = ""
        return f"{self.path.as_posix()}\n{inside}".lower()

    def describe(self) -> str:
        """The entry's parameters (a run: what it is and its settings)."""
        if self.run is None:
            data = read_creation(self.path)
            made_of = (data["request"] or {}).get("parts")
            parts = "\nMade by parts from: " + ", ".join(f"{k} {v}" for k, v in made_of.items()) \
                if isinstance(made_of, dict) else ""
            return (data["parameters"] or "") + parts
        frames = sorted(self.run.glob("frame_*.png"))
        videos = [p.name for p in self.run.iterdir() if p.suffix in (".mp4", ".gif", ".webm")]
        settings = json.loads((self.run / RUN_SETTINGS).read_text(encoding="utf-8")).get("cinema", {})
        said = ", ".join(f"{k}: {settings[k]}" for k in ("prompt", "motion", "frames", "fps", "seed", "model")
                         if settings.get(k) not in (None, ""))
        return f"Cinema run {self.run.name}: {len(frames)} frames; video: {', '.join(videos) or 'none'}\n{said}"


def entries(creations_dir, words: str = "", limit: int = 200) -> list[Entry]:
    """The newest entries whose text holds every word of `words` (any case)."""
    wanted = words.lower().split()
    found = []
    for path in list_creations(creations_dir):
        run = path.parent if (path.parent / RUN_SETTINGS).is_file() else None
        entry = Entry(path, run)
        if wanted and not all(w in entry.text() for w in wanted):
            continue
        found.append(entry)
        if len(found) >= limit:
            break
    return found
