"""Registering real model files and directories: flavor, executes_code, safe archives (issue 9)."""

import hashlib
import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import pytest
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from governance import flavors
from governance.artifacts import open_version_file, version_files
from governance.models import ModelVersion
from tests.governance.test_registry_lifecycle import upload_version

torch = pytest.importorskip("torch")


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _tar_gz(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for item in sorted(directory.rglob("*")):
            tar.add(item, arcname=item.relative_to(directory).as_posix(), recursive=False)
    return buffer.getvalue()


def _registered(response) -> dict:
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_torch_state_dict_is_detected_without_running_code(client_for, scientist, registered_model):
    state = torch.nn.Linear(3, 1).state_dict()

    body = _registered(
        upload_version(client_for(scientist), registered_model, _torch_bytes(state), "linear.pt")
    )

    assert (body["flavor"], body["executes_code"]) == ("pytorch_state_dict", False)
    assert body["flavor_details"] == {"format": "torch zip"}


def test_a_whole_pickled_torch_module_executes_code(client_for, scientist, registered_model):
    body = _registered(
        upload_version(
            client_for(scientist), registered_model, _torch_bytes(torch.nn.Linear(3, 1)), "module.pt"
        )
    )

    assert (body["flavor"], body["executes_code"]) == ("unknown", True)
    assert "torch.nn.modules.linear.Linear" in body["flavor_details"]["globals"]


def test_stewards_own_training_artifact_is_steward_tabular(
    client_for, scientist, registered_model, bike_training_result
):
    body = _registered(
        upload_version(client_for(scientist), registered_model, bike_training_result.artifact, "model.pt")
    )

    assert (body["flavor"], body["executes_code"]) == ("steward_tabular", False)
    assert body["flavor_details"]["format"] == "steward.tabular_mlp/1"
    # Its input schema is read from the artifact (without torch, nothing run), as training gave it.
    assert body["signature"] == bike_training_result.signature
    assert body["signature"]["target"] == "cnt"


def test_a_steward_artifact_naming_an_unsafe_global_gives_no_signature():
    """The signature reader refuses any global that is not a tensor rebuilder: a pickle naming
    os.system is read as no signature, and os.system is never called."""
    evil = pickle.dumps({"signature": {"target": "x"}, "run": os.system})  # GLOBAL posix.system

    assert flavors.steward_signature(evil) is None
    assert flavors.steward_signature(b"not a pickle") is None


def test_an_mlflow_sklearn_model_directory_uploaded_as_an_archive(
    client_for, scientist, registered_model, tmp_path
):
    mlflow_sklearn = pytest.importorskip("mlflow.sklearn")
    from sklearn.linear_model import LinearRegression

    model_dir = tmp_path / "sk"
    model = LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0])
    # Cloudpickle, stated: MLflow 3.17 defaults to skops, which needs a package not installed here.
    mlflow_sklearn.save_model(model, str(model_dir), serialization_format="cloudpickle")

    body = _registered(
        upload_version(client_for(scientist), registered_model, _tar_gz(model_dir), "model.tar.gz")
    )

    assert (body["flavor"], body["executes_code"], body["is_directory"]) == ("mlflow_model", True, True)
    details = body["flavor_details"]
    assert details["flavors"] == ["python_function", "sklearn"]
    assert details["serialization_format"] == "cloudpickle"
    assert details["loader_module"] == "mlflow.sklearn"
    version = ModelVersion.objects.get(pk=body["id"])
    files = dict(version_files(version))
    assert {"MLmodel", "model.pkl"} <= set(files)
    manifest = sorted(
        (item.relative_to(model_dir).as_posix(), hashlib.sha256(item.read_bytes()).hexdigest())
        for item in model_dir.rglob("*")
        if item.is_file()
    )
    expected = hashlib.sha256("".join(f"{rel}\0{sha}\n" for rel, sha in manifest).encode()).hexdigest()
    assert body["sha256"] == expected


def test_an_mlflow_models_column_signature_becomes_its_features(
    client_for, scientist, registered_model, tmp_path, bike_frame
):
    """The input schema an MLflow model declares names its features (string columns are
    categorical), so a drift check of a version logged by users' code knows what to compare."""
    mlflow_sklearn = pytest.importorskip("mlflow.sklearn")
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    rows = bike_frame[["temp", "hum", "hr"]].head(50).assign(weekday_name="mon")
    model = LinearRegression().fit(rows[["temp", "hum", "hr"]], bike_frame["cnt"].head(50))
    signature = infer_signature(rows, model.predict(rows[["temp", "hum", "hr"]]))
    mlflow_sklearn.save_model(
        model, str(tmp_path / "sk"), serialization_format="cloudpickle", signature=signature
    )

    body = _registered(
        upload_version(client_for(scientist), registered_model, _tar_gz(tmp_path / "sk"), "model.tar.gz")
    )

    assert body["signature"] == {
        "features": ["temp", "hum", "hr", "weekday_name"],
        "categorical": ["weekday_name"],
    }


