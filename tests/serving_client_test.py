"""Tests of tf_ama.serving.client against STAND-IN servers, and against real TF Serving.

`StandInRestServer` and `StandInGrpcServer` are tiny servers written for these tests: they
answer TF Serving's REST / gRPC Predict and metadata requests by running the exported
SavedModel with TensorFlow in this process. They are NOT TensorFlow Serving; they test the
client's request building and response parsing with the real tensorflow-serving-api protos.
`test_real_tensorflow_model_server` runs the real `tensorflow_model_server` whenever the
binary is on PATH (it is not installable on the development machine: docs/design.md §6).

`CannedRestServer` and `CannedGrpcServer` answer every request with a canned (possibly
malformed) body, to test that the client refuses what TF Serving should never send; the
gRPC one also serves over TLS, with certificates made by the `openssl` command.
"""

import concurrent.futures
import contextlib
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import grpc
import hypothesis
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, predict_pb2,
                                     prediction_service_pb2_grpc)

import tf_ama
from tf_ama.core.exactness import MAX_BID
from tf_ama.serving.export import export_saved_model
from tf_ama.core.mechanism import exact_outcome
from tf_ama.cli.app import main as tf_ama_main
from tf_ama.serving.client import RestClient, ServingError, check_bids
from tf_ama.serving.grpc_client import GrpcClient

MODEL = "additive_2x2_uniform"
OUTPUTS = ("allocation", "payments", "menu_index")


def main(argv):
    """`tf-ama query ARGV...` (the command line of the serving client)."""
    return tf_ama_main(["query", *argv])


def _signature_def_map(version_dir):
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(version_dir, "saved_model.pb"), "rb") as file:
        saved_model.ParseFromString(file.read())
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for name, signature in saved_model.meta_graphs[0].signature_def.items():
        signatures.signature_def[name].CopyFrom(signature)
    return signatures


class _Served:
    """One exported version folder loaded with TensorFlow (shared by both stand-ins)."""

    def __init__(self, model_name, version_dir):
        self.model_name = model_name
        self.version = int(os.path.basename(version_dir))
        self.loaded = tf.saved_model.load(version_dir)
        self.signature_map = _signature_def_map(version_dir)
        self.requests = []  # what the stand-in received, for request-building tests

    def run(self, signature_name, inputs):
        """inputs: name -> numpy array; returns name -> numpy array, or raises ValueError."""
        signature_name = signature_name or "serving_default"
        if signature_name not in self.loaded.signatures:
            raise ValueError(
                f"Serving signature name: \"{signature_name}\" not found in signature def")
        try:
            outputs = self.loaded.signatures[signature_name](
                **{name: tf.constant(value) for name, value in inputs.items()})
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as error:
            raise ValueError(getattr(error, "message", str(error))) from None
        return {name: value.numpy() for name, value in outputs.items()}


class _LoopbackHttpServer:
    """An HTTP server on 127.0.0.1 (a free port) run by a thread while in a `with` block."""

    def __init__(self, handler):
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


class StandInRestServer(_LoopbackHttpServer):
    """A STAND-IN for TF Serving's REST API (NOT TensorFlow Serving), on 127.0.0.1.

    Answers `POST /v1/models/NAME[/versions/V]:predict` (columnar `inputs` -> `outputs`,
    HTTP 400 `{"error": ...}` on a refusal), `GET /v1/models/NAME[/versions/V]/metadata` and
    `GET /v1/models/NAME` by running the SavedModel with TensorFlow.
    """

    def __init__(self, served):
        self.served = served
        super().__init__(self._handler_class())

    def _handler_class(self):
        served = self.served
        path_re = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?(:predict|/metadata)?$")

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self):
                match = path_re.match(self.path)
                if not match or match.group(1) != served.model_name or (
                        match.group(2) and int(match.group(2)) != served.version):
                    self._reply(404, {"error": f"Servable not found for request: {self.path}"})
                    return None
                return match.group(3)

            def do_GET(self):
                action = self._route()
                if action == "/metadata":
                    self._reply(200, {
                        "model_spec": {"name": served.model_name, "signature_name": "",
                                       "version": str(served.version)},
                        "metadata": {"signature_def": json_format.MessageToDict(
                            served.signature_map, preserving_proto_field_name=True)}})
                elif action is None and self.path.count("/") == 3:
                    self._reply(200, {"model_version_status": [{
                        "version": str(served.version), "state": "AVAILABLE",
                        "status": {"error_code": "OK", "error_message": ""}}]})
                elif action is not None:
                    self._reply(404, {"error": "Malformed request"})

            def do_POST(self):
                if self._route() != ":predict":
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                served.requests.append(("rest", self.path, body))
                signature = body.get("signature_name", "serving_default")
                try:
                    spec = served.loaded.signatures[signature].structured_input_signature[1]
                    inputs = {name: np.asarray(value, spec[name].dtype.as_numpy_dtype)
                              for name, value in body["inputs"].items()}
                    outputs = served.run(signature, inputs)
                except (ValueError, KeyError) as error:
                    self._reply(400, {"error": str(error)})
                    return
                self._reply(200, {"outputs": {k: v.tolist() for k, v in outputs.items()}})

        return Handler


class StandInGrpcServer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """A STAND-IN for TF Serving's gRPC PredictionService (NOT TensorFlow Serving), on
    127.0.0.1: `Predict` and `GetModelMetadata`, answered by running the SavedModel."""

    def __init__(self, served):
        self.served = served
        self._server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(self, self._server)
        self.target = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"

    def _check_spec(self, spec, context):
        if spec.name != self.served.model_name or (
                spec.HasField("version") and spec.version.value != self.served.version):
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {spec}")

    def Predict(self, request, context):
        self._check_spec(request.model_spec, context)
        self.served.requests.append(("grpc", request))
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        try:
            outputs = self.served.run(request.model_spec.signature_name, inputs)
        except ValueError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.served.model_name
        response.model_spec.version.value = self.served.version
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response

    def GetModelMetadata(self, request, context):
        self._check_spec(request.model_spec, context)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.served.model_name
        response.model_spec.version.value = self.served.version
        response.metadata["signature_def"].Pack(self.served.signature_map)
        return response

    def __enter__(self):
        self._server.start()
        return self

    def __exit__(self, *exc):
        self._server.stop(grace=None)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    base = tmp_path_factory.mktemp("models") / MODEL
    model = tf_ama.AffineMaximizerAuction(MODEL, menu_size=32, seed=0, init_scale=2.0)
    version_dir = export_saved_model(model, base)
    served = _Served(MODEL, version_dir)
    with StandInRestServer(served) as rest, StandInGrpcServer(served) as grpc_server:
        yield {"model": model, "base": base, "served": served, "rest": rest,
               "grpc": grpc_server}


