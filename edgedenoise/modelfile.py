"""Model files: safetensors weights + a JSON config (+ an ONNX export), never pickle.

A model is named by any of:
- a shipped model: `default`, `tiny`, `small`, `base` (files in edgedenoise/models/),
- a run folder written by `edgedenoise train` (its model.safetensors),
- a `.safetensors`, `.json` or `.onnx` path; the other files are found beside it by stem
  (including `<stem>.int8.onnx`, the INT8 variant `edgedenoise quantize` writes).

Resolving names needs no torch; loading weights into a network does.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .atomic import temp_beside, usual_mode, write_atomic
from .errors import ModelError
from .trainconfig import size_multiple  # torch-free, and neither model module: they must not import each other

MODELS_DIR = Path(__file__).resolve().parent / "models"
ALIASES = {"default": "small", "default-video": "small-video"}  # the names users know: the files' stems


# file endings of a model's files -> the variant they hold (longest first: ".trt.int8.onnx" before ".int8.onnx")
VARIANT_ENDINGS = {".trt.int8.onnx": "trt.int8", ".int8.onnx": "int8", ".frame.onnx": "frame", ".onnx": "",
                   ".safetensors": "", ".json": ""}


@dataclass
class ModelFiles:
    name: str
    config: dict
    weights: Path | None  # .safetensors
    onnx: Path | None
    onnx_int8: Path | None = None  # <stem>.int8.onnx, written by `edgedenoise quantize`
    onnx_trt_int8: Path | None = None  # <stem>.trt.int8.onnx, TensorRT's Q/DQ graph (`quantize --for tensorrt`)
    variant: str = ""  # the file named was a variant: "int8", "trt.int8" (TensorRT Q/DQ) or "frame" (frame-native)

    @property
    def size_multiple(self) -> int:
        return size_multiple(self.config)

    @property
    def channels(self) -> int:
        return int(self.config.get("channels", 3))

    @property
    def recurrent(self) -> bool:
        """A video model that also takes the previous denoised frame (ONNX input `previous`)."""
        return self.config.get("recurrent") is True

    @property
    def blind_gain(self) -> float:
        """The factor blind mode scales a camera's correlated noise level by for this model
        (tools/calibrate_blind.py writes it to its JSON); without one, estimate.CORRELATED_GAIN."""
        from .estimate import CORRELATED_GAIN

        g = (self.config.get("blind") or {}).get("correlated_gain")
        if g is None:
            return CORRELATED_GAIN
        if not isinstance(g, (int, float)) or not 0.1 <= g <= 10:
            raise ModelError(f"model {self.name}: blind.correlated_gain {g!r} in its JSON is not a number in 0.1-10")
        return float(g)

    @property
    def camera_psnr(self) -> float | None:
        """The model's blind PSNR (dB) on camera noise: the validation split of its training images
        through random simulated cameras, at its own blind gain (tools/calibrate_blind.py writes it to
        its JSON when the model is shipped); None where its JSON has none. What `auto` ranks the
        shipped models by (runtime/autoselect.py)."""
        b = self.config.get("blind") or {}
        g, table = b.get("correlated_gain"), b.get("psnr_random_cameras")
        if not isinstance(g, (int, float)) or not isinstance(table, dict):
            return None
        v = table.get(f"{g:g}")
        return float(v) if isinstance(v, (int, float)) else None


def known_as(name: str) -> str:
    """The name users know a shipped model by: its alias where it has one (small -> default)."""
    return next((a for a, t in ALIASES.items() if t == name), name)


def shipped_models() -> list[str]:
    return sorted(p.stem for p in MODELS_DIR.glob("*.json"))


def recurrent_variant(name: str) -> str | None:
    """The shipped recurrent model made from the shipped framewise model `name` (its files' stem plus
    "-video": tiny -> tiny-video, default -> default-video, named as users know it), or None. Such a
    model is the framewise one, untouched, with a learned fusion of its last output: what
    `--temporal auto` runs on a stream (VideoDenoiser.load, `run`). Only for a shipped name: where a
    file or folder of that name exists, it is what `resolve` takes (a model of one's own, whose config may
    well say "tiny"), and it has no shipped variant."""
    if Path(str(name)).exists():
        return None
    stem = ALIASES.get(str(name), str(name))
    shipped = shipped_models()
    if stem not in shipped or f"{stem}-video" not in shipped:
        return None
    if json.loads((MODELS_DIR / f"{stem}.json").read_text()).get("recurrent") or \
            not json.loads((MODELS_DIR / f"{stem}-video.json").read_text()).get("recurrent"):
        return None
    return known_as(f"{stem}-video")


def resolve(spec: str | Path) -> ModelFiles:
    """Find the files of a model (no torch needed). Raises ModelError with what to do."""
    s = str(spec)
    name = ALIASES.get(s, s)
    variant = ""
    if (MODELS_DIR / f"{name}.json").exists() and not Path(s).exists():
        stem = MODELS_DIR / name
    else:
        p = Path(s)
        ending = next((e for e in VARIANT_ENDINGS if p.name.endswith(e)), None)
        if p.is_dir():
            stem = p / "model"
        elif ending is not None:  # the model's stem: "m.int8.onnx" and "m.frame.onnx" are files of model "m"
            stem = p.with_name(p.name[: -len(ending)])
            variant = VARIANT_ENDINGS[ending]
        else:
            shipped = shipped_models()
            names = [a for a, t in ALIASES.items() if t in shipped] + shipped
            raise ModelError(
                f"model {s!r} not found: give a shipped model ({', '.join(names)}), "
                "a run folder, or a .safetensors/.onnx file"
            )
        if not p.exists() and not any(_beside(stem, x).exists() for x in (".json", ".safetensors", ".onnx")):
            raise ModelError(f"model file not found: {p}")
    cfg_path, weights, onnx = (_beside(stem, x) for x in (".json", ".safetensors", ".onnx"))
    if cfg_path.exists():
        try:
            config = json.loads(cfg_path.read_text())
        except (OSError, ValueError) as e:
            raise ModelError(f"model config {cfg_path} is not valid JSON: {e}") from None
    elif onnx.exists() or variant:
        config = onnx_config(onnx if onnx.exists() else Path(s))
    else:
        raise ModelError(f"model config {cfg_path} is missing (it is written beside the weights)")
    check_config(config, cfg_path if cfg_path.exists() else onnx)
    return ModelFiles(
        name=str(config.get("name", stem.name)),
        config=config,
        weights=weights if weights.exists() else None,
        onnx=onnx if onnx.exists() else None,
        onnx_int8=int8 if (int8 := _beside(stem, ".int8.onnx")).exists() else None,
        onnx_trt_int8=trt if (trt := _beside(stem, ".trt.int8.onnx")).exists() else None,
        variant=variant,
    )


def _beside(stem: Path, ending: str) -> Path:
    """stem + ending (not Path.with_suffix, which would cut a stem like "my.model" at its dot)."""
    return stem.with_name(stem.name + ending)


def _ints(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)


MAX_PARAMS = 100_000_000  # 400 MB of float32 weights


def check_config(config, where: Path) -> None:
    """ModelError unless `config` describes a buildable edgedenoise model with sane values (a config
    is user input: valid JSON with the wrong types, or a width of a million, must not reach torch)."""
    def bad(what: str) -> ModelError:
        return ModelError(f"model config {where}: {what}")

    if not isinstance(config, dict):
        raise bad(f"expected a JSON object, found {type(config).__name__}")
    if "widths" not in config:
        raise bad("has no 'widths': not an edgedenoise model config")
    widths, depths = config.get("widths"), config.get("depths", [])
    if not _ints(widths) or not 1 <= len(widths) <= 8 or not all(1 <= w <= 4096 for w in widths):
        raise bad(f"'widths' must be a list of 1-8 integers in 1..4096, not {widths!r}"[:300])
    if not _ints(depths) or len(depths) != len(widths) or not all(0 <= d <= 64 for d in depths):
        raise bad(f"'depths' must be a list of {len(widths)} integers in 0..64 (one per width), not {depths!r}"[:300])
    # about the weights these widths and depths make (3x3 convolutions dominate): a config is refused
    # before it allocates gigabytes (the shipped base has 5 M parameters)
    params = sum(9 * w * w * (2 * d + 1) + 8 * w * w for w, d in zip(widths, depths))
    if params > MAX_PARAMS:
        raise bad(f"widths {widths} and depths {depths} make about {params / 1e6:.0f} M parameters, more than "
                  f"{MAX_PARAMS // 1_000_000} M: not an edge model (a damaged or hostile config?)"[:300])
    if config.get("channels", 3) not in (1, 3) or isinstance(config.get("channels", 3), bool):
        raise bad(f"'channels' must be 1 or 3, not {config.get('channels')!r}")
    if config.get("unshuffle", 2) not in (1, 2, 4) or isinstance(config.get("unshuffle", 2), bool):
        raise bad(f"'unshuffle' must be 1, 2 or 4, not {config.get('unshuffle')!r}")
    if not isinstance(config.get("name", ""), str):
        raise bad(f"'name' must be a string, not {config.get('name')!r}")
    if not isinstance(config.get("extra", {}), dict):
        raise bad("'extra' must be a JSON object")
    if not isinstance(config.get("recurrent", False), bool):
        raise bad(f"'recurrent' must be true or false, not {config.get('recurrent')!r}")


def onnx_config(path: Path) -> dict:
    """The architecture config stored in an exported ONNX file's metadata."""
    try:
        import onnx
    except ImportError:
        raise ModelError(f"{path}: no JSON config beside it, and the onnx package is not installed to read its "
                         "metadata") from None
    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends
        raise ModelError(f"cannot read ONNX model {path}: {e.__class__.__name__}: file is corrupt or "
                         "truncated") from None
    props = {p.key: p.value for p in m.metadata_props}
    if "config" not in props:
        raise ModelError(f"{path} has no edgedenoise 'config' metadata: was it exported by edgedenoise export?")
    try:
        return json.loads(props["config"])
    except ValueError as e:
        raise ModelError(f"{path}: its 'config' metadata is not valid JSON: {e}") from None