def test_a_custom_pyfunc_executes_code(tmp_path):
    pyfunc = pytest.importorskip("mlflow.pyfunc")

    class Doubler(pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input * 2

    pyfunc.save_model(str(tmp_path / "custom"), python_model=Doubler())

    detected = flavors.detect(tmp_path / "custom")

    assert (detected.flavor, detected.executes_code) == ("mlflow_model", True)
    assert detected.details["loader_module"] == "mlflow.pyfunc.model"


def test_an_onnx_mlflow_model_does_not_execute_code(tmp_path):
    # Written by hand: the onnx package (what mlflow.onnx needs) is not installed.
    (tmp_path / "MLmodel").write_text(
        "flavors:\n"
        "  onnx:\n    onnx_version: 1.16.0\n    data: model.onnx\n    providers: [CPUExecutionProvider]\n"
        "  python_function:\n    loader_module: mlflow.onnx\n    data: model.onnx\n"
    )
    (tmp_path / "model.onnx").write_bytes(b"\x08\x08\x12\x07pytorch")

    detected = flavors.detect(tmp_path)

    assert (detected.flavor, detected.executes_code) == ("mlflow_model", False)


def _onnx_header() -> bytes:
    # A ModelProto's first fields, hand-built (the onnx package is not installed): ir_version 8
    # (field 1, varint), producer_name "pytorch" (field 2), then a graph (field 7) with a name.
    graph = b"\x12\x04main"
    return b"\x08\x08" + b"\x12\x07pytorch" + b"\x3a" + bytes([len(graph)]) + graph


@pytest.mark.parametrize("name", ["model.onnx", "model.bin"])
def test_an_onnx_file_is_detected_by_its_header_or_name(client_for, scientist, registered_model, name):
    body = _registered(upload_version(client_for(scientist), registered_model, _onnx_header(), name))

    assert (body["flavor"], body["executes_code"]) == ("onnx", False)


def test_a_plain_pickle_of_code_executes_code(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94.")

    detected = flavors.detect(path)

    assert (detected.flavor, detected.executes_code) == ("unknown", True)
    assert detected.details["globals"] == ["os.system"]


def _tar_with(member: tarfile.TarInfo, data: bytes = b"x") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return buffer.getvalue()


def _link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


@pytest.mark.parametrize(
    ("archive", "name", "message"),
    [
        (
            _tar_with(tarfile.TarInfo("../escape.txt")),
            "m.tar",
            "archive member '../escape.txt' leaves the archive's folder (..)",
        ),
        (
            _tar_with(tarfile.TarInfo("/etc/cron.d/x")),
            "m.tar",
            "archive member '/etc/cron.d/x' has an absolute path",
        ),
        (
            _tar_with(_link("model.pkl", "/etc/passwd")),
            "m.tar",
            "archive member 'model.pkl' is a link; links are refused",
        ),
    ],
)
def test_an_unsafe_tar_is_refused_and_nothing_is_written(
    client_for, scientist, registered_model, tmp_path, archive, name, message
):
    response = upload_version(client_for(scientist), registered_model, archive, name)

    assert (response.status_code, response.json()) == (400, {"artifact": [message]})
    assert not ModelVersion.objects.exists()
    assert not (tmp_path / "escape.txt").exists()


def test_a_zip_with_a_dotdot_member_is_refused(client_for, scientist, registered_model):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("MLmodel", "flavors: {}\n")
        archive.writestr("../../evil.py", "print('pwned')")

    response = upload_version(client_for(scientist), registered_model, buffer.getvalue(), "model.zip")

    assert response.json() == {
        "artifact": ["archive member '../../evil.py' leaves the archive's folder (..)"]
    }
    assert not ModelVersion.objects.exists()


def test_an_upload_over_the_size_limit_is_refused(client_for, scientist, registered_model, settings):
    settings.STEWARD_MAX_MODEL_BYTES = 10

    response = upload_version(client_for(scientist), registered_model, b"x" * 11, "big.bin")

    assert response.json() == {"artifact": ["the upload is larger than the limit of 10 bytes"]}


def test_a_version_from_a_source_folder_inside_the_import_roots(
    client_for, scientist, registered_model, settings, tmp_path
):
    settings.STEWARD_IMPORT_ROOTS = [tmp_path.resolve()]
    (tmp_path / "exported").mkdir()
    (tmp_path / "exported" / "weights.pt").write_bytes(_torch_bytes({"w": torch.zeros(2)}))
    client = client_for(scientist)

    inside = client.post(
        "/api/model-versions/", {"model": registered_model.pk, "source": "exported"}, format="json"
    )
    outside = client.post(
        "/api/model-versions/", {"model": registered_model.pk, "source": "/etc"}, format="json"
    )
    unknown_scheme = client.post(
        "/api/model-versions/", {"model": registered_model.pk, "source": "s3://bucket/model"}, format="json"
    )

    body = _registered(inside)
    assert (body["is_directory"], body["source"], body["flavor"]) == (True, "exported", "pytorch_state_dict")
    assert (body["executes_code"], body["flavor_details"]["file"]) == (False, "weights.pt")
    assert outside.json() == {"source": ["'/etc' is not a file or folder under the server's import folders"]}
    assert unknown_scheme.status_code == 400
    version = ModelVersion.objects.get(pk=body["id"])
    with open_version_file(version, "weights.pt") as handle:
        assert flavors.detect(Path(handle.name)).flavor == "pytorch_state_dict"
    with pytest.raises(ValidationError):
        open_version_file(version, "../../../etc/passwd")
    with pytest.raises(ObjectDoesNotExist):
        open_version_file(version, "missing.pt")


def test_exactly_one_of_artifact_or_source(client_for, scientist, registered_model):
    client = client_for(scientist)

    neither = client.post("/api/model-versions/", {"model": registered_model.pk}, format="json")
    both = client.post(
        "/api/model-versions/",
        {"model": registered_model.pk, "source": "x", "artifact": SimpleUploadedFile("a.bin", b"1")},
        format="multipart",
    )

    message = ["send exactly one of artifact (an upload) or source (a server path or URI)"]
    assert neither.json() == {"non_field_errors": message}
    assert both.json() == {"non_field_errors": message}


def test_a_folder_with_one_pickle_of_code_among_its_files_executes_code(tmp_path):
    (tmp_path / "weights.pt").write_bytes(_torch_bytes({"w": torch.zeros(2)}))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "model.pkl").write_bytes(
        b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94."
    )

    detected = flavors.detect(tmp_path)

    assert (detected.flavor, detected.executes_code) == ("unknown", True)
    assert detected.details["files_executing_code"] == ["sub/model.pkl"]


def test_a_registered_resolver_serves_its_scheme_with_run_and_metrics(
    client_for, scientist, registered_model, tmp_path
):
    from governance.sources import ResolvedSource, register_source_resolver, unregister_source_resolver

    (tmp_path / "run7").mkdir()
    (tmp_path / "run7" / "model.onnx").write_bytes(_onnx_header())
    seen = []

    def exported(source, *, actor):
        seen.append((source, actor))
        return ResolvedSource(
            path=tmp_path / "run7", source_job_id=7, metrics={"rmse": 1.5}, params={"lr": "0.1"}
        )

    register_source_resolver("exported", exported)
    try:
        response = client_for(scientist).post(
            "/api/model-versions/", {"model": registered_model.pk, "source": "exported:/run7"}, format="json"
        )
    finally:
        unregister_source_resolver("exported")

    body = _registered(response)
    assert seen == [("exported:/run7", scientist)]
    assert (body["source"], body["source_job_id"], body["metrics"]) == ("exported:/run7", 7, {"rmse": 1.5})
    assert body["training_spec"] == {"params": {"lr": "0.1"}}
    assert (body["flavor"], body["is_directory"]) == ("onnx", True)


def test_a_corrupt_archive_is_a_400_not_a_500(client_for, scientist, registered_model):
    gz = upload_version(client_for(scientist), registered_model, b"\x1f\x8b\x08\x00broken", "model.tar.gz")
    zipped = upload_version(client_for(scientist), registered_model, b"PK\x03\x04broken", "model.zip")

    assert gz.status_code == 400
    assert gz.json()["artifact"][0].startswith("not a readable tar archive")
    assert zipped.json() == {"artifact": ["not a readable zip archive (File is not a zip file)"]}
    assert not ModelVersion.objects.exists()
