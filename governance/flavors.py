"""What kind of model an artifact is, and whether loading it would execute code (issue 9).

A plain engine (no Django): ``detect(path)`` reads file headers, zip member names, the ``MLmodel``
YAML and pickle *opcodes*; it never unpickles or imports anything from the artifact, so it is safe
in the web and worker processes. A model whose loading executes code (pickle, cloudpickle, a custom
pyfunc) is only ever loaded inside a job's subprocess.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import pickletools
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STEWARD_TABULAR = "steward_tabular"
PYTORCH_STATE_DICT = "pytorch_state_dict"
MLFLOW_MODEL = "mlflow_model"
ONNX = "onnx"
UNKNOWN = "unknown"

# runners.training's ARTIFACT_FORMAT starts so (governance may not import runners; a test detects
# a real training artifact, so the two cannot drift apart unnoticed).
STEWARD_FORMAT_PREFIX = "steward.tabular_mlp/"
STEWARD_KEYS = {"format", "architecture", "state_dict", "preprocessing", "signature"}

# What torch.load(weights_only=True) itself allows a state dict to reference: rebuilding tensors,
# storages and ordered dicts. Any other GLOBAL in a pickle means loading it runs that code.
_SAFE_GLOBAL_PREFIXES = (
    "torch._utils._rebuild_",
    "torch._tensor._rebuild_",
    "torch.serialization._get_layout",
    "collections.OrderedDict",
    "torch.device",
    "builtins.set",
    "builtins.frozenset",
)
_SAFE_GLOBAL_SUFFIXES = ("Storage",)  # torch.FloatStorage, torch.LongStorage...

# The longest pickle read for opcodes (the tensor data lives outside data.pkl in torch's zip).
_MAX_PICKLE_BYTES = 64 * 1024 * 1024

# MLflow flavors whose saved form is data a loader parses without running the artifact's code.
_DATA_FLAVORS = {"onnx", "xgboost", "lightgbm", "catboost", "paddle", "spark", "h2o"}


@dataclass(frozen=True)
class Detected:
    """``flavor`` (one of the constants above), ``executes_code`` (loading it runs code from the
    artifact) and ``details`` (JSON-able: what detection read)."""

    flavor: str
    executes_code: bool
    details: dict[str, Any] = field(default_factory=dict)


def detect(path: Path) -> Detected:
    """The flavor of the file or directory at ``path``; never raises for unreadable content
    (that is ``unknown``, executes_code false unless a pickle was seen)."""
    path = Path(path)
    if path.is_dir():
        if (path / "MLmodel").is_file():
            return _mlflow_model(path)
        return _plain_directory(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        return Detected(UNKNOWN, False, {"error": str(exc)[:200]})
    if head.startswith(b"PK\x03\x04") and zipfile.is_zipfile(path):
        return _torch_zip(path)
    if head[:1] == b"\x80":
        return _plain_pickle(path)
    if path.suffix.lower() == ".onnx" or _looks_like_onnx(head):
        return Detected(ONNX, False, {"format": "onnx protobuf"})
    return Detected(UNKNOWN, False, {})


def _looks_like_onnx(head: bytes) -> bool:
    # ModelProto starts with field 1 (ir_version, varint: tag 0x08, versions 1..15 so far) and then
    # opset_import (8, 0x42), producer_name (2, 0x12) or graph (7, 0x3a).
    return (
        len(head) >= 3
        and head[0] == 0x08
        and 1 <= head[1] <= 32
        and head[2] in (0x12, 0x1A, 0x22, 0x2A, 0x3A, 0x42)
    )


def pickle_globals(data: bytes) -> tuple[list[str], list[str]]:
    """(GLOBAL references ``module.name``, short unicode strings) in the pickle ``data``, read
    from its opcodes without unpickling."""
    found: list[str] = []
    strings: list[str] = []
    recent: list[str] = []
    try:
        for opcode, arg, _pos in pickletools.genops(data):
            if opcode.name == "GLOBAL" and isinstance(arg, str):
                found.append(arg.replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(recent) >= 2:
                found.append(f"{recent[-2]}.{recent[-1]}")
            elif isinstance(arg, str) and opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                recent.append(arg)
                if len(strings) < 10_000:
                    strings.append(arg)
            if opcode.name == "STOP":
                break
    except Exception:
        found.append("<unreadable pickle>")
    return sorted(set(found)), strings


def _is_safe_global(name: str) -> bool:
    return name.startswith(_SAFE_GLOBAL_PREFIXES) or (
        name.startswith("torch.") and name.endswith(_SAFE_GLOBAL_SUFFIXES)
    )


def _classify_pickle(data: bytes, details: dict[str, Any]) -> Detected:
    found, strings = pickle_globals(data)
    unsafe = [name for name in found if not _is_safe_global(name)]
    if unsafe:
        return Detected(UNKNOWN, True, {**details, "globals": unsafe[:20]})
    present = set(strings)
    steward = next((s for s in strings if s.startswith(STEWARD_FORMAT_PREFIX)), None)
    if steward and present >= STEWARD_KEYS:
        signature = steward_signature(data)
        extra = {"signature": signature} if signature is not None else {}
        return Detected(STEWARD_TABULAR, False, {**details, "format": steward, **extra})
    return Detected(PYTORCH_STATE_DICT, False, details)


class _Inert:
    """Stands in for a torch global (a tensor rebuilder, a storage type, a device) while the
    plain fields of a Steward artifact are read: built from anything, it does nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _PlainFieldsUnpickler(pickle.Unpickler):
    """Reads a state-dict pickle whose globals ``_classify_pickle`` found safe, without torch:
    every torch global becomes ``_Inert`` and every tensor storage None, so the containers,
    strings and numbers around them come out as they are and nothing from the artifact runs
    (``find_class`` never imports what a pickle names)."""

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        if full == "collections.OrderedDict":
            return collections.OrderedDict
        if full in ("builtins.set", "builtins.frozenset"):
            return set if name == "set" else frozenset
        if _is_safe_global(full):
            return _Inert
        raise pickle.UnpicklingError(f"{full} is not read")

    def persistent_load(self, pid: Any) -> None:
        return None


