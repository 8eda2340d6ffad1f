#!/usr/bin/env python3
"""PyTorch reference for `genlab bench`: the same four presets, the same schedule, the same
JSON lines.

The networks copy genlab's (src/engine/models/{layers,vae,gan}.rs, src/engine/config.rs):

- mnist_vae: 784-400 ReLU -> mu, logvar (20); decoder 20-400 ReLU-784 logits; loss = per-image
  sum of BCE-with-logits + KL, mean over the batch; Adam 1e-3.
- mnist_mlp_gan: G 100-256-512-784, D 784-512-256-1, LeakyReLU(0.2) on every hidden layer,
  sigmoid on G's output; non-saturating loss; Adam 2e-4, beta1 0.5.
- conv_vae: conv 1->32->64 (4x4, stride 2, padding 1) ReLU, linear mu/logvar heads (16);
  decoder linear 16->64x7x7 ReLU, deconv 64->32 ReLU, deconv 32->1 logits.
- mnist_dcgan: G linear 100->128x7x7, BN, LeakyReLU, deconv 128->64, BN, LeakyReLU,
  deconv 64->1, sigmoid; D conv 1->64 LeakyReLU, conv 64->128, BN, LeakyReLU, linear -> 1.
  (genlab uses the preset's activation, LeakyReLU(0.2), in the generator too.)
- mnist_ddpm / mnist_flow: genlab's U-Net (src/engine/models/diffusion/unet.rs): channels 16 at
  28x28, 32 at 14x14, 64 at 7x7; residual blocks GN(8 groups)-SiLU-conv3x3-(+time)-GN-SiLU-conv3x3
  (+1x1 skip when the channels change); stride-2 3x3 convs down, nearest x2 + 3x3 conv up, skips
  concatenated; 32 sinusoids -> 128 SiLU -> 128 time MLP. One step: a time and a noise per image,
  MSE against the noise (DDPM, cosine schedule) or the velocity (flow); Adam 5e-4.

A GAN step is genlab's: G forward once; D on real and on detached fake, D update; D again on the
(attached) fake for G's loss, G update. Batch 128 of the built-in digits (the 8,000 training
images of assets/mnist10k); `warmup` untimed steps then `steps` timed ones, `repeats` times with
a fresh model, the median images/s reported. FLOPs are counted from layer shapes exactly as
genlab counts them (src/bench.rs).

Sample mode (`--dump-samples FILE`, one GAN model in `--models`): trains that GAN for `--epochs`
epochs of genlab's length (ceil(8000 / 128) = 63 steps; every batch here is a full one of a fresh
shuffle) or `--steps` steps, then writes `--n-samples` generator samples as a u8 IDX file that
`genlab quality --images FILE --data builtin` scores. `--output tanh` (the default, genlab's
presets since issue #15) trains on data scaled to [-1, 1] with a tanh output and writes
(tanh + 1) / 2; `--output sigmoid` is genlab's old choice, data in [0, 1] and a sigmoid output.
"""

import argparse
import gzip
import json
import os
import statistics
import sys
import time
from pathlib import Path

MODELS = ["mnist_vae", "mnist_mlp_gan", "conv_vae", "mnist_dcgan", "mnist_ddpm", "mnist_flow"]
DIFFUSION = ["mnist_ddpm", "mnist_flow"]
GANS = ["mnist_mlp_gan", "mnist_dcgan"]
BATCH = 128
# (warm-up, timed) steps per model: genlab's table (src/bench.rs, `schedule`).
SCHEDULE = {"mnist_vae": (40, 600), "mnist_mlp_gan": (20, 200), "conv_vae": (4, 40), "mnist_dcgan": (2, 8),
            "mnist_ddpm": (2, 10), "mnist_flow": (2, 10)}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--steps", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--repeats", type=int)
    p.add_argument("--quick", action="store_true", help="a smoke run: fewer steps and repeats")
    p.add_argument("--train-only", action="store_true", help="skip the sgemm peak")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "assets" / "mnist10k"))
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (bench/gpu_check.sh)")
    p.add_argument("--dump-samples", metavar="FILE", help="train one GAN and write samples (IDX, u8)")
    p.add_argument("--epochs", type=int, default=10, help="sample mode: epochs of 63 steps")
    p.add_argument("--n-samples", type=int, default=2000, help="sample mode: how many samples")
    p.add_argument("--output", choices=["tanh", "sigmoid"], default="tanh", help="sample mode: G's output")
    p.add_argument("--seed", type=int, default=0, help="sample mode: torch's seed")
    p.add_argument("--no-disc-bn", action="store_true", help="the DCGAN's discriminator without batch norm")
    a = p.parse_args()
    if a.repeats is None:
        a.repeats = 1 if a.quick else 3
    a.models = [m for m in a.models.split(",") if m]
    unknown = [m for m in a.models if m not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {unknown}; models: {', '.join(MODELS)}")
    if a.dump_samples and (len(a.models) != 1 or a.models[0] not in GANS):
        p.error(f"--dump-samples takes one GAN in --models: {', '.join(GANS)}")
    return a


ARGS = parse_args()
# Thread counts are read when the libraries load: set them before importing torch.
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)
# Idle OpenMP threads sleep instead of spinning. On a shared 2-core machine the default spinning
# made 2 threads 5-40x slower than 1 (a spinning thread holds a core another thread of the same
# team needs); PASSIVE measured the same as 1 thread. Set OMP_WAIT_POLICY to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(ARGS.threads)
DEVICE = torch.device(ARGS.device)


