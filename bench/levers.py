"""CPU speed levers for one UNet call of SD 1.5 at full size, in one process: which pay on this machine.

    python bench/levers.py [--repeats 3] [--size 512] [--compile] [--openvino]

One denoising step's UNet call (a batch of 2: the prompt and the negative prompt, 77 tokens) on SD 1.5's UNet
with random weights, timed as the median of --repeats calls after a warm-up, against torch fp32 run first:
torch bf16 (DreamWorld's default on a CPU with bf16 instructions), bf16 with channels-last memory, bf16 on one
thread, `torch.compile` of the bf16 UNet (--compile; its compile time printed apart), and OpenVINO
(--openvino; `pip install openvino`: the UNet converted from torch, run in its default precision on this CPU
(bf16 where the CPU has it), in fp32, and quantized to int8 as the backend's precision=int8 does). "diff" is the largest difference from torch fp32's output relative
to that output's largest magnitude.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dreamworld import single_file  # noqa: E402


def timed(call, repeats: int) -> tuple[float, torch.Tensor]:
    out = call()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--openvino", action="store_true")
    args = parser.parse_args()
    from diffusers import UNet2DConditionModel
    config = UNet2DConditionModel.load_config(single_file.config_dir("sd15"), subfolder="unet")
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(config).eval()
    latents = torch.randn(2, 4, args.size // 8, args.size // 8)
    context = torch.randn(2, 77, 768)
    t = torch.tensor(500)

    def call(net, dtype, memory_format=torch.contiguous_format):
        x = latents.to(dtype).contiguous(memory_format=memory_format)
        return lambda: net(x, t, encoder_hidden_states=context.to(dtype), return_dict=False)[0].float()

    print(f"SD 1.5 UNet, random weights, batch 2 at {args.size}x{args.size}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} calls after a warm-up")
    with torch.inference_mode():
        base, reference = timed(call(unet, torch.float32), args.repeats)
        scale = reference.abs().max().item()

        def row(label, seconds, out):
            diff = (out - reference).abs().max().item() / scale
            print(f"{label:34s} {seconds:7.3f} s   {base / seconds:5.2f}x   diff {diff:.4f}", flush=True)

        row("torch fp32", base, reference)
        unet.to(torch.bfloat16)
        row("torch bf16 (the default)", *timed(call(unet, torch.bfloat16), args.repeats))
        unet.to(memory_format=torch.channels_last)
        row("torch bf16, channels-last", *timed(call(unet, torch.bfloat16, torch.channels_last), args.repeats))
        unet.to(memory_format=torch.contiguous_format)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        row("torch bf16, 1 thread", *timed(call(unet, torch.bfloat16), args.repeats))
        torch.set_num_threads(threads)
        if args.compile:
            compiled = torch.compile(unet)
            started = time.perf_counter()
            call(compiled, torch.bfloat16)()
            print(f"  (torch.compile: first call {time.perf_counter() - started:.0f} s)")
            row("torch bf16, torch.compile", *timed(call(compiled, torch.bfloat16), args.repeats))
    if args.openvino:
        openvino(unet.to(torch.float32), latents, t, context, args.repeats, row)


def openvino(unet, latents, t, context, repeats, row) -> None:
    import openvino as ov

    from dreamworld.backends.openvino_backend import UNetCall  # what the backend converts

    started = time.perf_counter()
    model = ov.convert_model(UNetCall(unet).eval(), example_input=(latents, t, context))
    print(f"  (OpenVINO: converted in {time.perf_counter() - started:.0f} s)")
    core = ov.Core()
    for label, config in (("OpenVINO, its default precision", {}),
                          ("OpenVINO fp32", {"INFERENCE_PRECISION_HINT": "f32"})):
        compiled = core.compile_model(model, "CPU", config)
        precision = compiled.get_property("INFERENCE_PRECISION_HINT")
        inputs = [latents.numpy(), t.numpy(), context.numpy()]
        row(f"{label} ({precision})", *timed(lambda: torch.from_numpy(compiled(inputs)[0]), repeats))
    from dreamworld.backends.openvino_int8 import hybrid_quantized  # what precision=int8 runs
    started = time.perf_counter()
    calibration = [[torch.randn_like(latents).numpy(), np.float32(step), torch.randn_like(context).numpy()]
                   for step in (999, 500)]  # random inputs: a random network has no typical ones
    compiled = core.compile_model(hybrid_quantized(model, calibration), "CPU")
    print(f"  (OpenVINO int8: quantized in {time.perf_counter() - started:.0f} s)")
    row("OpenVINO int8 (hybrid, the openvino default)", *timed(lambda: torch.from_numpy(compiled(inputs)[0]), repeats))


if __name__ == "__main__":
    main()
