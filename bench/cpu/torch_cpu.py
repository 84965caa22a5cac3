#!/usr/bin/env python3
"""PyTorch eager on the CPU, the reference for bench/cpu/bench.mjs: the same
work as one iteration of the nst cpu backend (the model: bench/torch_vgg.py,
as bench/gpu/torch_ref.py runs it on the GPU), channels_last. --bf16 wraps the network and the
losses in torch.autocast('cpu', dtype=torch.bfloat16) (convolutions and the
Gram matmuls in bf16, as autocast decides; the image and Adam in float32).

Prints one JSON line: seconds per iteration (mean of the timed steps, and the
fastest), peak RSS of the process.
  python3 torch_cpu.py --height 300 --width 400 --steps 5 [--bf16] [--threads 2]
Needs Debian's python3-torch (1.13; oneDNN 2.6.3 inside) and libopenblas0-pthread
(else the Gram matmuls in fp32 run on the reference BLAS).
"""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from torch_vgg import adam, loss as total_loss, make_layers, targets, test_image  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--height', type=int, default=300)
    p.add_argument('--width', type=int, default=400)
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--bf16', action='store_true')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    fmt = torch.channels_last
    dev = torch.device('cpu')
    layers = make_layers(dev, fmt)

    def autocast():
        return torch.autocast('cpu', dtype=torch.bfloat16, enabled=args.bf16)

    with autocast():
        content_t, style_t = targets(layers, 1, args.height, args.width, dev, fmt)

    x = test_image(1, args.height, args.width, 3, dev, fmt).requires_grad_(True)
    opt = adam(x)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = total_loss(layers, x, content_t, style_t)
        loss.backward()
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    times = []
    cpu_start = time.process_time()  # all the process's threads: less disturbed by other load than the wall clock
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    print(json.dumps({
        'impl': 'torch-eager',
        'detail': f'torch {torch.__version__} eager (oneDNN {torch.backends.mkldnn.is_available() and "2.6.3"}, '
                  f'{torch.get_num_threads()} threads, channels_last, {"bf16 autocast" if args.bf16 else "fp32"})',
        'height': args.height,
        'width': args.width,
        'steps': args.steps,
        'seconds_per_iteration': sum(times) / len(times),
        'fastest_iteration': min(times),
        'cpu_seconds_per_iteration': (time.process_time() - cpu_start) / args.steps,
        'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == '__main__':
    main()
