"""Regenerate every figure and number of docs/how-it-denoises.md.

    python tools/explain_figures.py                 # all parts, stored weights where present
    python tools/explain_figures.py --only biasfree bottleneck --retrain

Parts: filters (1 and 3: `edgedenoise explain` on Kodak24 kodim23), toy (5), biasfree (2), bottleneck (4),
gan (6), video (7: the shipped tiny-video's gate on a clip made from kodim23 and kodim03). The
briefly trained networks of parts 2, 4 and 6 are stored under edgedenoise/models/explain/
(float16 safetensors) and trained here when missing or with --retrain (minutes each on one core).
Figures go to docs/figures/, the numbers to docs/figures/numbers.json (each part updates its own key).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from edgedenoise import explain as E  # noqa: E402
from edgedenoise.data import default_data_root, list_images  # noqa: E402
from edgedenoise.model import ModelConfig, count_macs, count_params  # noqa: E402
from edgedenoise.modelfile import load_model, save_model  # noqa: E402

FIG = ROOT / "docs" / "figures"
STORE = ROOT / "edgedenoise" / "models" / "explain"
DATA = default_data_root()
TRAIN = DATA / "train" / "CBSD432"
TEST = DATA / "test" / "CBSD68"
IMAGE = DATA / "test" / "Kodak24" / "kodim23.png"
N_TEST = 12  # first 12 CBSD68 images, centre 256x256 crops
TINY = {"widths": (16, 32, 64), "depths": (1, 2, 2)}
BRIEF = {"steps": 3000, "sigma_range": (0.0, 50.0), "batch": 8, "patch": 48, "lr": 1e-3, "seed": 0}


def update_numbers(key: str, value) -> None:
    path = FIG / "numbers.json"
    d = json.loads(path.read_text()) if path.exists() else {}
    d[key] = value
    path.write_text(json.dumps(d, indent=2, default=float) + "\n")


def brief_model(name: str, mcfg: ModelConfig, args):
    """The stored network `name`, trained the brief way first when missing (or --retrain); its
    progress bar unless --quiet."""
    stem = STORE / name
    steps = args.steps
    if args.retrain or not stem.with_suffix(".safetensors").exists():
        t = time.time()
        m = E.brief_train(mcfg, TRAIN, **{**BRIEF, "steps": steps}, desc=name, progress=not args.quiet)
        save_model(m, stem, extra={"trained_on": "CBSD432", "brief": {**BRIEF, "steps": steps},
                                   "seconds": round(time.time() - t), "threads": torch.get_num_threads()},
                   half=True)
    return load_model(str(stem.with_suffix(".safetensors")))


def crop_panel(models: dict, clean: np.ndarray, sigma: float, seed: int, box) -> list[tuple[str, np.ndarray]]:
    from edgedenoise.frames import psnr_u8

    y0, x0, s = box
    noisy = E.noisy_float(clean, sigma, seed)
    shown = [(f"noisy σ={sigma:g}", np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8), None)]
    for n, m in models.items():
        out = E.denoise_u8(m, noisy, sigma)
        shown.append((n, out, psnr_u8(out, clean)))
    shown.append(("clean", clean, None))
    return [(lab if p is None else f"{lab}\n{p:.2f} dB (whole crop)", im[y0:y0 + s, x0:x0 + s]) for lab, im, p in shown]


def draw_panels(panels, path, title, extra=None):
    plt = E._plt()
    n = len(panels) + (1 if extra else 0)
    fig, axes = plt.subplots(1, n, figsize=(3.1 * n, 3.9 if not extra else 3.6), squeeze=False)
    axes = axes[0]
    k = 0
    if extra:
        extra(axes[0])
        k = 1
    for ax, (lab, im) in zip(axes[k:], panels):
        ax.imshow(im, interpolation="nearest")
        ax.set_title(lab)
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=85)
    plt.close(fig)


# ---------------------------------------------------------------- parts


def part_filters(args):
    n = E.explain(IMAGE, "tiny", E.DEFAULT_SIGMAS, None, FIG, progress=not args.quiet, prefix="kodim23_")
    update_numbers("filters", n)
    print(E.filters_table(n))
    print(E.subspace_table(n))


def part_toy(args):
    r = E.toy_experiment(FIG, progress=not args.quiet, prefix="toy_")
    r["stamp"] = E.stamp()
    update_numbers("toy", r)
    print(f"toy: MSE {r['mse_noisy']:.4f} -> {r['mse_denoised']:.4f} ({r['factor']:.1f}x)")


def part_biasfree(args):
    normal = brief_model("tiny-s50", ModelConfig("tiny-s50", **TINY), args)
    bf = brief_model("tiny-bf-s50", ModelConfig("tiny-bf-s50", **TINY, bias=False), args)
    shipped = load_model("tiny")
    images = E.test_images(TEST, 3, N_TEST)
    sigmas = [10, 25, 40, 50, 60, 65, 70, 75]
    models = {"normal (biases + σ map), σ 0-50": normal, "bias-free (blind), σ 0-50": bf,
              "shipped tiny, σ 0-75 (+ camera noise)": shipped}
    table = E.psnr_table(models, images, sigmas, progress=not args.quiet)
    noisy = E.psnr_noisy(images, sigmas)
    # the identity and the linear share on the page's image
    clean = E.load_clean(IMAGE, 3)
    px = E.pick_pixels(clean)
    shares = {}
    for name, m in (("normal", normal), ("bias-free", bf)):
        for sg in (25.0, 70.0):
            r = E.filter_at(m, E.noisy_float(clean, sg, 0), sg, *px["flat"])
            shares[f"{name} σ={sg:g}"] = {k: r[k] for k in ("sum", "neff", "share_pixel", "share_crop")}
    plt = E._plt()

    def curve(ax):
        for n, per in table.items():
            ax.plot(sigmas, [per[float(s)]["psnr"] for s in sigmas], "o-", label=n.split(",")[0] + n.split(",")[1])
        ax.plot(sigmas, [noisy[float(s)] for s in sigmas], "k:", label="noisy input")
        ax.axvspan(0, 50, color="0.9", zorder=0)
        ax.text(30, ax.get_ylim()[0] + 0.5, "training range\nof the brief pair", ha="center", fontsize=9)
        ax.set_xlabel("noise σ (0-255)"), ax.set_ylabel(f"PSNR (dB), CBSD68 first {N_TEST}, 256² crops")
        ax.set_title("beyond the training range (σ > 50)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")  # the curves fall to the right: room above them

    panels = crop_panel({"normal σ 0-50": normal, "bias-free σ 0-50": bf}, images[3], 70.0, 3, (64, 64, 128))
    draw_panels(panels, FIG / "biasfree.png", "bias-free vs normal network, both trained the same brief way on σ 0-50, "
                "scored at σ 70 (outside it), 128x128 of a 256² crop", extra=curve)
    plt.close("all")
    update_numbers("biasfree", {"psnr": table, "noisy": noisy, "flat_pixel": px["flat"], "shares": shares,
                                "brief": {**BRIEF, "steps": args.steps}, "stamp": E.stamp()})
    for n, per in table.items():
        print(n, {s: round(v["psnr"], 2) for s, v in per.items()})
    print(json.dumps(shares, indent=1))


def part_bottleneck(args):
    def brief(name, **kw):
        return brief_model(name, ModelConfig(name, **TINY, **kw), args)

    nets = {
        "plain CNN (DnCNN-like)": brief_model("plain-cnn", ModelConfig("plain-cnn", widths=(24,), depths=(4,)),
                                              args),
        "encoder-decoder, no skips, residual": brief("tiny-noskip-s50", skips=False),
        "encoder-decoder, no skips, output = decoder(code)": brief("tiny-noskip-nores-s50", skips=False,
                                                                   residual=False),
        "U-Net (tiny, with skips)": brief("tiny-s50"),
        "U-Net, output = decoder(...)": brief("tiny-nores-s50", residual=False),
    }
    images = E.test_images(TEST, 3, N_TEST)
    sigmas = [15, 25, 50]
    table = E.psnr_table(nets, images, sigmas, progress=not args.quiet)
    # what each network returns for the clean image itself: a bottleneck keeps only what its code holds
    clean = E.psnr_table(nets, images, [0], progress=not args.quiet)
    cost = {n: {"macs_per_pixel": round(count_macs(m)[1]), "parameters": count_params(m)} for n, m in nets.items()}
    shown = ("plain CNN (DnCNN-like)", "encoder-decoder, no skips, output = decoder(code)", "U-Net (tiny, with skips)")
    labels = ("plain CNN", "bottleneck AE (not residual)", "U-Net (tiny)")
    panels = crop_panel({lab: nets[n] for lab, n in zip(labels, shown)}, images[5], 25.0, 5, (64, 64, 128))
    draw_panels(panels, FIG / "bottleneck.png", "same MAC budget, same brief training (σ 0-50): plain CNN vs "
                "bottleneck autoencoder vs U-Net, σ 25, 128x128 of a 256² crop")
    update_numbers("bottleneck", {"psnr": table, "clean_input_psnr": {  # None: returned exactly
                                      n: per[0.0]["psnr"] if np.isfinite(per[0.0]["psnr"]) else None
                                      for n, per in clean.items()},
                                  "noisy": E.psnr_noisy(images, sigmas), "cost": cost,
                                  "brief": {**BRIEF, "steps": args.steps}, "stamp": E.stamp()})
    for n, per in table.items():
        print(n, cost[n], {s: round(v["psnr"], 2) for s, v in per.items()}, "clean in:",
              round(clean[n][0.0]["psnr"], 2))


def sharpness(img: np.ndarray) -> float:
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(g, cv2.CV_32F)).mean())


def part_gan(args):
    out = {}
    for name, w in (("tiny-mse-ft", 0.0), ("tiny-gan-ft", args.adv_weight)):
        stem = STORE / name
        if args.retrain or not stem.with_suffix(".safetensors").exists():
            run = ROOT / "runs" / f"explain_{name}"
            if (run / "checkpoint.pt").exists():
                (run / "checkpoint.pt").unlink()  # a fresh fine-tune, not a resumed one
            t = time.time()
            m = E.gan_finetune(TRAIN, run, steps=args.gan_steps, adv_weight=w, progress=not args.quiet)
            save_model(m, stem, extra={"init": "tiny", "adv_weight": w, "steps": args.gan_steps,
                                       "seconds": round(time.time() - t)}, half=True)
        out[name] = load_model(str(stem.with_suffix(".safetensors")))
    nets = {"shipped tiny (MSE)": load_model("tiny"), f"+{args.gan_steps} steps MSE": out["tiny-mse-ft"],
            f"+{args.gan_steps} steps MSE + adversarial": out["tiny-gan-ft"]}
    images = E.test_images(TEST, 3, N_TEST)
    sigmas = [25, 50]
    table = E.psnr_table(nets, images, sigmas, ssim=True, progress=not args.quiet)
    sharp = {}
    for n, m in nets.items():
        for s in sigmas:
            r = [sharpness(E.denoise_u8(m, E.noisy_float(im, s, i), s)) / sharpness(im) for i, im in enumerate(images)]
            sharp.setdefault(n, {})[float(s)] = float(np.mean(r))
    panels = crop_panel({"tiny (MSE)": nets["shipped tiny (MSE)"], "MSE fine-tune": out["tiny-mse-ft"],
                         "GAN fine-tune": out["tiny-gan-ft"]}, images[7], 50.0, 7, (64, 64, 128))
    draw_panels(panels, FIG / "gan.png", f"adversarial fine-tune of tiny ({args.gan_steps} steps, --adv-weight "
                f"{args.adv_weight:g}) beside the same fine-tune without it, σ 50, 128x128 of a 256² crop")
    update_numbers("gan", {"scores": table, "sharpness_vs_clean": sharp, "adv_weight": args.adv_weight,
                           "steps": args.gan_steps, "stamp": E.stamp()})
    for n, per in table.items():
        print(n, {s: (round(v["psnr"], 2), round(v["ssim"], 4)) for s, v in per.items()}, sharp[n])


VIDEO_SECOND = DATA / "test" / "Kodak24" / "kodim03.png"  # the scene after part 7's cut (the same size)
VIDEO_FRAMES, VIDEO_CUT, VIDEO_SIGMA = 16, 10, 25.0  # frames, the first frame of the second scene, noise


def video_gates(net, frames: list[np.ndarray], sigma: float):
    """A recurrent model (PyTorch) through noisy BGR `frames` as the product runs it (its state:
    temporal.RecurrentState, the last uint8 output aligned with the camera, dropped at a cut): the
    outputs (uint8 BGR) and, per frame, the gate g in [0, 1] that took the previous output in
    (0 where there was none: out = own + g (previous - own), model.DenoiseUNet.forward)."""
    import torch.nn.functional as F

    from edgedenoise.temporal import RecurrentState
    from edgedenoise.train import denoise_tensor

    def rgb(a):
        return torch.from_numpy(np.ascontiguousarray(a[:, :, ::-1])).permute(2, 0, 1)[None].float() / 255.0

    seen = []
    hook = net.gate.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    state, outs, gates = RecurrentState(), [], []
    try:
        with torch.no_grad():
            for f in frames:
                prev = state.previous(f, sigma)
                seen.clear()
                y = denoise_tensor(net, rgb(f), torch.tensor([sigma / 255.0]), None if prev is None else rgb(prev))
                out = np.round(y[0].permute(1, 2, 0).numpy()[:, :, ::-1] * 255).astype(np.uint8)
                state.update(out)
                h, w = f.shape[:2]
                g = F.pixel_shuffle(seen[-1], net.config.unshuffle).clamp(0, 1)[0, 0, :h, :w].numpy()
                # the first frame of a scene: previous is the frame itself, and the fusion is off
                gates.append(np.zeros((h, w), np.float32) if prev is None else g)
                outs.append(out)
    finally:
        hook.remove()
    return outs, gates


def part_video(args):
    """7: what the shipped video model takes from the last frame: its gate on a clip with moving
    objects on a still background, then a cut to another scene."""
    from edgedenoise.clips import make_clip, noisy_clip
    from edgedenoise.denoiser import Denoiser
    from edgedenoise.frames import psnr_u8
    from edgedenoise.temporal import RecursiveBlend

    first = cv2.imread(str(IMAGE), cv2.IMREAD_COLOR)
    second = cv2.imread(str(VIDEO_SECOND), cv2.IMREAD_COLOR)
    clean = (make_clip(first, "objects", VIDEO_CUT, seed=3)
             + make_clip(second, "objects", VIDEO_FRAMES - VIDEO_CUT, seed=4))
    noisy = noisy_clip(clean, VIDEO_SIGMA, seed=7)
    tiny = Denoiser.load("tiny", backend="onnxruntime")
    own = [tiny.denoise(f, VIDEO_SIGMA) for f in noisy]
    blend = RecursiveBlend()
    blended = [blend(o, VIDEO_SIGMA) for o in own]
    outs, gates = video_gates(load_model("tiny-video").eval(), noisy, VIDEO_SIGMA)
    # where the scene moved since the last frame (the clean clip, gray, dilated by the gate's reach)
    moved = [np.zeros(clean[0].shape[:2], bool)]
    for a, b in zip(clean, clean[1:]):
        d = cv2.absdiff(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), cv2.cvtColor(b, cv2.COLOR_BGR2GRAY)) > 2
        moved.append(cv2.dilate(d.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0)
    rows = {"tiny, frame by frame": own, "tiny + blend": blended, "tiny-video": outs}
    psnr = {k: [psnr_u8(o, c) for o, c in zip(v, clean)] for k, v in rows.items()}
    still_gate = [float(g[~m].mean()) if (~m).any() else float("nan") for g, m in zip(gates, moved)]
    moving_gate = [float(g[m].mean()) if m.any() else float("nan") for g, m in zip(gates, moved)]
    plt = E._plt()
    shown = [1, 5, VIDEO_CUT - 1, VIDEO_CUT, VIDEO_CUT + 2]
    fig, axes = plt.subplots(len(shown), 4, figsize=(13.2, 2.2 * len(shown) + 0.6), squeeze=False)
    for r, t in enumerate(shown):
        cells = [(f"frame {t + 1}: noisy", noisy[t][:, :, ::-1], None),
                 (f"tiny alone {psnr['tiny, frame by frame'][t]:.2f} dB", own[t][:, :, ::-1], None),
                 ("gate: the last output's weight" if r == 0 else "gate", gates[t], "gray"),
                 (f"tiny-video {psnr['tiny-video'][t]:.2f} dB", outs[t][:, :, ::-1], None)]
        for ax, (title, im, cmap) in zip(axes[r], cells):
            ax.imshow(im, cmap=cmap, vmin=0, vmax=1 if cmap else None, interpolation="nearest")
            ax.set_title(title, fontsize=10)
            ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"tiny-video on moving objects over a still background, σ {VIDEO_SIGMA:g}, a cut to another "
                 f"scene at frame {VIDEO_CUT + 1} (gate: black 0 = its own estimate, white 1 = the last output)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(FIG / "video_gate.png", dpi=80)
    plt.close(fig)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 3.8))
    x = np.arange(1, len(clean) + 1)
    for k, v in psnr.items():
        a1.plot(x, v, marker="o", ms=3, label=k)
    a2.plot(x, still_gate, marker="o", ms=3, label="where the scene stood still")
    a2.plot(x, moving_gate, marker="o", ms=3, label="where it moved since the last frame")
    for ax, yl in ((a1, "PSNR dB"), (a2, "mean gate")):
        ax.axvline(VIDEO_CUT + 0.5, color="gray", ls=":", lw=1)
        ax.set_xlabel(f"frame (the cut before frame {VIDEO_CUT + 1})")
        ax.set_ylabel(yl)
        ax.legend(fontsize=9)
        ax.grid(alpha=0.3)
    a2.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(FIG / "video_curve.png", dpi=85)
    plt.close(fig)
    scene = slice(1, VIDEO_CUT)  # the first scene's frames after its first
    numbers = {
        "psnr": {k: [round(p, 3) for p in v] for k, v in psnr.items()},
        # (null: no such pixel in that frame: nothing moved in the first, nothing stood still at the cut)
        "gate_still": [None if np.isnan(g) else round(g, 4) for g in still_gate],
        "gate_moving": [None if np.isnan(g) else round(g, 4) for g in moving_gate],
        "first_scene_mean": {"gate_still": float(np.mean(still_gate[scene])),
                             "gate_moving": float(np.nanmean(moving_gate[scene])),
                             **{k: float(np.mean(v[scene])) for k, v in psnr.items()}},
        "clip": {"first": IMAGE.name, "second": VIDEO_SECOND.name, "frames": VIDEO_FRAMES, "cut_at": VIDEO_CUT + 1,
                 "sigma": VIDEO_SIGMA, "kind": "objects", "size": list(clean[0].shape[:2])},
        "stamp": E.stamp(),
    }
    update_numbers("video", numbers)
    print(json.dumps(numbers["first_scene_mean"], indent=1))
    print("after the cut, frames", VIDEO_CUT + 1, "..:", {k: [round(p, 2) for p in v[VIDEO_CUT:VIDEO_CUT + 3]]
                                                        for k, v in psnr.items()},
          "gate", [round(g, 3) for g in still_gate[VIDEO_CUT:VIDEO_CUT + 3]])


PARTS = {"filters": part_filters, "toy": part_toy, "biasfree": part_biasfree, "bottleneck": part_bottleneck,
         "gan": part_gan, "video": part_video}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=list(PARTS), help="parts to run (default all)")
    p.add_argument("--retrain", action="store_true", help="train the brief networks again, even when stored")
    p.add_argument("--steps", type=int, default=BRIEF["steps"], help="brief training steps (parts 2 and 4)")
    p.add_argument("--gan-steps", type=int, default=600, help="fine-tune steps of part 6")
    p.add_argument("--adv-weight", type=float, default=2e-3, help="adversarial weight of part 6")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if not IMAGE.exists() or not TRAIN.exists():
        sys.exit(f"data not found under {DATA}: set EDGEDENOISE_DATA")
    FIG.mkdir(parents=True, exist_ok=True)
    list_images(TEST)
    for name in args.only or PARTS:
        t = time.time()
        PARTS[name](args)
        print(f"part {name}: {time.time() - t:.0f} s")


if __name__ == "__main__":
    main()
