"""The PyTorch eager model both peer benchmarks run (bench/gpu/torch_ref.py on
the GPU, bench/cpu/torch_cpu.py on the CPU): the same work as one iteration
of an nst engine, written the way a PyTorch user would write it.

VGG-19 conv1_1..conv5_1 (random He-initialised weights: the cost does not
depend on their values), ReLU, 2x2 average pooling (ceil_mode: TF SAME for odd
sizes), content loss at conv4_2, Gram style loss at conv1_1, conv2_1, conv3_1,
conv4_1, conv5_1 (weights 0.2, Gram normalised by N), alpha 10, beta 40, Adam
(lr 2) on the image only. A batch of B images, each with its own targets.
"""
import math

import torch
import torch.nn.functional as F

# (in, out, pool after) for conv1_1 .. conv5_1
VGG = [(3, 64, False), (64, 64, True), (64, 128, False), (128, 128, True), (128, 256, False),
       (256, 256, False), (256, 256, False), (256, 256, True), (256, 512, False), (512, 512, False),
       (512, 512, False), (512, 512, True), (512, 512, False)]
CONTENT = {9: 1.0}                                   # conv4_2
STYLE = {0: 0.2, 2: 0.2, 4: 0.2, 8: 0.2, 12: 0.2}    # conv1_1 conv2_1 conv3_1 conv4_1 conv5_1
ALPHA, BETA = 10.0, 40.0


def make_layers(device, memory_format):
    """Random weights from a fixed seed, on `device` (the kernels in `memory_format`)."""
    gen = torch.Generator(device='cpu').manual_seed(0)
    layers = []
    for cin, cout, pool in VGG:
        w = torch.randn(cout, cin, 3, 3, generator=gen) * math.sqrt(2.0 / (9 * cin))
        b = (torch.rand(cout, generator=gen) - 0.5) * 0.1
        layers.append((w.to(device).contiguous(memory_format=memory_format), b.to(device), pool))
    return layers


def features(layers, x):
    """The activations of the loss layers, by conv index."""
    out = {}
    for i, (w, b, pool) in enumerate(layers):
        x = F.relu(F.conv2d(x, w, b, padding=1))
        if i in CONTENT or i in STYLE:
            out[i] = x
        if pool and i + 1 < len(layers):
            x = F.avg_pool2d(x, 2, ceil_mode=True)
    return out


def gram(a):
    """(B, C, H, W) -> (B, C, C) / N"""
    bsz, c, h, w = a.shape
    f = a.reshape(bsz, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (h * w)


def test_image(batch, height, width, seed, device, memory_format):
    g = torch.Generator(device='cpu').manual_seed(seed)
    x = (torch.rand(batch, 3, height, width, generator=g) - 0.5) * 100
    return x.to(device).contiguous(memory_format=memory_format)


def targets(layers, batch, height, width, device, memory_format):
    """Content activations of image 1, style Grams of image 2 (no gradient)."""
    with torch.no_grad():
        content = {i: a.detach() for i, a in features(layers, test_image(batch, height, width, 1, device, memory_format)).items()
                   if i in CONTENT}
        style = {i: gram(a).detach() for i, a in features(layers, test_image(batch, height, width, 2, device, memory_format)).items()
                 if i in STYLE}
    return content, style


def loss(layers, x, content_t, style_t):
    """alpha J_content + beta J_style, summed over the batch (items are independent: its gradient is each item's)."""
    feats = features(layers, x)
    jc = 0
    for i, wgt in CONTENT.items():
        a = feats[i]
        _, c, h, w = a.shape
        jc = jc + wgt * ((a - content_t[i]) ** 2).sum(dim=(1, 2, 3)) / (4 * h * w * c)
    js = 0
    for i, wgt in STYLE.items():
        c = feats[i].shape[1]
        js = js + wgt * ((gram(feats[i]) - style_t[i]) ** 2).sum(dim=(1, 2)) / (4 * c * c)
    return (ALPHA * jc + BETA * js).sum()


def adam(x):
    return torch.optim.Adam([x], lr=2.0, betas=(0.9, 0.999), eps=1e-8)
