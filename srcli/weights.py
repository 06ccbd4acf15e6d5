"""Where model files come from: the shipped models by name, the folders a weights name is looked
up in, and ``hf://`` names on the Hugging Face Hub.

A name (``--model clean``, ``--weights srcli-x2-4-c32``) is looked up in this order, first hit wins:

1. the installed package's own copy, ``srcli/_weights/`` (a built wheel carries ``weights/`` there:
   see ``[tool.setuptools.package-dir]`` in pyproject.toml);
2. the ``weights/`` folder of the source checkout srcli is imported from (editable installs,
   ``PYTHONPATH``);
3. ``./weights`` in the current directory;
4. the user folder: ``$SRCLI_WEIGHTS_DIR``, else ``~/.cache/srcli/weights``.

A name that is found nowhere is an error that lists every folder looked in.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import socket
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

from .checkpoint import CheckpointError

# The shipped models by name.  "real" is the real-world degradation model (JPEG, noise, blur); its
# file ships once it is trained, until then naming it says where it was looked for.
MODELS: dict[str, str] = {
    "clean": "srcli-x2-4-c32.safetensors",
    "real": "srcli-real-x2-4-c32.safetensors",
}
DEFAULT_MODEL = "clean"
USER_DIR_ENV = "SRCLI_WEIGHTS_DIR"
PACKAGE_DATA = "_weights"  # the folder inside the srcli package a wheel carries the weights in
HF_PREFIX = "hf://"
HUB_CONNECT_TIMEOUT = 2.0  # seconds: the reachability probe before any download is tried


def user_dir() -> Path:
    """``$SRCLI_WEIGHTS_DIR`` or ``~/.cache/srcli/weights``."""
    return Path(os.environ.get(USER_DIR_ENV) or Path.home() / ".cache" / "srcli" / "weights").expanduser()


def search_dirs() -> list[Path]:
    """The folders a weights name is looked up in, in order (see the module docstring), without
    repeats.  Folders that do not exist are listed too: an error names every place looked."""
    package = importlib.resources.files("srcli") / PACKAGE_DATA
    dirs = [Path(str(package)), Path(__file__).resolve().parent.parent / "weights", Path.cwd() / "weights", user_dir()]
    unique: dict[Path, None] = {}
    for folder in dirs:
        unique.setdefault(folder.resolve() if folder.exists() else folder, None)
    return list(unique)


def find_named(name: str, what: Optional[str] = None) -> Path:
    """The first ``NAME`` or ``NAME.safetensors`` in ``search_dirs()``; CheckpointError naming
    every folder looked in otherwise."""
    filenames = [name] if name.endswith(".safetensors") else [name, f"{name}.safetensors"]
    dirs = search_dirs()
    for folder in dirs:
        for filename in filenames:
            if (folder / filename).is_file():
                return folder / filename
    found = sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.safetensors")})
    available = f"; found there: {', '.join(found)}" if found else ""
    raise CheckpointError(
        f"{what or name}: no such weights file; looked in {', '.join(str(d) for d in dirs)} "
        f"(set {USER_DIR_ENV} to add a folder){available}"
    )


def resolve_model(name: str) -> Path:
    """The file of a shipped model (``MODELS``)."""
    if name not in MODELS:
        raise CheckpointError(f"unknown model {name!r} (choose {', '.join(MODELS)}; --weights takes files)")
    return find_named(MODELS[name], f"model {name!r} ({MODELS[name]})")


def resolve_weights(spec: Optional[str] = None, model: Optional[str] = None) -> Path:
    """The checkpoint file of ``spec`` (a path, a name looked up as ``find_named`` does, or
    ``hf://OWNER/REPO/FILE[@REVISION]``) or of the shipped ``model``; neither: the default model."""
    # An empty value (--weights "" from an unset shell variable) is a mistake, not "the default".
    if spec is not None and not spec.strip():
        raise CheckpointError("--weights is empty: give a checkpoint file or name (leave the option out for the default model)")
    if model is not None and not model.strip():
        raise CheckpointError(f"--model is empty: choose {', '.join(MODELS)} (leave the option out for the default, {DEFAULT_MODEL})")
    if spec is not None and model is not None:
        raise CheckpointError("give a model name or a weights file, not both")
    if spec is None:
        return resolve_model(model or DEFAULT_MODEL)
    if spec.startswith(HF_PREFIX):
        return fetch_hub(spec)
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.parent != Path(".") or path.is_dir():  # a path, not a name: no folder search
        raise CheckpointError(f"{spec}: no such weights file")
    return find_named(spec)


def parse_hub_name(spec: str) -> tuple[str, str, Optional[str]]:
    """``hf://OWNER/REPO/FILE[@REVISION]`` -> (repo id, file in the repo, revision or None)."""
    body = spec[len(HF_PREFIX) :]
    revision = None
    if "@" in body:
        body, revision = body.rsplit("@", 1)
    parts = body.split("/")
    if len(parts) < 3 or not all(parts) or revision == "":
        raise CheckpointError(f"{spec}: expected hf://OWNER/REPO/FILE or hf://OWNER/REPO/FILE@REVISION")
    return "/".join(parts[:2]), "/".join(parts[2:]), revision


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (1/true/yes/on)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _hub_reachable(endpoint: str) -> bool:
    """One TCP connection to the Hub's host: a machine without network answers in well under a
    second here, where the hub's own client retries for about 20 s."""
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=HUB_CONNECT_TIMEOUT):
            return True
    except OSError:
        return False


def fetch_hub(spec: str) -> Path:
    """An ``hf://`` file: from huggingface_hub's local cache when it is there, else downloaded
    (cached for next time).  Offline (``HF_HUB_OFFLINE=1`` or no connection to the Hub) and not
    cached: a one-line CheckpointError at once."""
    repo_id, filename, revision = parse_hub_name(spec)
    from huggingface_hub import constants, hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, revision=revision, local_files_only=True))
    except Exception:  # not in the cache (the hub raises several types for that)
        pass
    cache = getattr(constants, "HF_HUB_CACHE", None) or "the huggingface_hub cache"
    if _hub_offline():
        raise CheckpointError(f"{spec}: not in {cache} and HF_HUB_OFFLINE is set; pass a local file or a --model name")
    endpoint = os.environ.get("HF_ENDPOINT") or getattr(constants, "ENDPOINT", None) or "https://huggingface.co"
    if not _hub_reachable(endpoint):
        raise CheckpointError(f"{spec}: not in {cache} and {endpoint} cannot be reached (offline?); pass a local file or a --model name")
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # its retry warnings would repeat what the one error line says
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, revision=revision))
    except Exception as exc:  # the hub raises many types; all mean "could not get it"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{spec}: could not download from the Hugging Face Hub ({reason})") from None
    finally:
        hub_log.setLevel(level)
