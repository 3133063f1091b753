"""How the network denoises, measured and drawn: `edgedenoise explain IMAGE` (and `--toy`).

The models are ReLU convolution networks, so around any input x they are exactly linear:
y = J(x) x + b(x), with J(x) the Jacobian and b(x) what the biases and the noise-level map add.
Row p of J is the filter the network applies at output pixel p: a weighted average of input
pixels whose weights depend on the image (an adaptive filter, as in Mohan et al., ICLR 2020,
"Robust and interpretable blind image denoising via bias-free CNNs"). This module measures:

1. `filter_at`: that row, beside a Gaussian blur of the same effective size and the weights of
   non-local means (exp(-d^2/h^2) over the search window, h from nlm.nlm_h), with its effective
   size (sum w)^2 / sum w^2 (= 1 / sum w^2 for weights that sum to 1), its sum (how much of the
   local mean it keeps) and the share of y that J(x) x explains.
2. `brief_train` + `psnr_table`: a bias-free variant (ModelConfig(bias=False)) against the normal
   network, both trained the same brief way on sigma 0-50, scored outside that range.
3. `subspace`: eigenvectors and spectrum of J on a small crop, and its effective dimension
   ||J||_F^2 (= k for a projection onto k dimensions) against sigma.
4. The bottleneck claim: a plain CNN, the encoder-decoder without skips and the U-Net, trained alike.
5. `toy_experiment`: a one-hidden-layer fully connected denoiser of 1-D step signals.
6. `gan_finetune`: `tiny` fine-tuned with the adversarial loss of train.py beside plain MSE.

Torch-side: the runtime never imports this module.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import DataError

log = logging.getLogger("edgedenoise")

DEFAULT_SIGMAS = (10.0, 25.0, 50.0)
SUBSPACE_SIGMAS = (5.0, 10.0, 15.0, 25.0, 35.0, 50.0, 75.0)
RADIUS = 15  # filters are drawn on the (2R+1)^2 square around their pixel
WINDOW = 128  # the network sees this square around a pixel when its filter is computed
CROP = 24  # side of the crop of the subspace view
MIN_SIZE = 48
KINDS = ("flat", "edge", "texture", "corner")


# ---------------------------------------------------------------- images


def load_clean(path: str | Path, channels: int) -> np.ndarray:
    """An image file as uint8 HxWxC (RGB for colour); DataError if unusable or too small."""
    from .data import read_image

    img = read_image(path, channels)
    h, w = img.shape[:2]
    if min(h, w) < MIN_SIZE:
        raise DataError(f"image {path} is {w}x{h}: explain needs at least {MIN_SIZE}x{MIN_SIZE} pixels")
    return img


def noisy_float(clean_u8: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """clean/255 + N(0, sigma/255), float32 HxWxC, neither clipped nor rounded (the paper protocol)."""
    from .noise import protocol_noisy

    return protocol_noisy(clean_u8, sigma, seed, "paper")


def chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(img, -1, 0))).float()[None]


def parse_pixel(s: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in s.split(","))
    except ValueError:
        raise DataError(f"--pixel {s!r}: give x,y in pixels, e.g. --pixel 120,80") from None
    return x, y


def check_pixels(pixels: list[tuple[int, int]], shape: tuple[int, ...], path) -> None:
    h, w = shape[:2]
    for x, y in pixels:
        if not (0 <= x < w and 0 <= y < h):
            raise DataError(f"--pixel {x},{y} is outside image {path} ({w}x{h}: x in 0..{w - 1}, y in 0..{h - 1})")


def pick_pixels(clean_u8: np.ndarray, margin: int = RADIUS + 4) -> dict[str, tuple[int, int]]:
    """One pixel of each kind, from the clean image's structure tensor (eigenvalues l1 >= l2):
    flat = least gradient energy around it, corner = largest l2 (Shi-Tomasi), edge = largest l1
    where the gradients all point one way (coherence > 0.7), texture = most energy over a wider
    area where they do not (coherence < 0.3). Picks keep 48 px apart and `margin` px from the border."""
    g = clean_u8.astype(np.float32).mean(axis=2) if clean_u8.ndim == 3 else clean_u8.astype(np.float32)
    g = cv2.GaussianBlur(g, (0, 0), 1.0)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)

    def tensor(s):
        a, b, c = (cv2.GaussianBlur(v, (0, 0), s) for v in (gx * gx, gx * gy, gy * gy))
        tr, d = a + c, np.sqrt((a - c) ** 2 + 4 * b * b)
        return (tr + d) / 2, (tr - d) / 2

    l1, l2 = tensor(2.0)
    coh = ((l1 - l2) / (l1 + l2 + 1e-6)) ** 2
    w1, w2 = tensor(6.0)
    wcoh = ((w1 - w2) / (w1 + w2 + 1e-6)) ** 2
    h, w = g.shape
    allowed = np.zeros_like(g, bool)
    allowed[margin:h - margin, margin:w - margin] = True
    if not allowed.any():
        allowed[h // 2, w // 2] = True
    picks: dict[str, tuple[int, int]] = {}
    yy, xx = np.mgrid[:h, :w]

    def take(name, score, ok):
        m = allowed & ok
        for px, py in picks.values():
            m &= (xx - px) ** 2 + (yy - py) ** 2 > 48 ** 2
        if not m.any():
            m = allowed
        i = int(np.argmax(np.where(m, score, -np.inf)))
        picks[name] = (i % w, i // w)

    mid = (cv2.GaussianBlur(g, (0, 0), 4.0) > 40) & (cv2.GaussianBlur(g, (0, 0), 4.0) < 215)
    take("flat", -(w1 + w2), mid)
    take("corner", l2, np.ones_like(allowed))
    take("edge", l1, coh > 0.7)
    take("texture", w1 + w2, wcoh < 0.3)
    return {k: picks[k] for k in KINDS}


# ---------------------------------------------------------------- part 1: the network as an adaptive filter


def _window(h: int, w: int, x: int, y: int, size: int, multiple: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a square of about `size` around (x, y), inside the image,
    sides multiples of `multiple`."""
    sh, sw = (min(size, n) // multiple * multiple for n in (h, w))
    top = int(np.clip(y - sh // 2, 0, h - sh))
    left = int(np.clip(x - sw // 2, 0, w - sw))
    return top, left, sh, sw


def _frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def filter_at(model: nn.Module, noisy: np.ndarray, sigma: float, x: int, y: int, channel: int | None = None,
              radius: int = RADIUS, window: int = WINDOW) -> dict:
    """The network's filter at pixel (x, y): row (x, y, channel) of its Jacobian, computed on a
    `window`-square around the pixel (channel: the output channel, default green for colour).

    Returns `map` (the weights summed over input channels, (2r+1)^2 around the pixel: what a gray
    change of the input reaches the output through), `sum`, `neff`, `share_pixel` (1 - |y - (Jx)_p|
    / |y_p|) and `share_crop` (1 - ||y - Jx|| / ||y|| over the 32x32 around the pixel)."""
    model = _frozen(model)
    h, w, c = noisy.shape
    channel = (1 if c == 3 else 0) if channel is None else channel
    top, left, sh, sw = _window(h, w, x, y, window, model.config.size_multiple)
    xin = chw(noisy[top:top + sh, left:left + sw]).requires_grad_(True)
    s = torch.tensor([sigma / 255.0])
    py, px = y - top, x - left
    out = model(xin, s)
    (row,) = torch.autograd.grad(out[0, channel, py, px], xin)
    row = row[0].numpy().astype(np.float64)  # (C, sh, sw)
    spatial = row.sum(axis=0)
    with torch.no_grad():
        yv, jx = torch.func.jvp(lambda z: model(z, s), (xin.detach(),), (xin.detach(),))
    yv, jx = yv[0].numpy().astype(np.float64), jx[0].numpy().astype(np.float64)
    y0, y1, x0, x1 = max(py - 16, 0), min(py + 16, sh), max(px - 16, 0), min(px + 16, sw)
    ycrop, jcrop = yv[:, y0:y1, x0:x1], jx[:, y0:y1, x0:x1]
    yp, jp = yv[channel, py, px], float((row * xin.detach()[0].numpy()).sum())
    pad = np.pad(spatial, radius)
    fmap = pad[py:py + 2 * radius + 1, px:px + 2 * radius + 1]
    total = float(spatial.sum())
    return {"x": x, "y": y, "sigma": sigma, "map": fmap, "sum": total, "centre": float(spatial[py, px]),
            "neff": float(total ** 2 / max((spatial ** 2).sum(), 1e-12)),
            "neff_full": float(row.sum() ** 2 / max((row ** 2).sum(), 1e-12)),
            "share_pixel": float(1 - abs(yp - jp) / max(abs(yp), 1e-12)),
            "share_crop": float(1 - np.linalg.norm(ycrop - jcrop) / max(np.linalg.norm(ycrop), 1e-12))}


def gaussian_weights(neff: float, radius: int = RADIUS) -> tuple[np.ndarray, float]:
    """A normalised 2-D Gaussian of effective size `neff` (4 pi s^2 = neff), and its std s."""
    s = math.sqrt(max(neff, 1.0) / (4 * math.pi))
    r = np.arange(-radius, radius + 1)
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * s * s))
    return g / g.sum(), s


def nlm_weights(noisy: np.ndarray, x: int, y: int, sigma: float, radius: int = RADIUS) -> np.ndarray:
    """The weights OpenCV's NLM (nlm.nlm_denoise: fastNlMeansDenoisingColored) gives the luminance at
    (x, y), in the (2r+1)^2 frame: the noisy frame as uint8 converted to CIE Lab as OpenCV does, then
    exp(-d^2 / h^2) over the 21x21 search window, d^2 the mean squared L difference over the 7x7
    templates around (x, y) and around each candidate, h = nlm_h(sigma); normalised to sum 1."""
    from .nlm import SEARCH, TEMPLATE, nlm_h

    u8 = np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8)
    lum = (cv2.cvtColor(np.ascontiguousarray(u8[:, :, ::-1]), cv2.COLOR_BGR2LAB)[:, :, 0] if u8.shape[2] == 3
           else u8[:, :, 0]).astype(np.float64)
    o = radius + TEMPLATE
    img = np.pad(lum, o, mode="reflect")
    t, s = TEMPLATE // 2, SEARCH // 2
    ref = img[y + o - t:y + o + t + 1, x + o - t:x + o + t + 1]
    h = nlm_h(sigma)
    wts = np.zeros((2 * radius + 1,) * 2)
    for dy in range(-s, s + 1):
        for dx in range(-s, s + 1):
            cy, cx = y + o + dy, x + o + dx
            d2 = ((img[cy - t:cy + t + 1, cx - t:cx + t + 1] - ref) ** 2).mean()
            wts[radius + dy, radius + dx] = math.exp(-d2 / (h * h))
    return wts / wts.sum()


def neff_of(wts: np.ndarray) -> float:
    return float(wts.sum() ** 2 / max((wts ** 2).sum(), 1e-12))


# ---------------------------------------------------------------- part 3: the subspace view


def jacobian_crop(model: nn.Module, crop: np.ndarray, sigma: float) -> np.ndarray:
    """The full Jacobian of the network run on `crop` alone (HxWxC float), (HWC, HWC) in CHW order."""
    model = _frozen(model)
    xin = chw(crop)
    shape = xin.shape
    s = torch.tensor([sigma / 255.0])
    f = lambda z: model(z.reshape(shape), s).reshape(-1)
    return torch.autograd.functional.jacobian(f, xin.reshape(-1), vectorize=True).numpy().astype(np.float64)


def subspace(model: nn.Module, clean_u8: np.ndarray, x: int, y: int, sigmas=SUBSPACE_SIGMAS, size: int = CROP,
             progress: bool = True) -> dict:
    """Eigen-decomposition of the symmetric part of J on the size x size crop centred at (x, y),
    noisy at each sigma: eigenvalues (descending), the leading 8 eigenvectors (C, size, size),
    the effective dimension ||J||_F^2 and trace(J), and the asymmetry ||J - J^T||_F / ||J||_F."""
    from tqdm import tqdm

    h, w = clean_u8.shape[:2]
    size = min(size, h, w) // 8 * 8
    top, left = int(np.clip(y - size // 2, 0, h - size)), int(np.clip(x - size // 2, 0, w - size))
    crop = clean_u8[top:top + size, left:left + size]
    res = {"x": x, "y": y, "top": top, "left": left, "size": size, "clean": crop, "per_sigma": []}
    for sg in tqdm(sigmas, desc="subspace", unit="sigma", disable=not progress):
        J = jacobian_crop(model, noisy_float(crop, sg, seed=1), sg)
        sym = (J + J.T) / 2
        vals, vecs = np.linalg.eigh(sym)
        order = np.argsort(vals)[::-1]
        vals, vecs = vals[order], vecs[:, order]
        c = crop.shape[2]
        res["per_sigma"].append({
            "sigma": sg, "eigenvalues": vals, "vectors": vecs[:, :8].T.reshape(8, c, size, size),
            "dim_frobenius": float((J ** 2).sum()), "dim_trace": float(np.trace(J)),
            "asymmetry": float(np.linalg.norm(J - J.T) / np.linalg.norm(J)), "n": J.shape[0]})
    return res


# ---------------------------------------------------------------- drawing


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 10})
    return plt


def _show_filter(ax, m, title):
    """Colours scaled to the largest weight off the centre (the centre weight, often far larger, saturates)."""
    off = m.copy()
    off[m.shape[0] // 2, m.shape[1] // 2] = 0
    v = max(float(np.abs(off).max()), 1e-9)
    im = ax.imshow(m, cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([]), ax.set_yticks([])
    ax.plot([m.shape[1] // 2], [m.shape[0] // 2], "k+", ms=6, mew=0.8)
    return im


def draw_filters(clean_u8, noisy_main, sigma_main, pixels, rows, path, title):
    """Rows: one pixel each. Columns: clean context, the network's filter at every sigma, a Gaussian of
    the same effective size as the network's filter at sigma_main, and NLM's weights at sigma_main."""
    plt = _plt()
    sigmas = sorted({r["sigma"] for r in rows})
    ncol = 1 + len(sigmas) + 2
    fig, axes = plt.subplots(len(pixels), ncol, figsize=(2.4 * ncol, 2.9 * len(pixels) + 0.9), squeeze=False)
    for i, (kind, (x, y)) in enumerate(pixels.items()):
        ctx = np.pad(clean_u8, ((RADIUS, RADIUS), (RADIUS, RADIUS), (0, 0)), mode="reflect")[y:y + 2 * RADIUS + 1,
                                                                                           x:x + 2 * RADIUS + 1]
        ax = axes[i, 0]
        ax.imshow(ctx.squeeze(), cmap="gray" if ctx.shape[2] == 1 else None, vmin=0, vmax=255,
                  interpolation="nearest")
        ax.plot([RADIUS], [RADIUS], "r+", ms=10, mew=1.5)
        ax.set_title(f"{kind} ({x},{y})\nclean, {2 * RADIUS + 1}x{2 * RADIUS + 1} px")
        ax.set_xticks([]), ax.set_yticks([])
        mine = {r["sigma"]: r for r in rows if (r["x"], r["y"]) == (x, y)}
        for j, sg in enumerate(sigmas):
            r = mine[sg]
            _show_filter(axes[i, 1 + j], r["map"], f"network σ={sg:g}: Neff {r['neff']:.1f}\n"
                                                   f"Σw {r['sum']:.2f}, centre {r['centre']:.2f}")
        g, gs = gaussian_weights(mine[sigma_main]["neff"])
        _show_filter(axes[i, 1 + len(sigmas)], g, f"Gaussian, std {gs:.1f} px\n(same Neff as σ={sigma_main:g})")
        nw = nlm_weights(noisy_main, x, y, sigma_main)
        mine[sigma_main]["nlm_neff"] = neff_of(nw)
        _show_filter(axes[i, 2 + len(sigmas)], nw, f"NLM, σ={sigma_main:g}\nNeff {neff_of(nw):.1f}")
    fig.suptitle(title + "\nred = positive weight, blue = negative; each panel scaled to its largest weight off "
                         "the centre pixel (the centre saturates)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def draw_pixels(clean_u8, pixels, path, title):
    plt = _plt()
    h, w = clean_u8.shape[:2]
    fig, ax = plt.subplots(figsize=(min(10, 2 + 8 * w / max(h, w)), min(8, 1 + 8 * h / max(h, w))))
    ax.imshow(clean_u8.squeeze(), cmap="gray" if clean_u8.shape[2] == 1 else None)
    from matplotlib.patches import Rectangle

    gap = 0.05 * h  # about two text lines at this figure size: labels closer than that are pushed down
    placed: list[tuple[int, float]] = []
    for kind, (x, y) in sorted(pixels.items(), key=lambda kv: kv[1][1]):
        ax.add_patch(Rectangle((x - RADIUS, y - RADIUS), 2 * RADIUS + 1, 2 * RADIUS + 1, fill=False, ec="red", lw=1.5))
        ty = float(y)
        for px, py in placed:
            if abs(px - x) < 0.4 * w and abs(ty - py) < gap:
                ty = py + gap
        placed.append((x, ty))
        ax.text(x + RADIUS + 3, ty, f"{kind} ({x},{y})", color="yellow", fontsize=11, va="center",
                bbox={"facecolor": "black", "alpha": 0.6, "pad": 1.5})
    ax.set_title(title)
    ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _vec_image(v: np.ndarray) -> np.ndarray:
    """An eigenvector (C, H, W) as an image: 0.5 gray = 0, scaled to its largest magnitude."""
    img = 0.5 + 0.5 * v / max(float(np.abs(v).max()), 1e-12)
    return np.moveaxis(img, 0, -1).squeeze()


def draw_subspace(sub, path, title):
    plt = _plt()
    per = sub["per_sigma"]
    show = [p for p in per if p["sigma"] in (10.0, 50.0)] or per[:2]
    fig = plt.figure(figsize=(15, 2.3 * len(show) + 3.8))
    gs = fig.add_gridspec(len(show) + 1, 9, height_ratios=[1] * len(show) + [1.5])
    for i, p in enumerate(show):
        ax = fig.add_subplot(gs[i, 0])
        ax.imshow(sub["clean"].squeeze(), cmap="gray" if sub["clean"].shape[2] == 1 else None,
                  interpolation="nearest")
        ax.set_title(f"clean crop\n{sub['size']}x{sub['size']} at ({sub['x']},{sub['y']})")
        ax.set_xticks([]), ax.set_yticks([])
        for k in range(8):
            ax = fig.add_subplot(gs[i, 1 + k])
            ax.imshow(np.clip(_vec_image(p["vectors"][k]), 0, 1), cmap="gray", interpolation="nearest")
            ax.set_title(f"σ={p['sigma']:g}: v{k + 1}\nλ={p['eigenvalues'][k]:.3f}")
            ax.set_xticks([]), ax.set_yticks([])
    ax = fig.add_subplot(gs[-1, 0:4])
    for p in per:
        ax.plot(np.arange(1, p["n"] + 1), p["eigenvalues"], label=f"σ={p['sigma']:g}")
    ax.set_xscale("log")
    ax.set_xlabel("eigenvalue index (descending)")
    ax.set_ylabel("eigenvalue of (J+Jᵀ)/2")
    ax.set_title("spectrum: near 1 = passed through, near 0 = removed")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    ax = fig.add_subplot(gs[-1, 5:9])
    sg = [p["sigma"] for p in per]
    ax.plot(sg, [p["dim_frobenius"] for p in per], "o-", label="‖J‖²_F (Σ singular values²)")
    ax.plot(sg, [p["dim_trace"] for p in per], "s--", label="trace J (Σ eigenvalues)")
    ax.set_yscale("log")
    ax.set_xlabel("noise σ (0-255)")
    ax.set_ylabel(f"effective dimension (of {per[0]['n']})")
    ax.set_title("dimensions kept against noise level")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ---------------------------------------------------------------- the command


def stamp() -> dict:
    """The project's results stamp (runtime.stats.stamp: date, command, machine, versions) and
    torch's thread count, which the timings and the Jacobians' cost depend on."""
    from .runtime.stats import stamp as base

    return {**base(), "threads": torch.get_num_threads()}


def explain(image: str | Path, model: str = "tiny", sigmas=DEFAULT_SIGMAS, pixels: list[tuple[int, int]] | None = None,
            out: str | Path = "explain", progress: bool = True, prefix: str = "",
            subspace_sigmas=SUBSPACE_SIGMAS) -> dict:
    """Parts 1 and 3 for one image (taken as clean; noise of each sigma added, seed 0): writes
    <prefix>pixels.png, <prefix>filters.png, <prefix>subspace.png and <prefix>explain.json in `out`.
    Returns the measured numbers."""
    from tqdm import tqdm

    from .modelfile import load_model
    from .outputs import guard

    sigmas = sorted({float(s) for s in sigmas})
    if not sigmas or any(not 0 < s <= 100 for s in sigmas):
        raise DataError(f"--sigma {sigmas}: give noise levels in (0, 100] on the 0-255 scale")
    out = guard(out, [image], folder=True, what="--out folder")
    out.mkdir(parents=True, exist_ok=True)
    net = load_model(model)
    clean = load_clean(image, net.config.channels)
    if pixels:
        check_pixels(pixels, clean.shape, image)
        chosen = {f"p{i + 1}": p for i, p in enumerate(pixels)}
    else:
        chosen = pick_pixels(clean)
    main = sigmas[len(sigmas) // 2]
    noisy = {s: noisy_float(clean, s, seed=0) for s in sigmas}
    rows = []
    jobs = [(k, p, s) for k, p in chosen.items() for s in sigmas]
    for kind, (x, y), s in tqdm(jobs, desc="filters", unit="filter", disable=not progress):
        r = filter_at(net, noisy[s], s, x, y)
        r["kind"] = kind
        rows.append(r)
    name = Path(image).name
    draw_pixels(clean, chosen, out / f"{prefix}pixels.png", f"{name}: the pixels explained")
    draw_filters(clean, noisy[main], main, chosen, rows, out / f"{prefix}filters.png",
                 f"{name}, model {net.config.name}: the network's filter at each pixel (Jacobian row, "
                 f"green output, summed over input channels)")
    sx, sy = chosen.get("edge", next(iter(chosen.values())))
    dims = sorted({float(s) for s in subspace_sigmas})
    if not dims or any(not 0 < s <= 100 for s in dims):
        raise DataError(f"--dims-sigma {dims}: give noise levels in (0, 100] on the 0-255 scale")
    sub = subspace(net, clean, sx, sy, sigmas=dims, progress=progress)
    draw_subspace(sub, out / f"{prefix}subspace.png",
                  f"{name}, model {net.config.name}: eigenvectors of the Jacobian on a {sub['size']}x{sub['size']} "
                  f"crop (the network run on the crop alone), spectrum and effective dimension")
    numbers = {
        "image": str(image), "model": str(model), "sigmas": sigmas, "stamp": stamp(),
        "filters": [{k: r[k] for k in ("kind", "x", "y", "sigma", "sum", "centre", "neff", "neff_full", "share_pixel",
                                       "share_crop") if k in r} | ({"nlm_neff": r["nlm_neff"]}
                                                                              if "nlm_neff" in r else {})
                    for r in rows],
        "subspace": {"x": sub["x"], "y": sub["y"], "size": sub["size"],
                     "per_sigma": [{k: p[k] for k in ("sigma", "dim_frobenius", "dim_trace", "asymmetry", "n")}
                                   | {"top_eigenvalues": [round(float(v), 4) for v in p["eigenvalues"][:8]]}
                                   for p in sub["per_sigma"]]},
        "files": [f"{prefix}{f}" for f in ("pixels.png", "filters.png", "subspace.png", "explain.json")],
    }
    (out / f"{prefix}explain.json").write_text(json.dumps(numbers, indent=2) + "\n")
    return numbers


def filters_table(numbers: dict) -> str:
    lines = ["| pixel | sigma | effective size (px) | sum of weights | centre weight | share explained (pixel) | "
             "share explained (32x32) | NLM effective size |", "|---|---|---|---|---|---|---|---|"]
    for r in numbers["filters"]:
        nlm = f"{r['nlm_neff']:.1f}" if "nlm_neff" in r else ""
        lines.append(f"| {r['kind']} ({r['x']},{r['y']}) | {r['sigma']:g} | {r['neff']:.1f} | {r['sum']:.3f} | "
                     f"{r['centre']:.3f} | {r['share_pixel']:.3f} | {r['share_crop']:.3f} | {nlm} |")
    return "\n".join(lines)


def subspace_table(numbers: dict) -> str:
    lines = ["| sigma | ‖J‖²_F | trace J | asymmetry ‖J-Jᵀ‖/‖J‖ | top eigenvalues |", "|---|---|---|---|---|"]
    for p in numbers["subspace"]["per_sigma"]:
        lines.append(f"| {p['sigma']:g} | {p['dim_frobenius']:.1f} | {p['dim_trace']:.1f} | {p['asymmetry']:.3f} | "
                     f"{', '.join(f'{v:.2f}' for v in p['top_eigenvalues'][:4])} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- part 5: the toy


class ToyFC(nn.Module):
    """x (N, L) -> W2 relu(W1 x + b1) + b2: one hidden layer, fully connected."""

    def __init__(self, length: int = 64, hidden: int = 64):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(length, hidden), nn.Linear(hidden, length)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))

    def jacobian(self, x: torch.Tensor) -> torch.Tensor:
        """(L, L) Jacobian at one signal x (L,): W2 diag(active) W1."""
        active = (self.fc1(x) > 0).float()
        return self.fc2.weight @ (active[:, None] * self.fc1.weight)


def toy_signals(rng: np.random.Generator, n: int, length: int = 64) -> tuple[np.ndarray, list[list[int]]]:
    """n piecewise-smooth signals in [0,1]: 1-3 steps at random places (6 samples or more from the
    ends), each piece a gentle ramp of random level and slope. Returns (signals, step positions)."""
    k = rng.integers(1, 4, n)
    cuts = np.sort(rng.integers(6, length - 6, (n, 3)), axis=1)
    cuts = np.where(np.arange(3)[None] < k[:, None], cuts, length)  # unused cuts past the end
    cuts = np.sort(cuts, axis=1)
    t = np.arange(length)
    piece = (t[None, :, None] >= cuts[:, None, :]).sum(axis=2)  # (n, L): 0..3
    start = np.concatenate([np.zeros((n, 1), int), cuts], axis=1)  # (n, 4)
    level, slope = rng.uniform(0.1, 0.9, (n, 4)), rng.uniform(-0.006, 0.006, (n, 4))
    rows = np.arange(n)[:, None]
    sig = level[rows, piece] + slope[rows, piece] * (t[None] - start[rows, piece])
    steps = [sorted({int(c) for c in row if c < length}) for row in cuts]
    return np.clip(sig, 0, 1).astype(np.float32), steps


def toy_experiment(out: str | Path, noise: float = 0.1, steps: int = 3000, length: int = 64, hidden: int = 64,
                   seed: int = 0, progress: bool = True, prefix: str = "toy_") -> dict:
    """Train ToyFC on fresh noisy step signals (MSE, Adam); draw noisy/clean/denoised test signals,
    the hidden units' input weights and Jacobian rows at a flat part and beside a step."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = ToyFC(length, hidden)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in tqdm(range(steps), desc="toy", unit="step", disable=not progress, mininterval=0.5):
        clean, _ = toy_signals(rng, 128, length)
        noisy = clean + rng.standard_normal(clean.shape).astype(np.float32) * noise
        loss = F.mse_loss(net(torch.from_numpy(noisy)), torch.from_numpy(clean))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    trng = np.random.default_rng(seed + 1000)
    clean, cuts = toy_signals(trng, 500, length)
    noisy = clean + trng.standard_normal(clean.shape).astype(np.float32) * noise
    with torch.no_grad():
        den = net(torch.from_numpy(noisy)).numpy()
    mse_noisy, mse_den = float(((noisy - clean) ** 2).mean()), float(((den - clean) ** 2).mean())
    # a test signal with one step well inside, for the Jacobian rows
    i = next((j for j, c in enumerate(cuts) if len(c) == 1 and 20 <= c[0] <= length - 20), 0)
    step_at = cuts[i][0]
    with torch.no_grad():
        J = net.jacobian(torch.from_numpy(noisy[i])).numpy()
    flat_at, near = (step_at - 14 if step_at > 24 else step_at + 14), step_at - 2
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    for k, ax in enumerate(axes):
        j = [i, (i + 1) % 500, (i + 2) % 500][k]
        ax.plot(noisy[j], ".", color="0.6", ms=4, label="noisy")
        ax.plot(clean[j], "k-", lw=1.5, label="clean")
        ax.plot(den[j], "r-", lw=1.3, label="denoised")
        ax.set_title(f"test signal {j}: MSE noisy {((noisy[j] - clean[j]) ** 2).mean():.4f} → "
                     f"denoised {((den[j] - clean[j]) ** 2).mean():.4f}")
        ax.set_xlabel("sample")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=9)
    fig.suptitle(f"one hidden layer ({hidden} ReLU units) on {length}-sample step signals, noise std {noise}: "
                 f"test MSE {mse_noisy:.4f} → {mse_den:.4f} ({mse_noisy / mse_den:.1f}x lower)", fontsize=11)
    fig.tight_layout()
    fig.savefig(out / f"{prefix}signals.png", dpi=80)
    plt.close(fig)

    w1 = net.fc1.weight.detach().numpy()
    w2 = net.fc2.weight.detach().numpy()
    strength = np.linalg.norm(w1, axis=1) * np.linalg.norm(w2, axis=0)
    order = np.argsort(strength)[::-1][:16]
    fig, axes = plt.subplots(4, 4, figsize=(14, 8), sharex=True)
    for ax, u in zip(axes.flat, order):
        ax.plot(w1[u], "b-", lw=1.2, label="input weights (W1 row)")
        ax.plot(w2[:, u] * np.abs(w1[u]).max() / max(np.abs(w2[:, u]).max(), 1e-9), "r-", lw=0.9, alpha=0.7,
                label="output weights (W2 column, rescaled)")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"unit {u}: {describe_unit(w1[u])}")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("the 16 strongest hidden units (by |W1 row|·|W2 column|): what each one detects (blue) "
                 "and writes back (red)", fontsize=11)
    fig.tight_layout()
    fig.savefig(out / f"{prefix}units.png", dpi=80)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(14, 3.8))
    for ax, at, what in ((axes[0], flat_at, "flat part"), (axes[1], near, "2 samples before the step")):
        ax.bar(np.arange(length), J[at], color="tab:blue", label=f"Jacobian row at sample {at}")
        ax.axvline(at, color="g", lw=1.5, label=f"the output sample ({at})")
        ax.axvline(step_at - 0.5, color="r", ls="--", lw=1.5, label=f"the step (between {step_at - 1} and {step_at})")
        ax.set_title(f"{what}: weights sum {J[at].sum():.2f}, effective size {neff_of(J[at]):.1f} samples")
        ax.set_xlabel("input sample")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"the denoiser is locally linear: y = J(x)·x + b; rows of J on test signal {i}", fontsize=11)
    fig.tight_layout()
    fig.savefig(out / f"{prefix}jacobian.png", dpi=80)
    plt.close(fig)
    kinds = [describe_unit(w1[u]) for u in order]
    res = {"mse_noisy": mse_noisy, "mse_denoised": mse_den, "factor": mse_noisy / mse_den, "noise": noise,
           "steps": steps, "hidden": hidden, "length": length, "test_signal": i, "step_at": step_at,
           "flat_row": {"at": flat_at, "sum": float(J[flat_at].sum()), "neff": neff_of(J[flat_at])},
           "step_row": {"at": near, "sum": float(J[near].sum()), "neff": neff_of(J[near]),
                        "weight_across_step": float(np.abs(J[near, step_at:]).sum() / np.abs(J[near]).sum())},
           "unit_kinds": {k: kinds.count(k) for k in sorted(set(kinds))},
           "files": [f"{prefix}{f}.png" for f in ("signals", "units", "jacobian")]}
    (out / f"{prefix}numbers.json").write_text(json.dumps(res, indent=2) + "\n")
    return res


def describe_unit(w: np.ndarray) -> str:
    """'smoothing' (one-signed bump), 'step' (a + / - pair side by side) or 'mixed', by where the
    weight mass is: the positive and negative parts' centres and shares."""
    pos, neg = np.clip(w, 0, None), np.clip(-w, 0, None)
    tot = pos.sum() + neg.sum() + 1e-12
    if max(pos.sum(), neg.sum()) / tot > 0.8:
        return "smoothing (one sign)"
    idx = np.arange(len(w))
    cp, cn = (idx * pos).sum() / (pos.sum() + 1e-12), (idx * neg).sum() / (neg.sum() + 1e-12)
    spread = math.sqrt(((idx - (cp + cn) / 2) ** 2 * np.abs(w)).sum() / tot)
    return "step (+/- pair)" if abs(cp - cn) > 0.5 * spread else "mixed"


# ---------------------------------------------------------------- parts 2, 4, 6: brief training and scoring


def brief_train(mcfg, data: str | Path, steps: int = 1500, sigma_range=(0.0, 50.0), batch: int = 8, patch: int = 48,
                lr: float = 1e-3, seed: int = 0, progress: bool = True, desc: str = "train") -> nn.Module:
    """Train a fresh network of config `mcfg` for `steps` Adam steps (warmup 50 then cosine) on seeded
    random patches of `data` with AWGN of sigma uniform in `sigma_range` (float, unclipped). Every
    network trained with the same arguments sees the same batches."""
    from tqdm import tqdm

    from . import data as D
    from .model import build_model
    from .train import lr_lambda
    from .trainconfig import TrainConfig

    torch.manual_seed(seed)
    model = build_model(mcfg)
    images = D.scan_images(data, min_size=patch, channels=mcfg.channels)
    sampler = D.PatchSampler(images, patch, mcfg.channels, seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    # training's own warmup + cosine schedule, down to 2 % of lr
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(TrainConfig(steps=steps, warmup=min(50, steps // 10 + 1),
                                                                         lr=lr, lr_min=0.02 * lr)))
    model.train()
    lo, hi = sigma_range
    bar = tqdm(range(steps), desc=desc, unit="step", disable=not progress, mininterval=1.0)
    for step in bar:
        clean = torch.from_numpy(sampler.patches(step, 0, batch))
        rng = np.random.default_rng([seed, step, 7])
        sig = rng.uniform(lo, hi, batch).astype(np.float32) / 255.0
        noisy = clean + torch.from_numpy(rng.standard_normal(clean.shape, dtype=np.float32)) * torch.from_numpy(
            sig)[:, None, None, None]
        loss = F.mse_loss(model(noisy, torch.from_numpy(sig)), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.2e}")
    return model.eval()


def test_images(folder: str | Path, channels: int, limit: int, size: int = 256) -> list[np.ndarray]:
    """The first `limit` images of a folder (sorted), centre-cropped to at most size x size."""
    from .data import list_images, read_image

    out = []
    for p in list_images(folder)[:limit]:
        img = read_image(p, channels)
        h, w = img.shape[:2]
        sh, sw = min(h, size) // 8 * 8, min(w, size) // 8 * 8
        out.append(np.ascontiguousarray(img[(h - sh) // 2:(h - sh) // 2 + sh, (w - sw) // 2:(w - sw) // 2 + sw]))
    return out


@torch.no_grad()
def denoise_u8(model: nn.Module, noisy: np.ndarray, sigma: float) -> np.ndarray:
    """Noisy HxWxC float (0-1) -> denoised uint8, clipped and rounded."""
    from .train import denoise_tensor

    out = denoise_tensor(_frozen(model), chw(noisy), torch.tensor([sigma / 255.0]))[0].numpy()
    return np.round(np.moveaxis(out, 0, -1) * 255).astype(np.uint8)


def psnr_table(models: dict[str, nn.Module], images: list[np.ndarray], sigmas, ssim: bool = False,
               progress: bool = True) -> dict:
    """{name: {sigma: mean PSNR (and SSIM)}} over `images` with paper-protocol noise of image index i,
    every model told the true sigma (a bias-free model ignores it)."""
    from tqdm import tqdm

    from .evaluate import ssim_u8
    from .frames import psnr_u8

    res = {n: {float(s): {"psnr": [], "ssim": []} for s in sigmas} for n in models}
    jobs = [(i, s) for i in range(len(images)) for s in sigmas]
    for i, s in tqdm(jobs, desc="score", unit="image", disable=not progress, mininterval=1.0):
        noisy = noisy_float(images[i], s, seed=i)
        for n, m in models.items():
            out = denoise_u8(m, noisy, s)
            res[n][float(s)]["psnr"].append(psnr_u8(out, images[i]))
            if ssim:
                res[n][float(s)]["ssim"].append(ssim_u8(out, images[i]))
    return {n: {s: {k: float(np.mean(v)) for k, v in d.items() if v} for s, d in per.items()} for n, per in res.items()}


def psnr_noisy(images: list[np.ndarray], sigmas) -> dict:
    from .frames import psnr_u8

    return {float(s): float(np.mean([psnr_u8(np.round(np.clip(noisy_float(im, s, seed=i), 0, 1) * 255).astype(
        np.uint8), im) for i, im in enumerate(images)])) for s in sigmas}


def gan_finetune(data: str | Path, out: str | Path, steps: int = 400, adv_weight: float = 0.0, seed: int = 0,
                 progress: bool = True) -> nn.Module:
    """Fine-tune the shipped `tiny` with train.py's loop for `steps` (adv_weight > 0: plus its PatchGAN
    hinge loss), on CPU, one thread, no loader processes. Returns the fine-tuned network."""
    from .modelfile import load_model
    from .train import train
    from .trainconfig import TrainConfig

    cfg = TrainConfig(data=str(data), out=str(out), model="tiny", init="tiny", steps=steps, batch=8, patch=64,
                      lr=1e-4, lr_min=1e-5, warmup=20, sigma_min=0.0, sigma_max=75.0, adv_weight=adv_weight,
                      val_count=0, val_every=steps, ckpt_every=steps, workers=0, threads=1, amp="off",
                      device="cpu", seed=seed)
    train(cfg, progress=progress)
    return load_model(Path(out))