@pytest.fixture(params=["rest", "grpc"])
def client(request, deployment):
    if request.param == "rest":
        made = RestClient(deployment["rest"].url, MODEL, version=1)
    else:
        made = GrpcClient(deployment["grpc"].target, MODEL, version=1)
    with made:
        yield made


def _bids(batch, seed):
    return np.random.default_rng(seed).uniform(size=(batch, 2, 2))


def test_predict_equals_exact_outcome_bit_for_bit(client, deployment):
    bids = np.concatenate([_bids(100, seed=1), np.ones((2, 2, 2)), np.zeros((1, 2, 2))])
    outcome = client.predict(bids)
    expected = exact_outcome(bids, *deployment["model"].menu(tf.float64))
    for key in OUTPUTS:
        assert outcome[key].dtype == expected[key].dtype.as_numpy_dtype
        assert np.array_equal(outcome[key], expected[key].numpy()), key
    # Nested lists work too (converted to float64).
    listed = client.predict(bids[:2].tolist())
    assert np.array_equal(listed["payments"], expected["payments"].numpy()[:2])


def test_menu_and_metadata(client, deployment):
    menu = client.menu()
    for key, value in zip(("allocations", "boosts", "bidder_weights"),
                          deployment["model"].exact_menu()):
        assert np.array_equal(menu[key], value), key
    metadata = client.metadata()
    assert metadata["serving_default"]["inputs"] == {"bids": ("DT_DOUBLE", [-1, 2, 2])}
    assert metadata["serving_default"]["outputs"] == {
        "allocation": ("DT_DOUBLE", [-1, 2, 2]), "payments": ("DT_DOUBLE", [-1, 2]),
        "menu_index": ("DT_INT64", [-1])}
    assert metadata["menu"]["inputs"] == {"dummy": ("DT_INT32", [])}
    assert metadata["menu"]["outputs"]["allocations"] == ("DT_DOUBLE", [32, 2, 2])


def test_request_building(deployment):
    served = deployment["served"]
    served.requests.clear()
    bids = [[[0.5, 0.2], [0.3, 0.9]]]
    with RestClient(deployment["rest"].url, MODEL, version=1) as client:
        client.predict(bids)
    with GrpcClient(deployment["grpc"].target, MODEL) as client:
        client.predict(bids)
    (_, path, body), (_, request) = served.requests
    assert path == f"/v1/models/{MODEL}/versions/1:predict"
    assert body == {"signature_name": "serving_default", "inputs": {"bids": bids}}
    assert request.model_spec.name == MODEL and not request.model_spec.HasField("version")
    assert request.model_spec.signature_name == "serving_default"
    assert request.inputs["bids"].dtype == tf.float64.as_datatype_enum
    assert np.array_equal(tf.make_ndarray(request.inputs["bids"]), bids)


@pytest.mark.parametrize("bids, error, message", [
    (np.full((1, 2, 2), np.nan), ValueError, "must be finite"),
    (np.array([[[0.5, np.inf], [0.1, 0.2]]]), ValueError, "must be finite"),
    (np.array([[[0.5, -0.1], [0.1, 0.2]]]), ValueError, "must be >= 0"),
    (np.ones((2, 2)), ValueError, "leading batch axis"),
    (np.ones((1, 2, 2), np.float32), TypeError, "must be float64"),
    ([[["a", "b"]]], TypeError, "must hold real numbers only"),
    (np.array([[[0.5, 2e38], [0.1, 0.2]]]), ValueError, r"`bids` must be <= 1e\+38"),
    # Nothing silently coerced: True, "0.25", b"7" and 2**53 + 1 are not bids.
    ([[[True, 0.25], [0.5, 0.5]]], TypeError, "must hold real numbers only; got True"),
    ([[[0.5, "0.25"], [0.5, 0.5]]], TypeError, "must hold real numbers only; got '0.25'"),
    ([[[0.5, b"7"], [0.5, 0.5]]], TypeError, "must hold real numbers only; got b'7'"),
    ([[[0.5, 2**53 + 1], [0.5, 0.5]]], TypeError, "is not exactly a float64"),
    (np.array([[[1, 2], [3, 4]]], np.int64), TypeError, "must be float64.*int64"),
], ids=["nan", "inf", "negative", "rank2", "float32", "strings", "above_max_bid", "bool",
        "string", "bytes", "int_beyond_2_53", "int_array"])
def test_client_refuses_bad_bids(client, bids, error, message):
    with pytest.raises(error, match=message):
        client.predict(bids)
    with pytest.raises(ValueError, match="num_bidders=3"):
        check_bids(np.ones((1, 2, 2)), num_bidders=3, num_items=2)


def test_max_bid_is_accepted_and_its_successor_refused():
    at_limit = np.full((1, 2, 2), MAX_BID)
    assert np.array_equal(check_bids(at_limit), at_limit)
    with pytest.raises(ValueError, match=r"`bids` must be <= 1e\+38.*MAX_BID"):
        check_bids(np.nextafter(at_limit, np.inf))


@pytest.mark.parametrize("bids, message", [
    (np.full((1, 2, 2), np.nan), "must be finite"),
    (np.array([[[0.5, -0.1], [0.1, 0.2]]]), "must be >= 0"),
    (np.ones((1, 3, 2)), "wrong shape"),
    (np.ones((1, 2, 3)), "wrong shape"),
], ids=["nan", "negative", "bidders", "items"])
def test_server_refusals_surface_as_serving_error(client, bids, message):
    with pytest.raises(ServingError, match=message) as raised:
        client.predict(bids, validate=False)
    assert raised.value.status in (400, "INVALID_ARGUMENT")


def test_float32_refused_by_the_served_signature(deployment):
    with GrpcClient(deployment["grpc"].target, MODEL) as client:
        with pytest.raises(ServingError, match="double tensor but is a float tensor"):
            client.predict(np.ones((1, 2, 2), np.float32), validate=False)