def steward_signature(data: bytes) -> dict[str, Any] | None:
    """The ``signature`` (``{"task", "target", "features", "categorical"}``) of a Steward tabular
    artifact's pickle ``data`` (``runners.training``), read without torch and without running
    anything (``_PlainFieldsUnpickler``); None when it has none or it is not plain JSON."""
    try:
        payload = _PlainFieldsUnpickler(io.BytesIO(data)).load()
    except Exception:  # a torn or odd pickle: detection still stands, the signature is unknown
        return None
    signature = payload.get("signature") if isinstance(payload, dict) else None
    if not isinstance(signature, dict):
        return None
    try:
        return json.loads(json.dumps(signature, allow_nan=False))
    except (TypeError, ValueError):
        return None


# MLflow column types (mlflow.types.DataType) a drift check treats as categories.
_CATEGORICAL_MLFLOW_TYPES = {"string", "boolean", "binary"}


def signature_of(detected: Detected) -> dict[str, Any]:
    """Steward's signature of a detected model (``{"features", "categorical"}``, plus ``task``
    and ``target`` where the artifact says them): a Steward tabular artifact's own, or the column
    names and types of an MLflow model's input schema (``MLmodel``'s ``signature.inputs``, a JSON
    list of ``{"name", "type"}``); ``{}`` when neither says (a tensor-based MLflow signature, no
    signature, another flavor). Drift checks and online prediction read features from it."""
    if detected.flavor == STEWARD_TABULAR:
        return dict(detected.details.get("signature") or {})
    if detected.flavor != MLFLOW_MODEL:
        return {}
    raw = (detected.details.get("signature") or {}).get("inputs")
    try:
        columns = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    if not isinstance(columns, list):
        return {}
    named = [c for c in columns if isinstance(c, dict) and isinstance(c.get("name"), str) and c["name"]]
    if not named or len(named) != len(columns):
        return {}  # a tensor spec (no names) describes no columns
    return {
        "features": [c["name"] for c in named],
        "categorical": [c["name"] for c in named if c.get("type") in _CATEGORICAL_MLFLOW_TYPES],
    }


