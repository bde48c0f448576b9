"""DeepCache on the stages' loop (the `deepcache` field): after each step that runs the whole UNet, the next
`deepcache` steps run only its outer blocks and reuse the deep features of that step (DeepCache's
DeepCacheSDHelper, which wraps the UNet's blocks)."""
from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

from DeepCache import DeepCacheSDHelper


class StepCache(DeepCacheSDHelper):
    """The helper finds the step by looking t up in its pipeline's scheduler; here each UNet call is a step
    (the guidance batch goes in one call). A call with another batch size (NGMS leaves the negative prompt
    out) cannot reuse features of the other size: it runs the whole UNet and starts the cycle again."""

    def wrap_unet_forward(self):
        forward = self.function_dict["unet_forward"] = self.pipe.unet.forward
        calls = iter(range(1 << 30))

        def counted(sample, *args, **kwargs):
            self.cur_timestep = next(calls)
            if len(sample) != getattr(self, "batch", len(sample)):
                self.start_timestep = self.cur_timestep
            self.batch = len(sample)
            return forward(sample, *args, **kwargs)

        self.pipe.unet.forward = counted


@contextmanager
def cached(unet, reused_steps: int):
    """Run the UNet with DeepCache inside the block (nothing when reused_steps is 0)."""
    if not reused_steps:
        yield
        return
    helper = StepCache(SimpleNamespace(unet=unet))
    helper.set_params(cache_interval=reused_steps + 1, cache_branch_id=0)
    helper.enable()
    try:
        yield
    finally:
        helper.disable()
