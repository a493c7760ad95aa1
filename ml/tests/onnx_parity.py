"""Checks readmit's exported ONNX models with the reference toolchain.

Reads a manifest written by the Rust test `onnxruntime_agrees_with_tract` (tests/onnx.rs): for
each case, a model.onnx, its float32 input rows and the probabilities tract and the in-memory
model produced. Every model must pass onnx.checker (full check, with shape inference), load in
onnxruntime's CPU provider, and score every row within the tolerance of both. Exits non-zero on
the first disagreement so the Rust test fails.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def check_case(root: Path, case: dict, tolerance: float) -> str:
    path = root / case["model"]
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8, f"{path}: ir_version {model.ir_version}"
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets == {"": 17}, f"{path}: opsets {opsets}"
    ops = {n.op_type for n in model.graph.node}
    assert not any(n.domain for n in model.graph.node), f"{path}: non-standard domain"
    assert "TreeEnsembleClassifier" not in ops, f"{path}: uses ONNX-ML trees"

    n_rows, n_cols = case["rows"], case["cols"]
    features = np.fromfile(root / case["features"], dtype="<f4").reshape(n_rows, n_cols)
    tract = np.fromfile(root / case["tract"], dtype="<f4")
    memory = np.fromfile(root / case["memory"], dtype="<f4")

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    assert (inp.name, out.name) == ("features", "probabilities"), (inp.name, out.name)
    got = session.run(["probabilities"], {"features": features})[0]
    assert got.dtype == np.float32 and got.shape == (n_rows,), (got.dtype, got.shape)
    # One row at a time too: the batch dimension must really be free.
    single = session.run(["probabilities"], {"features": features[:1]})[0]
    assert single.shape == (1,) and abs(single[0] - got[0]) <= tolerance

    vs_tract = float(np.max(np.abs(got - tract)))
    vs_memory = float(np.max(np.abs(got - memory)))
    assert vs_tract <= tolerance, f"{case['name']}: onnxruntime vs tract differ by {vs_tract}"
    assert vs_memory <= tolerance, f"{case['name']}: onnxruntime vs model differ by {vs_memory}"
    return f"{case['name']}: {len(model.graph.node)} nodes, max |ort - tract| = {vs_tract:.2e}"


def main() -> int:
    manifest_path = Path(sys.argv[1])
    manifest = json.loads(manifest_path.read_text())
    root = manifest_path.parent
    tolerance = float(manifest["tolerance"])
    for case in manifest["cases"]:
        print(check_case(root, case, tolerance), flush=True)
    print(f"onnx_parity: {len(manifest['cases'])} models agree (onnxruntime {ort.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