def utc_now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def emit(obj):
    print(json.dumps(obj), flush=True)


def rss_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024.0
    return 0.0


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def read_idx_images(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(dims[0], -1).astype(np.float32) / 255.0


# --- the networks ------------------------------------------------------------------------------

def act(name):
    return nn.ReLU() if name == "relu" else nn.LeakyReLU(0.2)


class MlpVae(nn.Module):
    def __init__(self, d=784, hidden=400, latent=20):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(d, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, d))
        self.latent = latent

    def forward(self, x):
        h = self.enc(x)
        return self.mu(h), self.logvar(h)


class ConvVae(nn.Module):
    def __init__(self, latent=16):
        super().__init__()
        self.enc = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Flatten(),
        )
        self.mu = nn.Linear(64 * 7 * 7, latent)
        self.logvar = nn.Linear(64 * 7 * 7, latent)
        self.dec = nn.Sequential(
            nn.Linear(latent, 64 * 7 * 7), nn.Unflatten(1, (64, 7, 7)), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Flatten(),
        )
        self.latent = latent

    def forward(self, x):
        h = self.enc(x.view(-1, 1, 28, 28))
        return self.mu(h), self.logvar(h)


def mlp_gan():
    g = nn.Sequential(
        nn.Linear(100, 256), act("leaky"), nn.Linear(256, 512), act("leaky"), nn.Linear(512, 784)
    )
    d = nn.Sequential(
        nn.Linear(784, 512), act("leaky"), nn.Linear(512, 256), act("leaky"), nn.Linear(256, 1)
    )
    return g, d


def dcgan(disc_bn=True):
    g = nn.Sequential(
        nn.Linear(100, 128 * 7 * 7), nn.Unflatten(1, (128, 7, 7)), nn.BatchNorm2d(128), act("leaky"),
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), act("leaky"),
        nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Flatten(),
    )
    d = nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 64, 4, 2, 1), act("leaky"),
        nn.Conv2d(64, 128, 4, 2, 1), *([nn.BatchNorm2d(128)] if disc_bn else []), act("leaky"),
        nn.Flatten(), nn.Linear(128 * 7 * 7, 1),
    )
    return g, d


class ResBlock(nn.Module):
    def __init__(self, cin, cout, tdim):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups(cin), cin), nn.Conv2d(cin, cout, 3, 1, 1)
        self.time = nn.Linear(tdim, cout)
        self.norm2, self.conv2 = nn.GroupNorm(groups(cout), cout), nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x))) + self.time(temb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.skip(x) if self.skip is not None else x)


