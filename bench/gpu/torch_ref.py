#!/usr/bin/env python3
"""PyTorch eager reference for bench/gpu/run.sh: the same work as one step of
the nst cuda backend, written the way a PyTorch user would write it.

VGG-19 conv1_1..conv5_1 (random He-initialised weights: the cost does not
depend on their values), ReLU, 2x2 average pooling (ceil_mode: TF SAME for odd
sizes), content loss at conv4_2, Gram style loss at conv1_1, conv2_1, conv3_1,
conv4_1, conv5_1 (weights 0.2, Gram normalised by N), alpha 10, beta 40, Adam
(lr 2) on the image only. Batch N: N images with their own targets. TF32 is
allowed (torch.backends.*.allow_tf32) and cudnn.benchmark is on.

Prints one JSON line: ms per iteration, peak allocated / reserved memory.
  python3 torch_ref.py --size 512 --batch 1 --steps 100
"""
import argparse
import json
import math
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
    gen = torch.Generator(device='cpu').manual_seed(0)

    layers = []
    for cin, cout, pool in VGG:
        w = torch.randn(cout, cin, 3, 3, generator=gen) * math.sqrt(2.0 / (9 * cin))
        b = (torch.rand(cout, generator=gen) - 0.5) * 0.1
        layers.append((w.to(dev).contiguous(memory_format=fmt), b.to(dev), pool))

    def features(x):
        out = {}
        for i, (w, b, pool) in enumerate(layers):
            x = F.relu(F.conv2d(x, w, b, padding=1))
            if i in CONTENT or i in STYLE:
                out[i] = x
            if pool and i + 1 < len(layers):
                x = F.avg_pool2d(x, 2, ceil_mode=True)
        return out

    def gram(a):  # (B, C, H, W) -> (B, C, C) / N
        bsz, c, h, w = a.shape
        f = a.reshape(bsz, c, h * w)
        return torch.bmm(f, f.transpose(1, 2)) / (h * w)

    def image(seed):
        g = torch.Generator(device='cpu').manual_seed(seed)
        x = (torch.rand(args.batch, 3, args.size, args.size, generator=g) - 0.5) * 100
        return x.to(dev).contiguous(memory_format=fmt)

    with torch.no_grad():
        content_t = {i: a.detach() for i, a in features(image(1)).items() if i in CONTENT}
        style_t = {i: gram(a).detach() for i, a in features(image(2)).items() if i in STYLE}

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    x = image(3).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=2.0, betas=(0.9, 0.999), eps=1e-8)

    def step():
        opt.zero_grad(set_to_none=True)
        feats = features(x)
        jc = 0
        for i, wgt in CONTENT.items():
            a = feats[i]
            _, c, h, w = a.shape
            jc = jc + wgt * ((a - content_t[i]) ** 2).sum(dim=(1, 2, 3)) / (4 * h * w * c)
        js = 0
        for i, wgt in STYLE.items():
            c = feats[i].shape[1]
            js = js + wgt * ((gram(feats[i]) - style_t[i]) ** 2).sum(dim=(1, 2)) / (4 * c * c)
        loss = (ALPHA * jc + BETA * js).sum()  # items are independent: the sum's gradient is per item
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