def test_unknown_model_and_unreachable_server(deployment):
    with RestClient(deployment["rest"].url, "nope") as client:
        with pytest.raises(ServingError, match="Servable not found") as raised:
            client.predict(_bids(1, 0))
        assert raised.value.status == 404
    with GrpcClient(deployment["grpc"].target, MODEL, version=9) as client:
        with pytest.raises(ServingError, match="Servable not found"):
            client.predict(_bids(1, 0))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here
    with RestClient(f"http://127.0.0.1:{port}", MODEL, timeout=5) as client:
        with pytest.raises(ServingError, match="cannot reach TF Serving"):
            client.predict(_bids(1, 0))
    with GrpcClient(f"127.0.0.1:{port}", MODEL, timeout=5) as client:
        with pytest.raises(ServingError, match="UNAVAILABLE"):
            client.predict(_bids(1, 0))


def test_command_line(deployment, capsys):
    bids = "[[[0.5,0.2],[0.3,0.9]]]"
    assert main(["--rest", deployment["rest"].url, "--model", MODEL, "--bids", bids]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = exact_outcome(np.array(json.loads(bids)), *deployment["model"].menu(tf.float64))
    assert printed["payments"] == expected["payments"].numpy().tolist()
    assert main(["--grpc", deployment["grpc"].target, "--model", MODEL, "--metadata"]) == 0
    assert "serving_default" in json.loads(capsys.readouterr().out)
    assert main(["--rest", deployment["rest"].url, "--model", MODEL, "--bids", "[[[1, -1]]]"]) == 2
    assert main(["--rest", deployment["rest"].url, "--model", MODEL, "--bids", "[[["]) == 2
    err = capsys.readouterr().err
    assert "must be >= 0" in err and "not valid JSON" in err and "Traceback" not in err


@pytest.mark.slow
def test_a_contextual_model_is_queried_with_its_contexts(tmp_path, capsys):
    model = tf_ama.ContextualAuction("contextual_a", sizes=["2x3"], menu_size=4, hidden=8,
                                     blocks=1)
    # (the choice against Myerson at export is tested in contextual_test.py: a small sample)
    served = _Served("ctx", export_saved_model(model, tmp_path / "ctx", selection_samples=200))
    bids, x, y = (t.numpy() for t in model.setting.sample(5, 3, "2x3", tf.float64))
    want = served.run("serving_default", {"bids": bids, "bidder_context": x, "item_context": y})
    with StandInRestServer(served) as rest, StandInGrpcServer(served) as grpc_server:
        for made in (RestClient(rest.url, "ctx"), GrpcClient(grpc_server.target, "ctx")):
            with made:
                got = made.predict(bids, bidder_context=x, item_context=y)
                for key in ("allocation", "payments", "menu_index", "owners"):
                    np.testing.assert_array_equal(got[key], want[key], err_msg=key)
                with pytest.raises(ValueError, match="`item_context` must have shape"):
                    made.predict(bids, bidder_context=x, item_context=y[:, :1])
                with pytest.raises(ValueError, match="both"):
                    made.predict(bids, bidder_context=x)
        argv = ["--rest", rest.url, "--model", "ctx", "--bids", json.dumps(bids[:1].tolist()),
                "--bidder-context", json.dumps(x[:1].tolist()),
                "--item-context", json.dumps(y[:1].tolist())]
        assert main(argv) == 0
        assert json.loads(capsys.readouterr().out)["payments"] == want["payments"][:1].tolist()


# ------------------------------------------------------------- malformed answers are refused
class CannedRestServer(_LoopbackHttpServer):
    """Answers `POST ...:predict` with `answers[signature_name]` and any GET with
    `answers["GET"]`: `(status, raw body bytes)`. On 127.0.0.1; NOT TF Serving."""

    def __init__(self):
        self.answers = {}
        answers = self.answers

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, key):
                status, data = answers[key]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._reply("GET")

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self._reply(body.get("signature_name", "serving_default"))

        super().__init__(Handler)


