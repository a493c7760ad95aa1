"""The real `mlflow` client against a readmit agent: the original system's calls, then the
rest of what a drop-in tracking server must get right. Exits non-zero on the first failure.

Usage: python scenario.py http://127.0.0.1:PORT
"""

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from onnx import TensorProto, helper

URL = sys.argv[1]
EXPERIMENT = "diabetes_readmission_training"
MODEL = "best_diabetes_readmission_model"


def check(label, condition, detail=""):
    if not condition:
        print(f"FAIL {label} {detail}", flush=True)
        sys.exit(1)
    print(f"ok   {label}", flush=True)


def expect_error(label, code, fn):
    try:
        fn()
    except MlflowException as e:
        check(label, e.error_code == code, f"got {e.error_code}: {e}")
        return
    check(label, False, "no error raised")


def logistic_onnx(weights):
    w = helper.make_tensor("W", TensorProto.FLOAT, [3, 1], weights)
    b = helper.make_tensor("B", TensorProto.FLOAT, [1], [0.1])
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "W"], ["z0"]),
            helper.make_node("Add", ["z0", "B"], ["z"]),
            helper.make_node("Sigmoid", ["z"], ["probabilities"]),
        ],
        "lr",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 1])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def original_system(client):
    """The calls the original train_and_register DAG made, in its order."""
    mlflow.set_experiment(EXPERIMENT)
    candidates = [
        ("LR_C_0.01", {"C": 0.01}, 0.641, [0.5, -0.25, 1.0]),
        ("LR_C_0.1", {"C": 0.1}, 0.640, [0.4, -0.2, 0.9]),
        ("RF_depth10", {"n_estimators": 100, "max_depth": 10}, 0.647, [0.1, 0.2, 0.3]),
    ]
    for name, params, auc, weights in candidates:
        with mlflow.start_run(run_name=name):
            mlflow.log_params(params)
            mlflow.log_metric("val_accuracy", 0.888)
            mlflow.log_metric("val_roc_auc", auc)
            mlflow.log_metric("test_roc_auc", auc + 0.005)
            mlflow.onnx.log_model(logistic_onnx(weights), name="model")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = mlflow.search_runs(experiment_ids=[experiment.experiment_id], order_by=["metrics.val_roc_auc DESC"])
    check("search_runs orders by metrics.val_roc_auc DESC", list(runs["tags.mlflow.runName"]) == ["RF_depth10", "LR_C_0.01", "LR_C_0.1"], str(list(runs["tags.mlflow.runName"])))
    best_run_id = runs.iloc[0]["run_id"]
    try:
        client.get_registered_model(MODEL)
    except MlflowException:
        client.create_registered_model(MODEL)
    check("get_registered_model", client.get_registered_model(MODEL).name == MODEL)
    first = client.create_model_version(MODEL, f"runs:/{runs.iloc[1]['run_id']}/model", runs.iloc[1]["run_id"])
    client.transition_model_version_stage(MODEL, first.version, "Production", archive_existing_versions=True)
    best = client.create_model_version(MODEL, f"runs:/{best_run_id}/model", best_run_id)
    client.transition_model_version_stage(MODEL, best.version, "Production", archive_existing_versions=True)
    stages = {v.version: v.current_stage for v in client.search_model_versions(f"name='{MODEL}'")}
    check("transition to Production archives the previous version", stages == {first.version: "Archived", best.version: "Production"}, str(stages))
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}/Production")
    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    got = model.predict({"features": x})["probabilities"][0][0]
    want = 1 / (1 + np.exp(-(0.1 * 1 + 0.2 * 2 + 0.3 * 3 + 0.1)))
    check("pyfunc.load_model(models:/…/Production) predicts with the best run's model", abs(got - want) < 1e-5, f"{got} vs {want}")
    return best_run_id, best.version