def file_sha256(path: Path, n: int = 12) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def save_model(model, stem: str | Path, extra: dict | None = None, half: bool = False) -> tuple[Path, Path]:
    """Write <stem>.safetensors and <stem>.json. Returns both paths. half: store the weights
    as float16 (as tools/ship_model.py ships models; load_model casts them back to float32)."""
    from safetensors.torch import save_file

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    cfg = model.config.to_dict()
    if extra:
        cfg["extra"] = {**cfg.get("extra", {}), **extra}
    state = {k: (v.detach().half() if half else v.detach().float()).contiguous().cpu()
             for k, v in model.state_dict().items()}
    weights, config = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    tmp = temp_beside(weights)
    try:
        save_file(state, str(tmp), metadata={"config": json.dumps(cfg)})
        usual_mode(tmp)  # save_file writes a new file of mode 0600
        tmp.replace(weights)
    finally:
        tmp.unlink(missing_ok=True)
    write_atomic(config, (json.dumps(cfg, indent=2) + "\n").encode(), what="model config")
    return weights, config


def load_model(spec: str | Path):
    """Build the network of a model and load its weights (torch needed)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .model import build_model

    files = resolve(spec)
    if files.weights is None:
        raise ModelError(f"model {spec}: no .safetensors weights beside its config (the torch backend needs them)")
    try:
        model = build_model(files.config)
    except (TypeError, ValueError) as e:
        raise ModelError(f"model {spec}: config does not describe an edgedenoise model: {e}") from None
    try:
        state = load_file(str(files.weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"cannot read weights {files.weights}: {e}") from None
    # shipped models may store float16 (half the file); the network computes in float32
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise ModelError(f"weights {files.weights} do not match config {files.config.get('name')}: {first}") from None
    model.eval()
    return model