class CannedGrpcServer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Answers `Predict` with `answers[signature_name]` (a PredictResponse) and
    `GetModelMetadata` with `answers["GET"]`. On 127.0.0.1, over TLS if `credentials`
    (`grpc.ssl_server_credentials`) are given; NOT TF Serving."""

    def __init__(self, credentials=None):
        self.answers = {}
        self._server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(self, self._server)
        port = (self._server.add_secure_port("127.0.0.1:0", credentials) if credentials
                else self._server.add_insecure_port("127.0.0.1:0"))
        self.target = f"127.0.0.1:{port}"

    def Predict(self, request, context):
        return self.answers[request.model_spec.signature_name or "serving_default"]

    def GetModelMetadata(self, request, context):
        return self.answers["GET"]

    def __enter__(self):
        self._server.start()
        return self

    def __exit__(self, *exc):
        self._server.stop(grace=None)


# A correct outcome of BIDS: feasible allocations in [0, 1], 0 <= payment <= value.
BIDS = np.array([[[0.5, 0.2], [0.3, 0.9]], [[1.0, 1.0], [0.0, 0.0]]])
GOOD = {"allocation": np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.5, 0.5], [0.5, 0.5]]]),
        "payments": np.array([[0.1, 0.2], [0.5, 0.0]]), "menu_index": np.array([3, 0])}
GOOD_MENU = {"allocations": np.array([[[0.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]],
                                      [[0.5, 0.5], [0.5, 0.5]], [[0.0, 1.0], [1.0, 0.0]]]),
             "boosts": np.array([0.0, 0.5, -1.0, 2.0]), "bidder_weights": np.array([1.0, 2.0])}

# With the item-separable family: owners of each item (0 nobody, i + 1 bidder i) when a
# family entry was chosen (profile 0, menu index K + rank), -1 for an explicit one; and c.
GOOD_FAMILY = {**GOOD, "owners": np.array([[1, 2], [-1, -1]]), "menu_index": np.array([9, 0])}
GOOD_FAMILY_MENU = {**GOOD_MENU, "separable_boosts": np.array([[0.0, 0.1], [0.2, 0.0],
                                                               [0.5, 0.5]])}


def _changed(outputs, key, value, at=None):
    """A copy of `outputs` with `key` (or its element `at`) replaced; `value=None` and no
    `at` drops the key."""
    changed = {k: v.copy() for k, v in outputs.items()}
    if at is not None:
        changed[key][at] = value
    elif value is None:
        del changed[key]
    else:
        changed[key] = value
    return changed


def _answer(canned, transport, outputs, signature="serving_default"):
    """Makes the canned server of `transport` answer `outputs` (name -> numpy array,
    TensorProto (gRPC) or JSON value (REST))."""
    if transport == "rest":
        body = {"outputs": {k: v.tolist() if isinstance(v, np.ndarray) else v
                            for k, v in outputs.items()}}
        canned["rest"].answers[signature] = (200, json.dumps(body).encode())
    else:
        response = predict_pb2.PredictResponse()
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(
                value if isinstance(value, tf.make_tensor_proto(0).__class__)
                else tf.make_tensor_proto(value))
        canned["grpc"].answers[signature] = response


def _canned_client(canned, transport, version=None):
    if transport == "rest":
        return RestClient(canned["rest"].url, MODEL, version=version, timeout=5)
    return GrpcClient(canned["grpc"].target, MODEL, version=version, timeout=5)


@pytest.fixture(scope="module")
def canned():
    with CannedRestServer() as rest, CannedGrpcServer() as grpc_server:
        yield {"rest": rest, "grpc": grpc_server}


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_well_formed_answers_pass_unchanged(canned, transport):
    within_rounding = _changed(GOOD, "payments", 0.5 * (1 + 2.0**-42), at=(0, 0))  # value 0.5
    _answer(canned, transport, within_rounding)
    _answer(canned, transport, GOOD_MENU, "menu")
    with _canned_client(canned, transport) as client:
        outcome = client.predict(BIDS)
        for key in OUTPUTS:
            assert np.array_equal(outcome[key], within_rounding[key]), key
        assert outcome["menu_index"].dtype == np.int64
        assert outcome["payments"].dtype == outcome["allocation"].dtype == np.float64
        menu = client.menu()
        for key, value in GOOD_MENU.items():
            assert np.array_equal(menu[key], value) and menu[key].dtype == np.float64, key
        # An empty batch: JSON `[]` carries no shape, the request does.
        empty = {"allocation": np.zeros((0, 2, 2)), "payments": np.zeros((0, 2)),
                 "menu_index": np.zeros((0,), np.int64)}
        _answer(canned, transport, empty)
        assert client.predict(np.zeros((0, 2, 2)))["allocation"].shape == (0, 2, 2)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_menu_with_the_family_and_its_owners_pass(canned, transport):
    _answer(canned, transport, GOOD_FAMILY)
    _answer(canned, transport, GOOD_FAMILY_MENU, "menu")
    with _canned_client(canned, transport, version=1) as client:
        menu = client.menu()
        assert np.array_equal(menu["separable_boosts"], GOOD_FAMILY_MENU["separable_boosts"])
        assert client.menu_size == 4 + 3**2  # the family's entries follow the explicit ones
        outcome = client.predict(BIDS)
        assert np.array_equal(outcome["owners"], GOOD_FAMILY["owners"])
        assert outcome["owners"].dtype == np.int64


OUTCOME_CASES = {  # name: (malformed outputs, what the error must say), for both transports
    "batch": (_changed(GOOD, "allocation", GOOD["allocation"][:1]),
              r"`allocation` must be of shape \[2, 2, 2\]; got shape \[1, 2, 2\]"),
    "items": (_changed(GOOD, "allocation", np.zeros((2, 2, 3))),
              r"`allocation` must be of shape \[2, 2, 2\]; got shape \[2, 2, 3\]"),
    "bidders": (_changed(GOOD, "payments", np.zeros((2, 3))),
                r"`payments` must be of shape \[2, 2\]; got shape \[2, 3\]"),
    "menu_index_shape": (_changed(GOOD, "menu_index", np.array([3, 0, 1])),
                         r"`menu_index` must be of shape \[2\]"),
    "payment_nan": (_changed(GOOD, "payments", np.nan, at=(1, 0)),
                    r"`payments` must be finite and >= 0; got nan at payments\[1\]\[0\]"),
    "payment_inf": (_changed(GOOD, "payments", np.inf, at=(0, 1)),
                    r"`payments` must be finite and >= 0; got inf at payments\[0\]\[1\]"),
    "payment_negative": (_changed(GOOD, "payments", -0.25, at=(1, 1)),
                         r"`payments` must be finite and >= 0; got -0.25 at payments\[1\]\[1\]"),
    "payment_above_value": (_changed(GOOD, "payments", 0.95, at=(0, 1)),
                            r"`payments` must be at most .*\(individual rationality\); got 0.95 "
                            r"at payments\[0\]\[1\] for a value of 0.9"),
    # The IR tolerance is relative: nothing may be charged for nothing, and 1e-9 above a
    # value of 0.5 is far beyond a REST ulp (an absolute 1e-9 was accepted before).
    "payment_for_nothing": (_changed(_changed(GOOD, "allocation", 0.0, at=(0, 0, 0)),
                                     "payments", 1e-9, at=(0, 0)),
                            r"`payments` must be at most .*\(individual rationality\); got "
                            r"1e-09 at payments\[0\]\[0\] for a value of 0.0"),
    "payment_just_above_value": (_changed(GOOD, "payments", 0.5 + 1e-10, at=(0, 0)),
                                 r"`payments` must be at most .*\(individual rationality\)"),
    "allocation_above_one": (_changed(GOOD, "allocation", 1.5, at=(0, 0, 0)),
                             r"`allocation` must be in \[0, 1\]; got 1.5 at "
                             r"allocation\[0\]\[0\]\[0\]"),
    "allocation_negative": (_changed(GOOD, "allocation", -0.25, at=(1, 1, 0)),
                            r"`allocation` must be in \[0, 1\]; got -0.25"),
    "allocation_nan": (_changed(GOOD, "allocation", np.nan, at=(1, 1, 1)),
                       r"`allocation` must be in \[0, 1\]; got nan"),
    "infeasible": (_changed(GOOD, "allocation", 0.6, at=(1, slice(None), 0)),
                   r"`allocation` must be feasible .*; got a sum of 1.2 at "
                   r"allocation\[1\]\[:\]\[0\]"),
    "menu_index_float": (_changed(GOOD, "menu_index", np.array([3.0, 0.0])),
                         r"`menu_index` must be (a nested list of JSON integers; got a number at "
                         r"menu_index\[0\]|an integer tensor; got dtype float64)"),
    "menu_index_negative": (_changed(GOOD, "menu_index", np.array([0, -1])),
                            r"`menu_index` must be >= 0; got -1 at menu_index\[1\]"),
    "missing_payments": (_changed(GOOD, "payments", None),
                         r"`outputs` must be an object with .*without \['payments'\]"),
    "owners_shape": (_changed(GOOD_FAMILY, "owners", np.zeros((2, 3), np.int64)),
                     r"`owners` must be of shape \[2, 2\]; got shape \[2, 3\]"),
    "owners_range": (_changed(GOOD_FAMILY, "owners", 3, at=(0, 0)),
                     r"`owners` must be in \[-1, 2\]; got 3 at owners\[0\]\[0\]"),
    "owners_mixed": (_changed(GOOD_FAMILY, "owners", -1, at=(0, 1)),
                     r"`owners` must be all -1 \(an explicit entry\) or all >= 0"),
    "owners_wrong": (_changed(GOOD_FAMILY, "owners", np.array([[2, 1], [-1, -1]])),
                     r"`owners` must be the owners of the returned allocation; got owner 2 of "
                     r"item 0 for allocation\[0\]\[0\]\[0\] = 1.0"),
}


@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("case", sorted(OUTCOME_CASES))
def test_malformed_outcome_is_refused(canned, transport, case):
    outputs, message = OUTCOME_CASES[case]
    _answer(canned, transport, outputs)
    with _canned_client(canned, transport) as client:
        with pytest.raises(ServingError, match="malformed response from the server: " + message):
            client.predict(BIDS)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_menu_index_is_checked_against_the_menu_size_of_a_pinned_version(canned, transport):
    _answer(canned, transport, _changed(GOOD, "menu_index", np.array([4, 0])))
    _answer(canned, transport, GOOD_MENU, "menu")  # K = 4
    with _canned_client(canned, transport) as client:  # unpinned: K may change, only >= 0
        client.menu()
        assert client.menu_size is None and client.predict(BIDS)["menu_index"][0] == 4
    with _canned_client(canned, transport, version=1) as client:
        client.menu()
        assert client.menu_size == 4
        with pytest.raises(ServingError, match=r"`menu_index` must be in \[0, 4\); got 4"):
            client.predict(BIDS)


REST_CASES = {  # JSON that no numpy array produces: name -> (outputs, message)
    "payment_null": ({**GOOD, "payments": [[0.1, None], [0.5, 0.0]]},
                     r"`payments` must be a nested list of JSON numbers; got null at "
                     r"payments\[0\]\[1\]"),
    "payments_null": ({**GOOD, "payments": None}, r"`payments` .*; got null at payments$"),
    "payments_strings": ({**GOOD, "payments": [["0.1", "0.2"], ["0.5", "0"]]},
                         r"`payments` .*; got a string at payments\[0\]\[0\]"),
    "allocation_boolean": ({**GOOD, "allocation": [[[True, 0.0], [0.0, 1.0]],
                                                   [[0.5, 0.5], [0.5, 0.5]]]},
                           r"`allocation` .*; got a boolean at allocation\[0\]\[0\]\[0\]"),
    "ragged": ({**GOOD, "payments": [[0.1, 0.2], [0.5]]},
               r"`payments` must be a nested list of JSON numbers; got irregular nesting"),
    "object": ({**GOOD, "allocation": {"value": 1}}, r"`allocation` .*; got an object"),
    "huge_integer": ({**GOOD, "payments": [[10**400, 0], [0, 0]]},
                     r"`payments` must be numbers that float64 holds exactly; got the integer "
                     r"1000+ at payments\[0\]\[0\], beyond 2\*\*53"),
    "inexact_integer": ({**GOOD, "payments": [[0, 0], [2**53 + 1, 0]]},  # was rounded
                        r"`payments` .*; got the integer 9007199254740993 at payments\[1\]\[0\]"),
    "menu_index_too_big": ({**GOOD, "menu_index": [2**64, 0]},
                           r"`menu_index` must be integers that fit int64"),
}
REST_BODIES = {  # raw HTTP 200 bodies: name -> (bytes, message)
    "not_json": (b"<html>gateway</html>",
                 r"`response body` must be a JSON object; got text that is not JSON \(not valid "
                 r"JSON .*\): '<html>"),
    # Were a RecursionError escaping predict, and the last of two values silently.
    "deep": (b"[" * 100_000 + b"]" * 100_000, r"`response body` must be a JSON object; got "
                                              r"text that is not JSON \(nested too deeply"),
    "twice": (b'{"outputs": {}, "outputs": {}}', r"`response body` must be a JSON object; got "
                                                  r"text that is not JSON \(the key\(s\) "
                                                  r"\['outputs'\] appear twice"),
    "not_utf8": (b"\xff\xfe\x00", r"`response body` must be a JSON object; got text that is not"),
    "list": (b"[1, 2]", r"`response body` must be a JSON object; got a list"),
    "no_outputs": (b"{}", r"`outputs` must be an object of named outputs; got keys \[\]"),
    "outputs_null": (b'{"outputs": null}', r"`outputs` must be an object of named .*; got null"),
    "outputs_list": (b'{"outputs": [[1]]}', r"`outputs` must be an object of named .*; got a list"),
}


@pytest.mark.parametrize("case", sorted(REST_CASES) + sorted(REST_BODIES))
def test_malformed_rest_body_is_refused(canned, case):
    if case in REST_CASES:
        _answer(canned, "rest", REST_CASES[case][0])
        message = REST_CASES[case][1]
    else:
        body, message = REST_BODIES[case]
        canned["rest"].answers["serving_default"] = (200, body)
    with _canned_client(canned, "rest") as client:
        with pytest.raises(ServingError, match="malformed response from the server: " + message):
            client.predict(BIDS)


def _corrupt_tensor():
    proto = tf.make_tensor_proto(GOOD["payments"])
    proto.tensor_content = proto.tensor_content[:5]  # 5 bytes for 4 doubles
    return proto


GRPC_CASES = {  # tensors with a wrong dtype or that do not decode: name -> (outputs, message)
    "payments_float32": (_changed(GOOD, "payments", GOOD["payments"].astype(np.float32)),
                         r"`payments` must be a float64 tensor; got dtype float32"),
    "menu_index_strings": (_changed(GOOD, "menu_index", np.array([b"3", b"0"])),
                           r"`menu_index` must be an integer tensor; got dtype object"),
    "menu_index_bool": (_changed(GOOD, "menu_index", np.array([True, False])),
                        r"`menu_index` must be an integer tensor; got dtype bool"),
    "corrupt_tensor": ({**GOOD, "payments": _corrupt_tensor()},
                       r"`payments` must be a valid TensorProto; got ValueError"),
}


@pytest.mark.parametrize("case", sorted(GRPC_CASES))
def test_malformed_grpc_tensor_is_refused(canned, case):
    _answer(canned, "grpc", GRPC_CASES[case][0])
    with _canned_client(canned, "grpc") as client:
        with pytest.raises(ServingError, match="malformed response from the server: "
                           + GRPC_CASES[case][1]):
            client.predict(BIDS)


MENU_CASES = {  # name: (malformed menu, message), for both transports
    "allocation_above_one": (_changed(GOOD_MENU, "allocations", 1.25, at=(2, 0, 1)),
                             r"`allocations` must be in \[0, 1\]; got 1.25 at "
                             r"allocations\[2\]\[0\]\[1\]"),
    "allocation_nan": (_changed(GOOD_MENU, "allocations", np.nan, at=(0, 0, 0)),
                       r"`allocations` must be in \[0, 1\]; got nan"),
    "infeasible": (_changed(GOOD_MENU, "allocations", 0.75, at=(2, slice(None), 1)),
                   r"`allocations` must be feasible .*; got a sum of 1.5 at "
                   r"allocations\[2\]\[:\]\[1\]"),
    "boost_nan": (_changed(GOOD_MENU, "boosts", np.nan, at=1),
                  r"`boosts` must be finite with \|boost\| <= 1e\+38; got nan at boosts\[1\]"),
    "boost_inf": (_changed(GOOD_MENU, "boosts", -np.inf, at=3), r"`boosts` must be finite"),
    "weight_zero": (_changed(GOOD_MENU, "bidder_weights", 0.0, at=0),
                    r"`bidder_weights` must be in \[1e-06, 1e\+06\]; got 0.0 at "
                    r"bidder_weights\[0\]"),
    "weight_huge": (_changed(GOOD_MENU, "bidder_weights", 1e7, at=1),
                    r"`bidder_weights` must be in \[1e-06, 1e\+06\]; got 10000000.0"),
    "boosts_size": (_changed(GOOD_MENU, "boosts", np.zeros(5)),
                    r"`boosts` must be of shape \[4\]; got shape \[5\]"),
    "weights_size": (_changed(GOOD_MENU, "bidder_weights", np.ones(3)),
                     r"`bidder_weights` must be of shape \[2\]; got shape \[3\]"),
    "allocations_rank": (_changed(GOOD_MENU, "allocations", np.zeros((4, 2))),
                         r"`allocations` must be of shape \[K >= 1, num_bidders, num_items\]; "
                         r"got shape \[4, 2\]"),
    "empty_menu": ({"allocations": np.zeros((0, 2, 2)), "boosts": np.zeros(0),
                    "bidder_weights": np.ones(2)}, r"`allocations` must be of shape \[K >= 1"),
    "missing_boosts": (_changed(GOOD_MENU, "boosts", None),
                       r"`outputs` must be an object with .*without \['boosts'\]"),
    "separable_nan": (_changed(GOOD_FAMILY_MENU, "separable_boosts", np.nan, at=(2, 1)),
                      r"`separable_boosts` must be finite with sum_j max_o \|c\[o, j\]\| <= "
                      r"1e\+38; got nan"),
    "separable_shape": (_changed(GOOD_FAMILY_MENU, "separable_boosts", np.zeros((2, 2))),
                        r"`separable_boosts` must be of shape \[3, 2\]; got shape \[2, 2\]"),
}


@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("case", sorted(MENU_CASES))
def test_malformed_menu_is_refused(canned, transport, case):
    _answer(canned, transport, MENU_CASES[case][0], "menu")
    with _canned_client(canned, transport) as client:
        with pytest.raises(ServingError, match="malformed response from the server: "
                           + MENU_CASES[case][1]):
            client.menu()


@pytest.mark.parametrize("body, message", [
    (b"{}", r"`model_version_status` must be a list of version states; got keys \[\]"),
    (b'{"model_version_status": "AVAILABLE"}', r"`model_version_status` .*; got a string"),
    (b"[]", r"`response body` must be a JSON object; got a list"),
], ids=["missing", "string", "list"])
def test_malformed_rest_status_is_refused(canned, body, message):
    canned["rest"].answers["GET"] = (200, body)
    with _canned_client(canned, "rest") as client:
        with pytest.raises(ServingError, match=message):
            client.status()


@pytest.mark.parametrize("body, message", [
    (b"{}", r"`metadata` must be an object with `signature_def`; got keys \[\]"),
    (b'{"metadata": {}}', r"`signature_def` must be a SignatureDefMap object; got keys \[\]"),
    (b'{"metadata": {"signature_def": {"signature_def": {"x": {"inputs": 5}}}}}',
     r"`signature_def` must be a SignatureDefMap object; got .*inputs"),
    (b'{"metadata": {"signature_def": {"signature_def": {"x": {"inputs": {"bids": {"dtype": '
     b'"DT_NOPE", "name": "b"}}}}}}}',  # was shown as DT_INVALID
     r"`signature_def` must be TensorFlow dtypes; got an unknown or invalid dtype for 'bids'"),
], ids=["no_metadata", "no_signature_def", "not_a_signature_def_map", "unknown_dtype"])
def test_malformed_rest_metadata_is_refused(canned, body, message):
    canned["rest"].answers["GET"] = (200, body)
    with _canned_client(canned, "rest") as client:
        with pytest.raises(ServingError, match=message):
            client.metadata()


def test_grpc_metadata_without_signatures_is_refused(canned):
    canned["grpc"].answers["GET"] = get_model_metadata_pb2.GetModelMetadataResponse()
    with _canned_client(canned, "grpc") as client:
        with pytest.raises(ServingError, match=r"`metadata` must be a `signature_def` entry"):
            client.metadata()


def test_rest_error_bodies_keep_the_server_message(canned):
    canned["rest"].answers["serving_default"] = (503, b"upstream connect error")
    with _canned_client(canned, "rest") as client:
        with pytest.raises(ServingError, match="upstream connect error") as raised:
            client.predict(BIDS)
        assert raised.value.status == 503
        canned["rest"].answers["serving_default"] = (400, b"[1]")
        with pytest.raises(ServingError, match=r"\[1\]") as raised:
            client.predict(BIDS)
        assert raised.value.status == 400
        # A page of HTML was the whole message, over many lines; no body said nothing.
        canned["rest"].answers["serving_default"] = (500, b"<html>\n" + b"<p>x</p>\n" * 10**5)
        with pytest.raises(ServingError, match=r"^<html> <p>x</p> .*\.\.\. \(900,007 bytes\)"
                                               r" \(status 500\)$") as raised:
            client.predict(BIDS)
        assert "\n" not in str(raised.value) and len(str(raised.value)) < 600
        canned["rest"].answers["serving_default"] = (404, b"")
        with pytest.raises(ServingError, match="HTTP 404 with an empty body"):
            client.predict(BIDS)


def test_client_arguments_are_checked():
    """A timeout of 1e10 s overflowed the thread's deadline, gRPC took port 99999999 modulo
    2**16, `version=True` asked for version 1."""
    for make, match in [
            (lambda: RestClient("http://h:1", MODEL, timeout=1e10),
             r"`timeout` must be a finite number > 0 and <= 1000000.0"),
            (lambda: GrpcClient("h:1", MODEL, timeout=1e10), r"`timeout` must be"),
            (lambda: GrpcClient("localhost:99999999", MODEL),
             r"`target` must be host:port with a port in \[1, 65535\]"),
            (lambda: RestClient("http://h:1", MODEL, version=True),
             r"`version` must be None or an int >= 1"),
            (lambda: RestClient(5, MODEL), r"`url` must be a non-empty string")]:
        with pytest.raises(ValueError, match=match):
            make()


class DrippingServer:
    """On 127.0.0.1: answers every connection with an HTTP 200 whose bytes come one every
    `delay` seconds (each read of the socket succeeds, so a per-read timeout never fires)."""

    def __init__(self, delay, body=b'{"outputs": {}}' * 50):
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        self.answer, self.delay = head % len(body) + body, delay
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self._socket.accept()
                threading.Thread(target=self._drip, args=(connection,), daemon=True).start()

    def _drip(self, connection):
        with connection, contextlib.suppress(OSError):
            connection.recv(1 << 16)
            for byte in self.answer:
                connection.sendall(bytes([byte]))
                time.sleep(self.delay)

    def close(self):
        self._socket.close()


def test_the_rest_timeout_bounds_the_whole_request():
    """requests' timeout is per read: a dripping server held a 2 s request for minutes. The
    answer here would take ~40 s; the client gives up at its timeout, saying so."""
    server = DrippingServer(delay=0.05)
    try:
        with RestClient(server.url, MODEL, timeout=0.5) as client:
            with pytest.raises(ServingError, match=r"no complete answer from TF Serving at "
                                                   r".* within the timeout of 0.5 s"):
                client.predict(BIDS)
    finally:
        server.close()
    with pytest.raises(ValueError, match=r"`timeout` must be a finite number > 0"):
        RestClient(server.url, MODEL, timeout=float("inf"))


def test_a_rest_answer_larger_than_grpcs_limit_is_refused(canned, monkeypatch):
    monkeypatch.setattr(tf_ama.serving.client, "MAX_ANSWER_BYTES", 1000)
    _answer(canned, "rest", {**GOOD, "padding": np.zeros(500)})
    with _canned_client(canned, "rest") as client:
        with pytest.raises(ServingError, match=r"`response body` must be at most 1,000 bytes \(what gRPC receives\); got more"):
            client.predict(BIDS)


_JSON = hypothesis.strategies.recursive(
    hypothesis.strategies.none() | hypothesis.strategies.booleans()
    | hypothesis.strategies.floats(allow_nan=True) | hypothesis.strategies.integers()
    | hypothesis.strategies.text(max_size=5),
    lambda inner: hypothesis.strategies.lists(inner, max_size=3)
    | hypothesis.strategies.dictionaries(hypothesis.strategies.sampled_from(
        ["outputs", "allocation", "payments", "menu_index", "owners", "error", "x"]), inner,
        max_size=4), max_leaves=12)


@hypothesis.given(body=hypothesis.strategies.one_of(
    hypothesis.strategies.binary(max_size=64),
    _JSON.map(lambda value: json.dumps(value).encode()),
    # A correct answer with one output replaced by garbage.
    hypothesis.strategies.tuples(hypothesis.strategies.sampled_from(sorted(GOOD)), _JSON).map(
        lambda change: json.dumps({"outputs": {**{k: v.tolist() for k, v in GOOD.items()},
                                               change[0]: change[1]}}).encode())))
@hypothesis.settings(max_examples=60, deadline=None)
@pytest.mark.slow
def test_any_rest_answer_is_a_checked_outcome_or_one_line_refusal(canned, body):
    """The one contract for a server's answers: a ServingError of one line, or an outcome
    that passed every check (feasible allocations, IR payments, menu indices in range)."""
    canned["rest"].answers["serving_default"] = (200, body)
    with _canned_client(canned, "rest") as client:
        try:
            outcome = client.predict(BIDS)
        except ServingError as error:
            assert "\n" not in str(error) and str(error)
            return
    values = np.sum(outcome["allocation"] * BIDS, axis=2)
    assert np.all(outcome["payments"] >= 0) and np.all(outcome["payments"] <= values)
    assert outcome["allocation"].dtype == np.float64 and outcome["menu_index"].dtype == np.int64


# ----------------------------------------------------------------------------------- TLS
def _openssl_certificate(folder, name):
    """A self-signed P-256 certificate for 127.0.0.1: (key path, certificate path)."""
    key, certificate = folder / f"{name}.key", folder / f"{name}.pem"
    subprocess.run([
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(key), "-out", str(certificate), "-days", "2",
        "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    return key, certificate


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """Three self-signed certificates (server, client, an unrelated CA) and two TLS servers
    on 127.0.0.1: one plain TLS, one that requires a client certificate (mutual TLS)."""
    if shutil.which("openssl") is None:
        pytest.skip("the `openssl` command is needed to make test certificates; not on PATH")
    folder = tmp_path_factory.mktemp("tls")
    made = {name: _openssl_certificate(folder, name) for name in ("server", "client", "other")}
    server_pair = [(made["server"][0].read_bytes(), made["server"][1].read_bytes())]
    plain = CannedGrpcServer(grpc.ssl_server_credentials(server_pair))
    mutual = CannedGrpcServer(grpc.ssl_server_credentials(
        server_pair, root_certificates=made["client"][1].read_bytes(),
        require_client_auth=True))
    for server in (plain, mutual):
        _answer({"grpc": server}, "grpc", GOOD)
    with plain, mutual:
        yield {"plain": plain.target, "mutual": mutual.target, **made}


def _assert_good(outcome):
    for key in OUTPUTS:
        assert np.array_equal(outcome[key], GOOD[key]), key


def test_grpc_over_tls(tls):
    ca_path = tls["server"][1]
    with GrpcClient(tls["plain"], MODEL, root_certificates=ca_path) as client:  # a path
        assert client.tls
        _assert_good(client.predict(BIDS))
    with GrpcClient(tls["plain"], MODEL, root_certificates=ca_path.read_bytes()) as client:
        _assert_good(client.predict(BIDS))
    with GrpcClient(tls["plain"], MODEL, credentials=grpc.ssl_channel_credentials(
            ca_path.read_bytes())) as client:
        _assert_good(client.predict(BIDS))
    refused = {
        "plaintext": {}, "wrong CA": {"root_certificates": str(tls["other"][1])},
        "default roots": {"tls": True}}
    for name, arguments in refused.items():
        with GrpcClient(tls["plain"], MODEL, timeout=5, **arguments) as client:
            with pytest.raises(ServingError) as raised:
                client.predict(BIDS)
            assert raised.value.status == "UNAVAILABLE", name


def test_grpc_mutual_tls(tls):
    ca = tls["server"][1]
    client_key, client_certificate = tls["client"]
    with GrpcClient(tls["mutual"], MODEL, root_certificates=ca, private_key=client_key,
                    certificate_chain=client_certificate) as client:
        _assert_good(client.predict(BIDS))
    wrong_key, wrong_certificate = tls["other"]
    for arguments in ({}, {"private_key": wrong_key, "certificate_chain": wrong_certificate}):
        with GrpcClient(tls["mutual"], MODEL, root_certificates=ca, timeout=5,
                        **arguments) as client:
            with pytest.raises(ServingError) as raised:
                client.predict(BIDS)
            assert raised.value.status == "UNAVAILABLE"


def test_tls_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="needs both `private_key` and `certificate_chain`"):
        GrpcClient("127.0.0.1:1", MODEL, private_key=b"key")
    with pytest.raises(ValueError, match=r"either `credentials` or \['root_certificates'\]"):
        GrpcClient("127.0.0.1:1", MODEL, root_certificates=b"ca",
                   credentials=grpc.ssl_channel_credentials())
    missing = tmp_path / "missing.pem"
    with pytest.raises(ValueError, match=r"`root_certificates` .*missing.pem.: cannot be read"):
        GrpcClient("127.0.0.1:1", MODEL, root_certificates=missing)
    with pytest.raises(TypeError, match="`root_certificates` must be PEM bytes or a file path"):
        GrpcClient("127.0.0.1:1", MODEL, root_certificates=123)
    with GrpcClient("127.0.0.1:1", MODEL) as client:
        assert not client.tls


def test_command_line_tls(tls, capsys):
    bids = json.dumps(BIDS.tolist())
    assert main(["--grpc", tls["plain"], "--model", MODEL, "--tls-ca", str(tls["server"][1]),
                 "--bids", bids]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {key: value.tolist() for key, value in GOOD.items()}
    assert main(["--grpc", tls["mutual"], "--model", MODEL, "--tls-ca", str(tls["server"][1]),
                 "--tls-cert", str(tls["client"][1]), "--tls-key", str(tls["client"][0]),
                 "--bids", bids, "--timeout", "5"]) == 0
    capsys.readouterr()
    assert main(["--grpc", tls["plain"], "--model", MODEL, "--bids", bids, "--timeout",
                 "5"]) == 2  # plaintext to a TLS server
    assert "UNAVAILABLE" in capsys.readouterr().err
    assert main(["--rest", "http://127.0.0.1:1", "--model", MODEL, "--tls-ca", "ca.pem",
                 "--menu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tf-ama query: error: --tls* options are for --grpc; for REST use an "
                          "https:// URL") and err.count("\n") == 1, err


# ------------------------------------------------------------------ real TensorFlow Serving
def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(shutil.which("tensorflow_model_server") is None,
                    reason="tensorflow_model_server is not on PATH (not installable on the "
                           "development machine, docs/design.md §6); see serving/README.md")
def test_real_tensorflow_model_server(deployment, tmp_path):
    grpc_port, rest_port = _free_port(), _free_port()
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([
        "tensorflow_model_server", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
        f"--model_name={MODEL}", f"--model_base_path={deployment['base']}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        rest = RestClient(f"http://127.0.0.1:{rest_port}", MODEL, timeout=10)
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(ServingError, KeyError):
                if any(s["state"] == "AVAILABLE" for s in rest.status()):
                    break
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "TF Serving not ready after 120 s"
            time.sleep(0.5)
        menu = deployment["model"].menu(tf.float64)
        # gRPC carries float64 bits unchanged; REST bids with few digits parse exactly.
        bids = _bids(300, seed=7)
        with GrpcClient(f"127.0.0.1:{grpc_port}", MODEL) as client:
            outcome = client.predict(bids)
            expected = exact_outcome(bids, *menu)
            for key in OUTPUTS:
                assert np.array_equal(outcome[key], expected[key].numpy()), key
            metadata = client.metadata()["serving_default"]
            assert metadata["inputs"]["bids"] == ("DT_DOUBLE", [-1, 2, 2])
            for key, value in zip(("allocations", "boosts", "bidder_weights"),
                                  deployment["model"].exact_menu()):
                assert np.array_equal(client.menu()[key], value)
        rounded = np.round(bids, 6)
        outcome = rest.predict(rounded)
        expected = exact_outcome(rounded, *menu)
        for key in OUTPUTS:
            assert np.array_equal(outcome[key], expected[key].numpy()), key
        with pytest.raises(ServingError, match="must be finite"):
            rest.predict(np.full((1, 2, 2), np.nan), validate=False)
        rest.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
