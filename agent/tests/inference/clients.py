"""Standard inference clients against a readmit inference agent, unchanged: tritonclient's
HTTP and gRPC clients (KServe's Open Inference Protocol v2) and a plain-HTTP client of MLflow's
scoring protocol. Every probability must equal what the bundle gives offline (1e-6).

Usage: clients.py HTTP_HOST:PORT GRPC_HOST:PORT MODEL CASES_JSON
CASES_JSON holds {"records": [...raw records...], "expected": [...probabilities...]}.
"""

import json
import sys

import numpy as np
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

http_addr, grpc_addr, model, cases_path = sys.argv[1:5]
with open(cases_path) as f:
    cases = json.load(f)
records, expected = cases["records"], np.array(cases["expected"], dtype=np.float64)
n = len(records)


def check(what, got):
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} vs {expected.shape}"
    worst = float(np.max(np.abs(got - expected)))
    assert worst <= 1e-6, f"{what}: off by {worst}"
    print(f"{what}: {n} probabilities match (max diff {worst:.2e})")


def columns(metadata_inputs):
    """One numpy column per input the model lists, typed as its metadata says."""
    out = []
    for tensor in metadata_inputs:
        name, datatype = tensor["name"], tensor["datatype"]
        values = [r.get(name) for r in records]
        if datatype == "INT64":
            out.append((name, datatype, np.array([int(v) for v in values], dtype=np.int64)))
        else:
            text = ["?" if v is None else str(v) for v in values]
            out.append((name, datatype, np.array([t.encode() for t in text], dtype=np.object_)))
    return out


# --- tritonclient over HTTP ---------------------------------------------------------------
client = httpclient.InferenceServerClient(url=http_addr)
assert client.is_server_live() and client.is_server_ready()
assert client.is_model_ready(model)
metadata = client.get_model_metadata(model)
assert metadata["name"] == model, metadata
assert {o["name"] for o in metadata["outputs"]} == {"probability", "readmitted"}, metadata
cols = columns(metadata["inputs"])
for binary in (True, False):
    inputs = []
    for name, datatype, array in cols:
        tensor = httpclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    outputs = [
        httpclient.InferRequestedOutput("probability", binary_data=binary),
        httpclient.InferRequestedOutput("readmitted", binary_data=binary),
    ]
    result = client.infer(model, inputs, outputs=outputs, request_id="py-http")
    assert result.get_response()["id"] == "py-http"
    check(f"tritonclient.http (binary_data={binary})", result.as_numpy("probability"))
    assert result.as_numpy("readmitted").dtype == np.bool_
# Outputs left to the server's choice.
result = client.infer(model, inputs)
check("tritonclient.http (all outputs)", result.as_numpy("probability"))
try:
    client.get_model_metadata("no_such_model")
    raise AssertionError("an unknown model was answered")
except Exception as e:  # tritonclient raises InferenceServerException
    assert "not served" in str(e), e

# --- tritonclient over gRPC ---------------------------------------------------------------
client = grpcclient.InferenceServerClient(url=grpc_addr)
assert client.is_server_live() and client.is_server_ready()
assert client.is_model_ready(model)
metadata = client.get_model_metadata(model, as_json=True)
assert metadata["name"] == model, metadata
inputs = []
for name, datatype, array in cols:
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    inputs.append(tensor)
outputs = [grpcclient.InferRequestedOutput("probability")]
result = client.infer(model, inputs, outputs=outputs, request_id="py-grpc")
assert result.get_response().id == "py-grpc"
check("tritonclient.grpc", result.as_numpy("probability"))

# --- MLflow's scoring protocol over plain HTTP --------------------------------------------
base = f"http://{http_addr}"
assert requests.get(f"{base}/ping").status_code == 200
names = sorted({k for r in records for k in r})
split = {"columns": names, "data": [[r.get(k) for k in names] for r in records]}
reply = requests.post(f"{base}/invocations", json={"dataframe_split": split})
assert reply.status_code == 200, reply.text
check("MLflow scoring (dataframe_split)", reply.json()["predictions"])
reply = requests.post(f"{base}/invocations", json={"instances": records})
check("MLflow scoring (instances)", reply.json()["predictions"])
bad = requests.post(f"{base}/invocations", data="{not json", headers={"Content-Type": "application/json"})
assert bad.status_code == 400 and bad.json()["error_code"] == "BAD_REQUEST", bad.text
print("clients complete")
