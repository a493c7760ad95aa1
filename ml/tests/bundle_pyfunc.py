"""Checks readmit's model bundles with MLflow itself.

Reads a manifest written by the Rust test `mlflow_pyfunc_serves_the_bundle_with_the_same_probabilities`
(tests/bundle.rs): one float32 feature matrix and, for each case, a bundle directory and the
probabilities readmit's LoadedBundle produced. Each bundle must load with
`mlflow.models.Model.load` (the onnx and python_function flavors, the uuid readmit wrote, a
tensor signature named `features`) and with `mlflow.pyfunc.load_model`, whose predictions on
`{"features": float32 array}` must match within the tolerance. Exits non-zero on the first
disagreement so the Rust test fails.
"""

import json
import logging
import sys
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
from mlflow.models import Model


def check_case(case: dict, features: np.ndarray, tolerance: float) -> str:
    bundle = case["bundle"]
    meta = Model.load(bundle)
    assert set(meta.flavors) == {"onnx", "python_function"}, meta.flavors
    assert meta.flavors["onnx"]["data"] == "model.onnx", meta.flavors["onnx"]
    assert meta.flavors["python_function"]["loader_module"] == "mlflow.onnx"
    assert meta.model_uuid == case["model_uuid"], (meta.model_uuid, case["model_uuid"])
    inputs = meta.signature.inputs
    assert inputs.input_names() == ["features"], inputs.input_names()
    (spec,) = inputs.inputs
    assert spec.type == np.dtype("float32") and spec.shape == (-1, features.shape[1]), spec

    model = mlflow.pyfunc.load_model(bundle)
    got = model.predict({"features": features})
    if isinstance(got, dict):
        got = got["probabilities"]
    got = np.asarray(got)
    assert got.dtype == np.float32 and got.shape == (features.shape[0],), (got.dtype, got.shape)
    expected = np.fromfile(case["expected"], dtype="<f4")
    diff = float(np.max(np.abs(got - expected)))
    assert diff <= tolerance, f"{case['name']}: pyfunc vs readmit differ by {diff}"
    return f"{case['name']}: max |pyfunc - readmit| = {diff:.2e}"


def main() -> int:
    # MLflow warns that the bundle's Python and package versions differ from this venv's.
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    manifest = json.loads(Path(sys.argv[1]).read_text())
    rows, cols = manifest["rows"], manifest["cols"]
    features = np.fromfile(manifest["features"], dtype="<f4").reshape(rows, cols)
    tolerance = float(manifest["tolerance"])
    for case in manifest["cases"]:
        print(check_case(case, features, tolerance), flush=True)
    print(f"bundle_pyfunc: {len(manifest['cases'])} bundles agree (mlflow {mlflow.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
