"""The Settings tab: folders, the default of each everyday field, and the steps maximum."""
from __future__ import annotations

import time
from dataclasses import dataclass

import gradio as gr

from dreamworld import schema
from dreamworld.errors import USER_ERRORS

from . import controls
from .context import Context, refusal

DEFAULT_FIELDS = ("backend", "model", "device", "precision", "scheduler", "steps", "guidance_scale", "width", "height")


@dataclass
class SettingsTab:
    chosen: dict[str, gr.Component]  # the default-value controls (they follow the backend chosen among them)
    folders: tuple[gr.Textbox, gr.Textbox]
    max_steps: gr.Slider
    saved: object  # the Save event, for what follows a successful save

    @property
    def components(self) -> list[gr.Component]:
        return [*self.folders, self.max_steps] + list(self.chosen.values())

    def showing(self, ctx: Context) -> list:
        """Updates of `components` to the settings as saved now."""
        from .opening import showing_defaults
        settings = ctx.world.settings
        return [settings.models_dir, settings.creations_dir, controls.limit("steps", settings.limits)] + \
            showing_defaults(ctx, self.chosen, schema.FIELDS, ctx.world.request())


def build(ctx: Context) -> SettingsTab:
    settings = ctx.world.settings
    gr.Markdown(settings.problem or "", visible=bool(settings.problem))
    models_dir = gr.Textbox(label="Models folder", value=settings.models_dir)
    creations_dir = gr.Textbox(label="Creations folder", value=settings.creations_dir)
    chosen = ctx.controls(DEFAULT_FIELDS, schema.FIELDS, ctx.world.request(), "setting")
    max_steps = gr.Slider(1, schema.FIELDS["steps"].max, step=1, value=controls.limit("steps", settings.limits),
                          label="Maximum steps", elem_id="max-steps")
    save = gr.Button("Save settings", variant="primary", elem_id="save-settings")
    saved = gr.Markdown("", elem_id="settings-saved")

    def save_settings(models_folder, creations_folder, top_steps, *values):
        defaults = {n: controls.field_value(schema.FIELDS[n], v) for n, v in zip(chosen, values)
                    if v not in (None, "")}
        try:
            path = ctx.world.save_settings(models_folder, creations_folder, defaults, {"steps": {"max": int(top_steps)}})
        except USER_ERRORS as e:
            raise refusal(e) from None
        return f"Saved to {path} at {time.strftime('%H:%M:%S')}. Folder changes apply after a restart."

    event = save.click(save_settings, [models_dir, creations_dir, max_steps] + list(chosen.values()), saved,
                       api_name="save")
    return SettingsTab(chosen, (models_dir, creations_dir), max_steps, event)
