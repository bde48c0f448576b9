"""What every tab is built from: the controller, its queue, and the controls derived from the schema."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import gradio as gr

from dreamworld.errors import USER_ERRORS
from dreamworld.service import ADMIN, LOCAL_USER, Service
from dreamworld.world import DreamWorld

from . import controls


@dataclass
class Context:
    world: DreamWorld
    service: Service

    @property
    def caps(self):
        return self.world.capabilities()

    def choices(self, spec) -> list | None:
        """The model names a field chooses from (its spec's `models` kind), or None."""
        if not spec.models:
            return None
        if spec.models == "esrgan":  # upscalers: the built-in ones, then the models
            return self.world.upscalers(latent=True)
        names = [m.name for m in self.world.list_models(spec.models)]
        return names if spec.key and spec.name == "model" else [""] + names

    def controls(self, names, fields, defaults, prefix: str = "field") -> dict[str, gr.Component]:
        """One control per field name, in order, with the backend's and the settings' limits."""
        return {n: controls.control(n, getattr(defaults, n), self.caps, self.world.settings.limits,
                                    choices=self.choices(fields[n]), fields=fields, elem_id=f"{prefix}-{n}")
                for n in names}


log = logging.getLogger("dreamworld.gui")


def refusal(error: BaseException | str) -> gr.Error:
    """The toast for a user's mistake: one sentence, logged as one line (no traceback: nothing is broken)."""
    log.info("refused: %s", error)
    return gr.Error(str(error), print_exception=False)


def owner_of(request: gr.Request | None) -> str:
    """The user a job is queued for: the logged-in one (--auth), else the local user."""
    return getattr(request, "username", None) or LOCAL_USER


def viewer_of(request: gr.Request | None):
    """Whose jobs a page sees and may stop: the logged-in user's, or every job on a page without --auth."""
    return getattr(request, "username", None) or ADMIN


def follow_mode(selector: gr.Component, group: dict[str, gr.Component], fields, attribute: str,
                extra: dict[gr.Component, tuple] | None = None) -> None:
    """Show each control only in the modes (or motions) its spec names: `attribute` is "modes" or "motions".
    `extra` maps other components to the values they are shown for."""
    shown = {c: getattr(fields[n], attribute) for n, c in group.items() if getattr(fields[n], attribute)}
    shown.update(extra or {})

    def reshape(value):
        return [gr.update(visible=value in allowed) for allowed in shown.values()]

    selector.change(reshape, selector, list(shown))


def visible_in(spec, attribute: str, value) -> bool:
    allowed = getattr(spec, attribute)
    return allowed is None or value in allowed


def follow_capability(ctx: Context, backend: gr.Component, capability: str, components: list) -> None:
    """Show `components` only where the chosen backend's capability of that name is true."""
    def reshape(name):
        try:
            update = gr.update(visible=bool(getattr(ctx.world.capabilities(name), capability)))
        except USER_ERRORS:
            update = gr.update()
        return update if len(components) == 1 else [update] * len(components)  # one output takes no list
    backend.change(reshape, backend, components)
