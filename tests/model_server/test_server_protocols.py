"""Both protocols through real third-party clients: KServe's REST client (v1, v2) and
tritonclient.http (v2), against the real server serving the session's champion."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

from tests.support.server import FEATURES, MODEL, ROWS, SWAPPING_BACKENDS, ServerProcess

X = np.array(ROWS, dtype=np.float64)
TOLERANCE = 1e-4  # the server's stated ONNX tolerance, in $100,000


@pytest.fixture(scope="module")
def expected(candidates: dict[str, Any]) -> np.ndarray:
    """What the champion (the pipeline's selected lightgbm) predicts in-process."""
    return np.asarray(candidates["lightgbm"].predict(_frame(X)))


def _frame(x: np.ndarray) -> Any:
    import pandas as pd

    return pd.DataFrame(x, columns=list(FEATURES))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def kserve_infer(url: str, protocol: str, data: Any) -> Any:
    client = InferenceRESTClient(RESTConfig(protocol=protocol, retries=0, timeout=30))
    response_headers: dict[str, str] = {}
    try:
        result = await client.infer(url, data, model_name=MODEL, response_headers=response_headers)
    finally:
        await client.close()
    return result, response_headers


def test_v1_rows_and_objects_with_kserve_client(
    served: ServerProcess, expected: np.ndarray
) -> None:
    body = {"instances": [list(ROWS[0]), dict(zip(FEATURES, ROWS[1], strict=True))]}
    result, headers = run(kserve_infer(served.url, "v1", body))
    np.testing.assert_allclose(result["predictions"], expected, atol=TOLERANCE)
    version = result["model_version"]
    assert version == "1" and headers["x-model-version"] == version
    assert result["model_name"] == MODEL
    ids = result["prediction_ids"]
    assert len(ids) == 2 and len(set(ids)) == 2


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_v2_tensor_with_kserve_client(
    served: ServerProcess, expected: np.ndarray, binary: bool
) -> None:
    tensor = InferInput("input-0", list(X.shape), "FP64")
    tensor.set_data_from_numpy(X, binary_data=binary)
    result, headers = run(kserve_infer(served.url, "v2", InferRequest(MODEL, [tensor])))
    outputs = {o.name: o for o in result.outputs}
    np.testing.assert_allclose(outputs["predict"].as_numpy(), expected, atol=TOLERANCE)
    # KServe's client drops the body's model_version when parsing (tritonclient keeps it,
    # below); the header names it too.
    assert headers["x-model-version"] == "1"
    assert len(set(outputs["prediction_id"].as_numpy().tolist())) == 2


@pytest.fixture(scope="module")
def triton_client(served: ServerProcess) -> Any:
    client = triton.InferenceServerClient(f"127.0.0.1:{served.port}", network_timeout=30)
    yield client
    client.close()


def test_v2_binary_fp32_tensor_with_tritonclient(triton_client: Any, expected: np.ndarray) -> None:
    tensor = triton.InferInput("input-0", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X.astype(np.float32), binary_data=True)
    result = triton_client.infer(MODEL, [tensor])
    # FP32 input rounds the features; the values stay within the tolerance here.
    np.testing.assert_allclose(result.as_numpy("predict"), expected, atol=1e-3)
    assert result.get_response()["model_version"] == "1"
    ids = [i.decode() for i in result.as_numpy("prediction_id")]
    assert len(set(ids)) == 2


def test_v2_named_inputs_json_outputs_with_tritonclient(
    triton_client: Any, expected: np.ndarray
) -> None:
    inputs = []
    for j, name in enumerate(FEATURES):
        column = triton.InferInput(name, [len(X)], "FP64")
        column.set_data_from_numpy(X[:, j], binary_data=False)
        inputs.append(column)
    outputs = [
        triton.InferRequestedOutput(n, binary_data=False) for n in ("predict", "prediction_id")
    ]
    result = triton_client.infer(MODEL, inputs[::-1], outputs=outputs)
    np.testing.assert_allclose(result.as_numpy("predict"), expected, atol=TOLERANCE)
    response = result.get_response()
    assert response["model_version"] == "1"
    assert [o["name"] for o in response["outputs"]] == ["predict", "prediction_id"]


def test_v2_health_and_metadata_with_tritonclient(triton_client: Any) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready(MODEL)
    metadata = triton_client.get_model_metadata(MODEL)
    # The real contract, from the model's signature, in signature order.
    assert [i["name"] for i in metadata["inputs"]] == list(FEATURES)
    assert {i["datatype"] for i in metadata["inputs"]} == {"FP64"}
    assert all(i["shape"] == [-1] for i in metadata["inputs"])
    assert [o["name"] for o in metadata["outputs"]] == ["predict", "prediction_id"]
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] in SWAPPING_BACKENDS  # ONNX, then the compiled trees


def test_v2_bad_request_is_a_4xx_through_tritonclient(triton_client: Any) -> None:
    tensor = triton.InferInput("input-0", [1, 8], "FP64")
    tensor.set_data_from_numpy(np.array([[*ROWS[0][:6], 60.0, -122.0]]), binary_data=True)
    with pytest.raises(triton.InferenceServerException) as error:
        triton_client.infer(MODEL, [tensor])
    assert error.value.status() == "400"
    assert "instance 0, feature 'Latitude'" in error.value.message()


def test_kserve_health_and_status(served: ServerProcess) -> None:
    async def check() -> tuple[bool, bool, bool]:
        client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
        try:
            return (
                await client.is_server_live(served.url),
                await client.is_server_ready(served.url),
                await client.is_model_ready(served.url, MODEL),
            )
        finally:
            await client.close()

    assert run(check()) == (True, True, True)
    status = served.get(f"/v1/models/{MODEL}")
    assert status.status_code == 200 and status.json() == {"name": MODEL, "ready": True}
    assert served.get("/v1/models").json() == {"models": [MODEL]}


def test_form_encoded_json_is_still_parsed(served: ServerProcess) -> None:
    # curl -d sends application/x-www-form-urlencoded; the body is JSON all the same.
    body = b'{"instances": [[8.3252, 41.0, 6.98, 1.02, 322.0, 2.55, 37.88, -122.23]]}'
    response = served.post(
        f"/v1/models/{MODEL}:predict", content=body, headers={"content-type": "text/plain"}
    )
    assert response.status_code == 200, response.text