def tracking_details(client):
    experiment_id = client.create_experiment("details")
    run = client.create_run(experiment_id, run_name="history")
    rid = run.info.run_id
    for step in range(5):
        client.log_metric(rid, "loss", 1.0 / (step + 1), step=step)
    history = client.get_metric_history(rid, "loss")
    check("metric history keeps every step", [m.step for m in history] == [0, 1, 2, 3, 4])
    client.log_batch(rid, metrics=[mlflow.entities.Metric(f"m{i}", i, 1, 0) for i in range(1000)])
    check("log_batch of 1,000 metrics", len(client.get_run(rid).data.metrics) == 1001)
    client.log_param(rid, "C", "1")
    expect_error("changing a param is INVALID_PARAMETER_VALUE", "INVALID_PARAMETER_VALUE", lambda: client.log_param(rid, "C", "2"))
    for i in range(7):
        client.create_run(experiment_id, run_name=f"page-{i}")
    seen, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=3, page_token=token)
        seen += [r.info.run_id for r in page]
        token = page.token
        if not token:
            break
    check("paging walks every run once", len(seen) == 8 and len(set(seen)) == 8, str(len(seen)))

    client.delete_run(rid)
    check("delete_run", client.get_run(rid).info.lifecycle_stage == "deleted")
    check("deleted runs leave active searches", rid not in [r.info.run_id for r in client.search_runs([experiment_id])])
    expect_error("logging to a deleted run is refused", "INVALID_PARAMETER_VALUE", lambda: client.log_metric(rid, "x", 1.0))
    client.restore_run(rid)
    check("restore_run", client.get_run(rid).info.lifecycle_stage == "active")
    client.delete_experiment(experiment_id)
    check("delete_experiment", client.get_experiment(experiment_id).lifecycle_stage == "deleted")
    client.restore_experiment(experiment_id)
    check("restore_experiment", client.get_experiment(experiment_id).lifecycle_stage == "active")

    found = [e.name for e in client.search_experiments(filter_string="name LIKE 'diabetes%'")]
    check("search_experiments with a filter", found == [EXPERIMENT], str(found))
    expect_error("unknown run is RESOURCE_DOES_NOT_EXIST", "RESOURCE_DOES_NOT_EXIST", lambda: client.get_run("0" * 32))
    expect_error("duplicate experiment is RESOURCE_ALREADY_EXISTS", "RESOURCE_ALREADY_EXISTS", lambda: client.create_experiment("details"))
    expect_error("a bad filter is INVALID_PARAMETER_VALUE", "INVALID_PARAMETER_VALUE", lambda: client.search_runs([experiment_id], "metrics.loss > 'high'"))
    return experiment_id


def artifacts(client, experiment_id):
    run = client.create_run(experiment_id, run_name="artifacts")
    work = tempfile.mkdtemp()
    blob = os.path.join(work, "blob.bin")
    with open(blob, "wb") as f:
        f.write(os.urandom(5 * 1024 * 1024 + 123))
    os.makedirs(os.path.join(work, "dir", "sub"))
    with open(os.path.join(work, "dir", "sub", "note.txt"), "w") as f:
        f.write("hello")
    client.log_artifact(run.info.run_id, blob)
    client.log_artifacts(run.info.run_id, os.path.join(work, "dir"), artifact_path="dir")
    listed = {(f.path, f.is_dir) for f in client.list_artifacts(run.info.run_id)}
    check("list_artifacts", listed == {("blob.bin", False), ("dir", True)}, str(listed))
    check("list_artifacts in a directory", [f.path for f in client.list_artifacts(run.info.run_id, "dir/sub")] == ["dir/sub/note.txt"])
    out = client.download_artifacts(run.info.run_id, "blob.bin", tempfile.mkdtemp())
    digest = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()
    check("artifact round trip is byte-equal", digest(out) == digest(blob))
    return run