def _torch_zip(path: Path) -> Detected:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pickles = [name for name in names if name.endswith("/data.pkl") or name == "data.pkl"]
            if not pickles:
                return Detected(UNKNOWN, False, {"format": "zip", "members": names[:20]})
            info = archive.getinfo(pickles[0])
            if info.file_size > _MAX_PICKLE_BYTES:
                return Detected(
                    UNKNOWN, True, {"format": "torch zip", "reason": "data.pkl too large to inspect"}
                )
            data = archive.read(pickles[0])
    except (OSError, zipfile.BadZipFile) as exc:
        return Detected(UNKNOWN, False, {"error": str(exc)[:200]})
    return _classify_pickle(data, {"format": "torch zip"})


def _plain_pickle(path: Path) -> Detected:
    with path.open("rb") as handle:
        data = handle.read(_MAX_PICKLE_BYTES)
    detected = _classify_pickle(data, {"format": "pickle"})
    if detected.flavor == PYTORCH_STATE_DICT and not detected.details.get("globals"):
        # A pickle of plain containers, nothing torch about it: not a model Steward knows.
        found, _ = pickle_globals(data)
        if not any(name.startswith("torch.") for name in found):
            return Detected(UNKNOWN, False, {"format": "pickle"})
    return detected


def _flavor_executes(name: str, conf: dict[str, Any]) -> bool:
    """Whether loading MLflow flavor ``name`` (its MLmodel section ``conf``) runs artifact code."""
    if name == "python_function":
        if conf.get("python_model") or conf.get("cloudpickle_version") or conf.get("code"):
            return True
        loader = str(conf.get("loader_module") or "")
        # A built-in loader defers to its flavor's section; a custom loader module is code.
        return not loader.startswith("mlflow.")
    if name == "sklearn":
        return conf.get("serialization_format", "cloudpickle") in ("pickle", "cloudpickle")
    if name == "pytorch":
        # mlflow.pytorch saves the whole module with torch.save (pickle) and loads it unpickling.
        return True
    if name in _DATA_FLAVORS:
        return bool(conf.get("code")) or conf.get("model_format") in ("pickle", "cloudpickle")
    if name == "transformers":
        return bool(conf.get("code"))
    # A flavor we do not know: assume its loader unpickles.
    return True


def _mlflow_model(path: Path) -> Detected:
    try:
        spec = yaml.safe_load((path / "MLmodel").read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return Detected(MLFLOW_MODEL, True, {"error": f"MLmodel unreadable: {str(exc)[:200]}"})
    flavors = spec.get("flavors") if isinstance(spec, dict) else None
    if not isinstance(flavors, dict):
        flavors = {}
    executes = {
        name: _flavor_executes(name, conf if isinstance(conf, dict) else {}) for name, conf in flavors.items()
    }
    pyfunc = flavors.get("python_function") if isinstance(flavors.get("python_function"), dict) else {}
    # Loading through pyfunc runs the pyfunc loader (and the flavor it names); other flavors only
    # matter when they are what pyfunc loads, but any flavor that would run code is reported.
    details: dict[str, Any] = {
        "flavors": sorted(flavors),
        "executes_code_by_flavor": executes,
        "loader_module": (pyfunc or {}).get("loader_module"),
        "signature": spec.get("signature") if isinstance(spec, dict) else None,
        "mlflow_version": spec.get("mlflow_version") if isinstance(spec, dict) else None,
    }
    sk = flavors.get("sklearn")
    if isinstance(sk, dict):
        details["serialization_format"] = sk.get("serialization_format")
    return Detected(MLFLOW_MODEL, any(executes.values()) or not flavors, details)


# A directory without MLmodel: at most this many files are looked at one by one.
_MAX_DIRECTORY_FILES = 50


def _plain_directory(path: Path) -> Detected:
    """A folder of files: one file is that file's flavor; several are ``unknown``, executing
    code if any of them would (or if there are too many to look at)."""
    files = sorted(item for item in path.rglob("*") if item.is_file() and not item.is_symlink())
    names = [item.relative_to(path).as_posix() for item in files]
    if len(files) > _MAX_DIRECTORY_FILES:
        return Detected(UNKNOWN, True, {"files": names[:20], "reason": "too many files to inspect"})
    found = {name: detect(item) for name, item in zip(names, files, strict=True)}
    executes = sorted(name for name, detected in found.items() if detected.executes_code)
    if len(found) == 1:
        ((name, only),) = found.items()
        return Detected(only.flavor, only.executes_code, {**only.details, "file": name})
    return Detected(UNKNOWN, bool(executes), {"files": names[:20], "files_executing_code": executes[:20]})
