"""MRI models at the challenge's size: slices/s of a train step and of inference, and peak memory.

Each (model, gradient checkpointing) runs in a fresh process, so its peak resident memory (CPU) or
peak allocated memory (CUDA) is its own. fastMRI's own ``VarNet`` runs beside podium's ``varnet`` with
the same configuration as the reference, and its ratio is printed.

    python bench/mri_models.py [--coils 16] [--height 768] [--width 396] [--steps 2] [--device cpu]
    python bench/mri_models.py --models varnet fastmri_varnet --height 384 --width 198   # quicker
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from podium.tasks.mri.losses import SSIMLoss
from podium.tasks.mri.models import create_model

CROP = 384
MODELS = {
    # the challenge baseline's configuration (recipes/fastmri-varnet.yaml)
    "varnet": ("varnet", dict(num_cascades=1, chans=9, pools=4, sens_chans=4, sens_pools=4)),
    "fastmri_varnet": ("fastmri", dict(num_cascades=1, chans=9, pools=4, sens_chans=4, sens_pools=4)),
    "fi_varnet": ("fi_varnet", dict(chans=18)),
    "feature_varnet": ("feature_varnet", {}),
    "promptmr_plus": ("promptmr_plus", {}),
}


def build(name: str, crop: int) -> torch.nn.Module:
    kind, kwargs = MODELS[name]
    if kind == "fastmri":
        from fastmri.models import VarNet

        return VarNet(**kwargs)
    return create_model(kind, **kwargs, crop_size=crop)


def one(name: str, checkpointing: bool, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    crop = min(CROP, args.height, args.width)
    model = build(name, crop).to(device)
    if checkpointing:
        model.set_grad_checkpointing(True)
    kspace = torch.randn(1, args.coils, args.height, args.width, 2, device=device) * 1e-4
    mask = torch.zeros(1, 1, 1, args.width, 1, dtype=torch.bool, device=device)
    mask[..., :: 4, :] = True
    mask[..., args.width // 2 - 16 : args.width // 2 + 16, :] = True
    kspace = kspace * mask
    target = torch.rand(1, crop, crop, device=device) * 1e-4
    loss_fn = SSIMLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)

    def output() -> torch.Tensor:
        out = model(kspace, mask)
        if out.shape[-2:] != (crop, crop):  # fastMRI's VarNet returns the full image
            h, w = out.shape[-2:]
            out = out[..., (h - crop) // 2 : (h - crop) // 2 + crop, (w - crop) // 2 : (w - crop) // 2 + crop]
        return out

    def step() -> None:
        opt.zero_grad()
        loss_fn(output(), target, torch.tensor([1e-4], device=device)).backward()
        opt.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up (allocations, cuDNN choices)
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    train = args.steps / (time.perf_counter() - t0)
    with torch.inference_mode():
        output()
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            output()
        sync()
        infer = args.steps / (time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    params = sum(p.numel() for p in model.parameters())
    return {"train_slices_s": train, "infer_slices_s": infer, "peak_gib": peak, "params_m": params / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--coils", type=int, default=16)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=396)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "CHECKPOINTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1] == "1", args)))
        return
    print(f"{args.coils} coils, {args.height} x {args.width} k-space, batch 1, {args.steps} steps, {args.device}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'model':16} {'ckpt':>4} {'params':>8} {'train/s':>9} {'infer/s':>9} {'peak GiB':>9}")
    results = {}
    for name in args.models:
        for ckpt in (False, True):
            if ckpt and name == "fastmri_varnet":
                continue  # fastMRI's VarNet has no gradient checkpointing
            cmd = [sys.executable, __file__, "--one", name, "1" if ckpt else "0", "--coils", str(args.coils),
                   "--height", str(args.height), "--width", str(args.width), "--steps", str(args.steps),
                   "--device", args.device]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            results[name, ckpt] = r
            print(f"{name:16} {'yes' if ckpt else 'no':>4} {r['params_m']:7.2f}M {r['train_slices_s']:9.3f} "
                  f"{r['infer_slices_s']:9.3f} {r['peak_gib']:9.2f}")
    if ("varnet", False) in results and ("fastmri_varnet", False) in results:
        ours, ref = results["varnet", False], results["fastmri_varnet", False]
        print(f"podium varnet / fastMRI VarNet: train {ours['train_slices_s'] / ref['train_slices_s']:.2f}x, "
              f"inference {ours['infer_slices_s'] / ref['infer_slices_s']:.2f}x, "
              f"peak memory {ours['peak_gib'] / ref['peak_gib']:.2f}x")


if __name__ == "__main__":
    main()