def groups(c, most=8, per_group=4):
    """genlab's rule: the most groups, up to 8, that divide c and leave per_group channels each."""
    return next((g for g in range(min(most, c), 0, -1) if c % g == 0 and c // g >= per_group), 1)


class UNet(nn.Module):
    def __init__(self, base=16, levels=(32, 64), tdim=128, sinusoids=32):
        super().__init__()
        self.sinusoids = sinusoids
        self.time_in, self.time_out = nn.Linear(sinusoids, tdim), nn.Linear(tdim, tdim)
        self.conv_in, self.res_in = nn.Conv2d(1, base, 3, 1, 1), ResBlock(base, base, tdim)
        self.downs, self.ups = nn.ModuleList(), nn.ModuleList()
        c = base
        for ci in levels:
            self.downs.append(nn.ModuleList([nn.Conv2d(c, c, 3, 2, 1), ResBlock(c, ci, tdim)]))
            c = ci
        self.mid = ResBlock(c, c, tdim)
        for i in reversed(range(len(levels))):
            below = base if i == 0 else levels[i - 1]
            self.ups.append(nn.ModuleList([ResBlock(2 * levels[i], levels[i], tdim),
                                           nn.Conv2d(levels[i], below, 3, 1, 1)]))
        self.res_out, self.norm_out = ResBlock(2 * base, base, tdim), nn.GroupNorm(groups(base), base)
        self.conv_out = nn.Conv2d(base, 1, 3, 1, 1)

    def forward(self, x, t):
        half = self.sinusoids // 2
        freqs = 10000.0 ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
        arg = (t * 1000.0)[:, None] * freqs[None, :]
        temb = F.silu(self.time_out(F.silu(self.time_in(torch.cat([arg.sin(), arg.cos()], 1)))))
        h = self.res_in(self.conv_in(x.view(-1, 1, 28, 28)), temb)
        skips = [h]
        for down, res in self.downs:
            h = res(down(h), temb)
            skips.append(h)
        h = self.mid(h, temb)
        for res, up in self.ups:
            h = res(torch.cat([h, skips.pop()], 1), temb)
            h = up(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.res_out(torch.cat([h, skips.pop()], 1), temb)
        return self.conv_out(F.silu(self.norm_out(h))).flatten(1)

    def forward_macs(self):
        """Multiply-adds of one forward pass for one image, as genlab counts them
        (`UNetShape::forward_macs`): convolutions and linear layers."""
        macs = 0
        for m in self.modules():
            if isinstance(m, nn.Linear):
                macs += m.in_features * m.out_features
        # Convs: out pixels x cin x cout x k^2, the out size of each conv from a dry run.
        sizes = {}
        hooks = [m.register_forward_hook(lambda m, i, o: sizes.__setitem__(m, o.shape[2] * o.shape[3]))
                 for m in self.modules() if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            self.forward(torch.zeros(1, 784, device=next(self.parameters()).device),
                         torch.zeros(1, device=next(self.parameters()).device))
        for h in hooks:
            h.remove()
        for m, px in sizes.items():
            macs += px * m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1]
        return macs


def cosine_alpha_bar(steps=1000, s=0.008):
    """DDPM's cosine schedule (Nichol and Dhariwal 2021), alpha_bar(t) for t = 0..steps."""
    import math
    f = [math.cos(((t / steps) + s) / (1 + s) * math.pi / 2) ** 2 for t in range(steps + 1)]
    return torch.tensor([min(max(v / f[0], 0.0), 1.0) for v in f], dtype=torch.float32)


class DiffusionTrainer:
    def __init__(self, net, objective, lr=5e-4):
        self.net, self.objective = net, objective
        self.opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
        self.alpha_bar = cosine_alpha_bar().to(DEVICE)

    def step(self, x):
        x0 = 2.0 * x - 1.0
        eps = torch.randn_like(x0)
        if self.objective == "ddpm":
            steps = torch.randint(1, 1001, (x0.shape[0],), device=x0.device)
            ab = self.alpha_bar[steps][:, None]
            xt, target, t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps, eps, steps.float() / 1000.0
        else:
            t = torch.rand(x0.shape[0], device=x0.device)
            xt, target = (1 - t[:, None]) * x0 + t[:, None] * eps, eps - x0
        loss = F.mse_loss(self.net(xt, t), target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()


# --- FLOPs per image, counted as genlab counts them (src/bench.rs) --------------------------------

def mlp_macs(dims):
    return sum(a * b for a, b in zip(dims, dims[1:]))


def conv_macs(channels, side=28, cin=1):
    macs = 0
    for co in channels:
        side //= 2
        macs += side * side * co * cin * 16
        cin = co
    return macs, side * side * cin


def flop_per_image(model):
    """genlab's count (src/bench.rs): forward, weight gradients, and the input gradients that
    are needed (none for a layer fed by data: e1 / g1 are the first layers)."""
    if model in DIFFUSION:
        # genlab's `step_macs` for the diffusion family: 3 x forward.
        return 2 * 3 * UNet().forward_macs()
    if model == "mnist_vae":
        fwd = mlp_macs([784, 400]) + 2 * 400 * 20 + mlp_macs([20, 400, 784])
        return 2 * (3 * fwd - 784 * 400)
    if model == "conv_vae":
        convs, feat = conv_macs([32, 64])
        e1, _ = conv_macs([32])
        return 2 * (3 * (convs + 2 * feat * 16 + feat * 16 + convs) - e1)
    if model == "mnist_mlp_gan":
        g, d = mlp_macs([100, 256, 512, 784]), mlp_macs([784, 512, 256, 1])
        g1, d1 = 100 * 256, 784 * 512
    else:
        convs, feat = conv_macs([64, 128])
        g, d = feat * 100 + convs, convs + feat
        g1, (d1, _) = feat * 100, conv_macs([64])
    # D's weight gradients in the generator's step are not needed (PyTorch computes them).
    return 2 * (3 * g - g1 + 8 * d - 2 * d1)


# --- training steps ----------------------------------------------------------------------------

class VaeTrainer:
    def __init__(self, net, lr=1e-3):
        self.net = net
        self.opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)

    def step(self, x):
        mu, logvar = self.net(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = self.net.dec(z)
        b = x.shape[0]
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / b
        kl = 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum() / b
        loss = recon + kl
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item(), recon.item(), kl.item()


class GanTrainer:
    """`output`: "sigmoid" (data in [0, 1] as given) or "tanh" (D sees 2x - 1, G ends in tanh)."""

    def __init__(self, g, d, latent=100, lr=2e-4, output="sigmoid"):
        self.g, self.d, self.latent, self.output = g, d, latent, output
        self.opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=(0.5, 0.999), eps=1e-8)
        self.opt_d = torch.optim.Adam(d.parameters(), lr=lr, betas=(0.5, 0.999), eps=1e-8)

    def generate(self, z):
        return torch.tanh(self.g(z)) if self.output == "tanh" else torch.sigmoid(self.g(z))

    def step(self, x):
        if self.output == "tanh":
            x = 2.0 * x - 1.0
        z = torch.randn(x.shape[0], self.latent, device=x.device)
        fake = self.generate(z)
        real_l = self.d(x).squeeze(1)
        fake_l = self.d(fake.detach()).squeeze(1)
        d_loss = F.softplus(-real_l).mean() + F.softplus(fake_l).mean()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        g_l = self.d(fake).squeeze(1)
        g_loss = F.softplus(-g_l).mean()
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        return d_loss.item(), g_loss.item()


def make_trainer(model, output="sigmoid"):
    if model in DIFFUSION:
        return DiffusionTrainer(UNet().to(DEVICE), "ddpm" if model == "mnist_ddpm" else "flow")
    if model == "mnist_vae":
        return VaeTrainer(MlpVae().to(DEVICE))
    if model == "conv_vae":
        return VaeTrainer(ConvVae().to(DEVICE))
    if model == "mnist_mlp_gan":
        g, d = mlp_gan()
    else:
        g, d = dcgan(disc_bn=not ARGS.no_disc_bn)
    return GanTrainer(g.to(DEVICE), d.to(DEVICE), output=output)


def schedule(model):
    warmup, steps = (1, 3) if ARGS.quick else SCHEDULE[model]
    return (ARGS.warmup if ARGS.warmup is not None else warmup,
            ARGS.steps if ARGS.steps is not None else steps)


def train_model(model, data, gen):
    flop = flop_per_image(model)
    warmup, steps = schedule(model)
    reset_peak_rss()
    rss_before = rss_mb("VmRSS:")
    runs = []
    n = data.shape[0]
    for _ in range(ARGS.repeats):
        trainer = make_trainer(model)
        order = torch.randperm(n, generator=gen)
        cursor = 0

        def batch():
            nonlocal cursor, order
            if cursor + BATCH > n:
                order, cursor = torch.randperm(n, generator=gen), 0
            idx = order[cursor: cursor + BATCH]
            cursor += BATCH
            return data[idx.to(DEVICE)]

        for _ in range(warmup):
            trainer.step(batch())
        secs = 0.0
        for _ in range(steps):
            t0 = time.perf_counter()
            trainer.step(batch())
            secs += time.perf_counter() - t0
        runs.append(steps * BATCH / max(secs, 1e-9))
    ips = statistics.median(runs)
    peak = rss_mb("VmHWM:")
    return {
        "kind": "train",
        "framework": "pytorch",
        "model": model,
        "device": str(DEVICE),
        "threads": ARGS.threads,
        "batch": BATCH,
        "images_per_sec": ips,
        "runs": runs,
        "gflops": ips * flop / 1e9,
        "flop_per_image": flop,
        "peak_rss_mb": peak,
        "rss_increase_mb": max(peak - rss_before, 0.0),
        "steps": steps,
        "warmup": warmup,
        "repeats": ARGS.repeats,
        "date": utc_now(),
    }


def write_idx_images(path, pixels):
    """`pixels`: [N, 784] in [0, 1] -> an uncompressed IDX3 file of u8 28x28 images."""
    u8 = np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)
    header = bytes([0, 0, 8, 3]) + b"".join(int(v).to_bytes(4, "big") for v in (u8.shape[0], 28, 28))
    Path(path).write_bytes(header + u8.tobytes())


def dump_samples(model, data, gen):
    """Sample mode: train `model` (a GAN) and write `--n-samples` samples to `--dump-samples`."""
    steps = ARGS.steps if ARGS.steps is not None else ARGS.epochs * -(-data.shape[0] // BATCH)
    trainer = make_trainer(model, ARGS.output)
    trainer.g.train()
    trainer.d.train()
    n = data.shape[0]
    order, cursor = torch.randperm(n, generator=gen), 0
    t0 = time.perf_counter()
    for step in range(steps):
        if cursor + BATCH > n:
            order, cursor = torch.randperm(n, generator=gen), 0
        d_loss, g_loss = trainer.step(data[order[cursor: cursor + BATCH].to(DEVICE)])
        cursor += BATCH
        if (step + 1) % 630 == 0 or step + 1 == steps:
            print(f"step {step + 1}: d_loss {d_loss:.3f} g_loss {g_loss:.3f}", file=sys.stderr, flush=True)
    secs = time.perf_counter() - t0
    # Samples as genlab draws them: batch norm on its running statistics.
    trainer.g.eval()
    with torch.no_grad():
        z = torch.randn(ARGS.n_samples, trainer.latent, device=DEVICE)
        x = trainer.generate(z)
        if ARGS.output == "tanh":
            x = (x + 1.0) / 2.0
    write_idx_images(ARGS.dump_samples, x.cpu().numpy())
    emit({
        "kind": "samples",
        "framework": "pytorch",
        "model": model,
        "output": ARGS.output,
        "steps": steps,
        "train_secs": secs,
        "threads": ARGS.threads,
        "n": ARGS.n_samples,
        "file": ARGS.dump_samples,
        "d_loss": d_loss,
        "g_loss": g_loss,
        "date": utc_now(),
    })


def sgemm(n, threads):
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    rates = []
    start = time.perf_counter()
    while len(rates) < 7 or (time.perf_counter() - start < 0.5 and len(rates) < 200):
        t0 = time.perf_counter()
        a @ b
        rates.append(2 * n**3 / max(time.perf_counter() - t0, 1e-9) / 1e9)
    torch.set_num_threads(ARGS.threads)
    return {
        "kind": "sgemm",
        "framework": "pytorch",
        "threads": threads,
        "n": n,
        "gflops": max(rates),
        "gflops_median": statistics.median(rates),
        "date": utc_now(),
    }


def main():
    emit({
        "kind": "machine",
        "framework": "pytorch",
        "version": torch.__version__,
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "threads": ARGS.threads,
        "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
        "device": torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "cpu",
        "date": utc_now(),
    })
    data = torch.from_numpy(read_idx_images(Path(ARGS.data) / "train-images-idx3-ubyte.gz")).to(DEVICE)
    if ARGS.dump_samples:
        torch.manual_seed(ARGS.seed)
        dump_samples(ARGS.models[0], data, torch.Generator().manual_seed(ARGS.seed))
        return 0
    peak = None
    if not ARGS.train_only:
        n = 512 if ARGS.quick else 1024
        for t in sorted({1, ARGS.threads}):
            r = sgemm(n, t)
            if t == ARGS.threads:
                peak = r["gflops"]
            emit(r)
    # Each step ends in .item(), which waits for the device: a step's time is its whole work.
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    for model in ARGS.models:
        r = train_model(model, data, gen)
        r["pct_of_sgemm_peak"] = 100.0 * r["gflops"] / peak if peak else None
        emit(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