def registry_search(client, best_run_id, version):
    """MLflow's registry search grammar, as the client sends it."""
    found = [v.version for v in client.search_model_versions(f"name='{MODEL}' and run_id='{best_run_id}'")]
    check("search_model_versions by name and run_id", found == [version], str(found))
    client.set_model_version_tag(MODEL, version, "mlflow.note", "best")
    found = [v.version for v in client.search_model_versions(f"name = '{MODEL}' and tags.`mlflow.note` = 'best'")]
    check("search_model_versions by a backquoted tag", found == [version], str(found))
    found = [v.version for v in client.search_model_versions(f"name='{MODEL}' AND tags.`mlflow.prompt.is_prompt` != 'true'", order_by=["version_number ASC"])]
    check("search_model_versions with the prompt clause and order_by", found == sorted(found) and version in found and len(found) == 2, str(found))
    found = [v.version for v in client.search_model_versions(f"name IN ('{MODEL}') and version_number = {version}")]
    check("search_model_versions with IN and version_number", found == [version], str(found))
    # 3.x clients add `tag.`mlflow.prompt.is_prompt` != 'true'` to this search themselves.
    client.create_registered_model("a_second_model")
    found = [m.name for m in client.search_registered_models(order_by=["name DESC"])]
    check("search_registered_models with order_by", found == [MODEL, "a_second_model"], str(found))
    found = [m.name for m in client.search_registered_models(filter_string="name ILIKE 'BEST%'")]
    check("search_registered_models with ILIKE", found == [MODEL], str(found))
    client.delete_registered_model("a_second_model")
    expect_error("a bad registry filter is INVALID_PARAMETER_VALUE", "INVALID_PARAMETER_VALUE", lambda: client.search_model_versions("metrics.auc > 1"))


def registry_extras(client, version):
    client.set_registered_model_alias(MODEL, "champion", version)
    check("alias resolves", client.get_model_version_by_alias(MODEL, "champion").version == version)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    check("pyfunc loads models:/…@alias", model is not None)
    client.delete_registered_model_alias(MODEL, "champion")
    expect_error("a deleted alias is INVALID_PARAMETER_VALUE, as MLflow answers", "INVALID_PARAMETER_VALUE", lambda: client.get_model_version_by_alias(MODEL, "champion"))
    expect_error("an alias never set is INVALID_PARAMETER_VALUE", "INVALID_PARAMETER_VALUE", lambda: client.get_model_version_by_alias(MODEL, "never-set"))
    expect_error("a duplicate registered model is refused", "RESOURCE_ALREADY_EXISTS", lambda: client.create_registered_model(MODEL))


def traversal_probes(run):
    root = f"{URL}/api/2.0/mlflow-artifacts/artifacts"
    prefix = f"{run.info.experiment_id}/{run.info.run_id}/artifacts"
    probes = [
        f"{prefix}/../../../../etc/passwd",
        f"{prefix}/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"{prefix}/..%2f..%2f..%2fetc%2fpasswd",
        f"{prefix}/..%5c..%5cetc%5cpasswd",
        f"{prefix}//etc/passwd",
        f"{prefix}/%252e%252e/etc/passwd",
        "../../../etc/passwd",
        "0/not-a-run/artifacts/x",
        f"{run.info.experiment_id}/{'f' * 32}/artifacts/x",
    ]
    for probe in probes:
        for method, body in [("GET", None), ("PUT", b"pwned")]:
            request = urllib.request.Request(f"{root}/{probe}", data=body, method=method)
            try:
                with urllib.request.urlopen(request) as response:
                    status = response.status
            except urllib.error.HTTPError as e:
                status = e.code
            check(f"{method} {probe} is refused", status in (400, 404), f"status {status}")
    listing = urllib.request.Request(f"{root}?path=../../etc")
    try:
        urllib.request.urlopen(listing)
        status = 200
    except urllib.error.HTTPError as e:
        status = e.code
    check("listing outside the root is refused", status == 400, f"status {status}")


def main():
    mlflow.set_tracking_uri(URL)
    client = MlflowClient()
    best_run_id, version = original_system(client)
    registry_search(client, best_run_id, version)
    experiment_id = tracking_details(client)
    run = artifacts(client, experiment_id)
    registry_extras(client, version)
    traversal_probes(run)
    print("scenario complete", flush=True)


main()
