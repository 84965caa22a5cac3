#!/usr/bin/env python3
"""PyTorch eager on the CPU, the reference for bench/cpu/bench.mjs: the same
work as one iteration of the nst cpu backend, written the way a PyTorch user
would write it (bench/gpu/torch_ref.py, on the CPU).

VGG-19 conv1_1..conv5_1 (random He-initialised weights: the cost does not
depend on their values), ReLU, 2x2 average pooling (ceil_mode: TF SAME for odd
sizes), content loss at conv4_2, Gram style loss at conv1_1, conv2_1, conv3_1,
conv4_1, conv5_1 (weights 0.2, Gram normalised by N), alpha 10, beta 40, Adam
(lr 2) on the image only, channels_last. --bf16 wraps the network and the
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
import math
import resource
import time

import torch
import torch.nn.functional as F

# (in, out, pool after) for conv1_1 .. conv5_1
VGG = [(3, 64, False), (64, 64, True), (64, 128, False), (128, 128, True), (128, 256, False),
       (256, 256, False), (256, 256, False), (256, 256, True), (256, 512, False), (512, 512, False),
       (512, 512, False), (512, 512, True), (512, 512, False)]
CONTENT = {9: 1.0}                                   # conv4_2
STYLE = {0: 0.2, 2: 0.2, 4: 0.2, 8: 0.2, 12: 0.2}    # conv1_1 conv2_1 conv3_1 conv4_1 conv5_1
ALPHA, BETA = 10.0, 40.0


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
    gen = torch.Generator().manual_seed(0)

    layers = []
    for cin, cout, pool in VGG:
        w = torch.randn(cout, cin, 3, 3, generator=gen) * math.sqrt(2.0 / (9 * cin))
        b = (torch.rand(cout, generator=gen) - 0.5) * 0.1
        layers.append((w.contiguous(memory_format=fmt), b, pool))

    def features(x):
        out = {}
        for i, (w, b, pool) in enumerate(layers):
            x = F.relu(F.conv2d(x, w, b, padding=1))
            if i in CONTENT or i in STYLE:
                out[i] = x
            if pool and i + 1 < len(layers):
                x = F.avg_pool2d(x, 2, ceil_mode=True)
        return out

    def gram(a):  # (1, C, H, W) -> (C, C) / N
        _, c, h, w = a.shape
        f = a.reshape(c, h * w)
        return f @ f.t() / (h * w)

    def image(seed):
        g = torch.Generator().manual_seed(seed)
        x = (torch.rand(1, 3, args.height, args.width, generator=g) - 0.5) * 100
        return x.contiguous(memory_format=fmt)

    def autocast():
        return torch.autocast('cpu', dtype=torch.bfloat16, enabled=args.bf16)

    with torch.no_grad(), autocast():
        content_t = {i: a.detach() for i, a in features(image(1)).items() if i in CONTENT}
        style_t = {i: gram(a).detach() for i, a in features(image(2)).items() if i in STYLE}

    x = image(3).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=2.0, betas=(0.9, 0.999), eps=1e-8)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            feats = features(x)
            jc = 0
            for i, wgt in CONTENT.items():
                a = feats[i]
                _, c, h, w = a.shape
                jc = jc + wgt * ((a - content_t[i]) ** 2).sum() / (4 * h * w * c)
            js = 0
            for i, wgt in STYLE.items():
                c = feats[i].shape[1]
                js = js + wgt * ((gram(feats[i]) - style_t[i]) ** 2).sum() / (4 * c * c)
            loss = ALPHA * jc + BETA * js
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
