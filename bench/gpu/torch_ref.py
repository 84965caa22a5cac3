#!/usr/bin/env python3
"""PyTorch eager reference for bench/gpu/run.sh: the same work as one step of
the nst cuda backend (the model: bench/torch_vgg.py), on the GPU. Batch N: N
images with their own targets. TF32 is allowed (torch.backends.*.allow_tf32)
and cudnn.benchmark is on.

Prints one JSON line: ms per iteration, peak allocated / reserved memory.
  python3 torch_ref.py --size 512 --batch 1 --steps 100
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from torch_vgg import adam, loss as total_loss, make_layers, targets, test_image  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--size', type=int, default=512)
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--steps', type=int, default=100)
    p.add_argument('--warmup', type=int, default=10)
    p.add_argument('--no-tf32', action='store_true')
    p.add_argument('--channels-last', action='store_true')
    args = p.parse_args()

    tf32 = not args.no_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    dev = torch.device('cuda')
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    layers = make_layers(dev, fmt)
    content_t, style_t = targets(layers, args.batch, args.size, args.size, dev, fmt)

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    x = test_image(args.batch, args.size, args.size, 3, dev, fmt).requires_grad_(True)
    opt = adam(x)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = total_loss(layers, x, content_t, style_t)
        loss.backward()
        opt.step()
        return loss

    for _ in range(args.warmup):
        loss0 = step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - t
    print(json.dumps({
        'impl': 'torch-eager',
        'detail': f'torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name()}, '
                  f'{"tf32" if tf32 else "fp32"}, {"channels_last" if args.channels_last else "NCHW"}',
        'size': args.size,
        'batch': args.batch,
        'steps': args.steps,
        'ms_per_iter': 1000 * elapsed / args.steps,
        'images_per_s': args.batch * args.steps / elapsed,
        'peak_allocated_mib': torch.cuda.max_memory_allocated() / 2**20,
        'peak_reserved_mib': torch.cuda.max_memory_reserved() / 2**20,
        'loss_after_warmup': float(loss0),
        'loss_end': float(loss),
    }))


if __name__ == '__main__':
    main()
