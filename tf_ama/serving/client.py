"""Clients for an auction served by TensorFlow Serving: REST (port 8501, `RestClient`, here)
and gRPC (port 8500, `tf_ama.serving.grpc_client.GrpcClient`).

    client = RestClient("http://localhost:8501", "additive_2x2_uniform")
    outcome = client.predict([[[0.5, 0.2], [0.3, 0.9]]])   # one profile, [1, 2, 2]
    outcome["allocation"], outcome["payments"], outcome["menu_index"]   # numpy
    client.menu()       # {"allocations": [K, m, n], "boosts": [K], "bidder_weights": [m]}
    client.metadata()   # {signature: {"inputs": {name: (dtype, shape)}, "outputs": {...}}}

    client = GrpcClient("localhost:8500", "additive_2x2_uniform")   # same methods
    client = GrpcClient("auction.example.com:443", "additive_2x2_uniform",
                        root_certificates="ca.pem")                    # TLS

Both speak TF Serving's Predict API to the signatures written by `tf_ama.serving.export`
(`serving_default`: `bids` float64 `[batch, num_bidders, num_items]` -> `allocation`
`[batch, num_bidders, num_items]`, `payments` `[batch, num_bidders]`, `menu_index` int64
`[batch]`; `menu`: scalar `dummy` -> the menu). Bids are checked here first (float64, finite,
<= MAX_BID, rank 3) and again by the server; a refusal by the server raises `ServingError` with
the server's message.

Every answer is checked against the request before it is returned (`tf_ama.serving.checks`):
shapes match the bids sent, dtypes are exact, allocations lie in [0, 1] and are feasible,
payments are finite, >= 0 and at most the bidder's value for the allocation, `menu_index` is an
integer in range. A malformed answer, or a body that is not what TF Serving sends, raises
`ServingError` naming the field, what was expected and what came back.

Exactness: gRPC carries float64 bits unchanged. REST carries decimal JSON: outputs are written
so that they parse back exactly, but TF Serving parses request numbers without rapidjson's
full-precision flag, so a bid written with 16-17 significant digits may reach the model 1 ulp
off. Use gRPC, or bids with at most 15 significant digits, when bit-exact inputs matter.
"""

from __future__ import annotations

import json
import threading

import numpy as np

from tf_ama.core.exactness import MAX_BID, real_array
from tf_ama.serving.checks import (MENU_SIGNATURE, SERVING_SIGNATURE, ServingError, check_menu,
                                   check_outcome, json_type, malformed)
from tf_ama.utils import checks
from tf_ama.utils.files import parse_json

# The longest timeout, in seconds (11.6 days); threads' and gRPC's deadlines overflow far
# beyond (1e10 s was an OverflowError).
MAX_TIMEOUT = 1e6
# The largest answer either client reads (gRPC's grpc.max_receive_message_length below).
MAX_ANSWER_BYTES = 256 << 20


def request_contexts(bids, bidder_context, item_context, validate):
    """`{name: float64 array}` of the contexts given (both or neither), checked like bids
    (finite, `[batch, m, d_x]` and `[batch, n, d_y]` matching `bids`) if `validate`."""
    if (bidder_context is None) != (item_context is None):
        raise ValueError("Give both `bidder_context` and `item_context` (a contextual model), "
                         "or neither.")
    if bidder_context is None:
        return {}
    contexts = {}
    for name, value, axis in (("bidder_context", bidder_context, 1),
                              ("item_context", item_context, 2)):
        array = (np.asarray(value) if isinstance(value, np.ndarray) or hasattr(value, "numpy")
                 else real_array(value, name).astype(np.float64))
        if validate:
            if array.dtype != np.float64:
                raise TypeError(f"`{name}` must be float64; got {array.dtype}.")
            if array.ndim != 3 or array.shape[0] != bids.shape[0] or (
                    array.shape[1] != bids.shape[axis]):
                raise ValueError(f"`{name}` must have shape [batch={bids.shape[0]}, "
                                 f"{'num_bidders' if axis == 1 else 'num_items'}="
                                 f"{bids.shape[axis]}, features]; got {list(array.shape)}.")
            if not np.all(np.isfinite(array)):
                raise ValueError(f"`{name}` must be finite (no NaN or inf).")
        contexts[name] = array
    return contexts


def check_bids(bids, num_bidders=None, num_items=None) -> np.ndarray:
    """Bids as a float64 array `[batch, num_bidders, num_items]`, or a ValueError / TypeError.

    Nested lists of numbers are converted to float64; arrays must already be float64 (a
    float32 array would be a different, rounded auction: cast it yourself). Values must be
    finite, >= 0 and <= `tf_ama.core.exactness.MAX_BID` (the server refuses larger bids too).
    """
    if isinstance(bids, np.ndarray) or hasattr(bids, "numpy"):
        array = np.asarray(bids)
        if array.dtype != np.float64:
            raise TypeError(
                f"`bids` must be float64 (the served outcome is exact float64); got "
                f"{array.dtype}. Cast it first: bids.astype(np.float64).")
    else:  # nested lists: real numbers only (no True, "0.25" or 2**53 + 1 coerced)
        array = real_array(bids, "bids").astype(np.float64)
    expected = (f"[batch, num_bidders{'=' + str(num_bidders) if num_bidders else ''}, "
                f"num_items{'=' + str(num_items) if num_items else ''}]")
    if array.ndim != 3:
        raise ValueError(
            f"`bids` must have shape {expected}; got shape {list(array.shape)}. A single "
            "profile needs a leading batch axis: [[[...], [...]]].")
    if (num_bidders is not None and array.shape[1] != num_bidders) or (
            num_items is not None and array.shape[2] != num_items):
        raise ValueError(f"`bids` must have shape {expected}; got shape {list(array.shape)}.")
    if not np.all(np.isfinite(array)):
        raise ValueError("`bids` must be finite (no NaN or inf).")
    if np.any(array < 0):
        raise ValueError("`bids` must be >= 0 (negative bid).")
    if np.any(array > MAX_BID):
        raise ValueError(
            f"`bids` must be <= {MAX_BID:g} (tf_ama.core.exactness.MAX_BID, the largest bid the "
            f"served outcome is exact for); got {array.max():g}.")
    return array


def sent_bids(bids):
    """The bids as sent, float64 `[batch, m, n]`, to check the answer against (with
    `validate=False` they may be anything: an answer to a malformed request is malformed)."""
    try:
        array = np.asarray(bids, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim != 3:
        raise ServingError("the server answered bids that are not numbers [batch, num_bidders, "
                           "num_items]; it should have refused them")
    return array


def simplify_signatures(signature_def_map):
    """`{name: {"inputs": {key: (dtype, shape)}, "outputs": {...}, "method_name": ...}}`
    from a `SignatureDefMap` proto; shape is a list with -1 for unknown dimensions (None for
    unknown rank); dtype a TF name such as "DT_DOUBLE"."""
    from tensorflow.core.framework import types_pb2

    def describe(info):
        shape = None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim]
        return types_pb2.DataType.Name(info.dtype), shape

    return {
        name: {
            "inputs": {key: describe(info) for key, info in sig.inputs.items()},
            "outputs": {key: describe(info) for key, info in sig.outputs.items()},
            "method_name": sig.method_name,
        }
        for name, sig in signature_def_map.signature_def.items()
        if not name.startswith("__")
    }


class ClientBase:
    """`with Client(...) as client:` closes the connection at the end.

    `menu_size` is the number of menu entries once `menu()` has been read from a pinned
    `version` (K, plus the (m + 1)^n of the item-separable family if the menu has it);
    `predict` then also checks `menu_index` below it (without a pinned version, a rollout may
    change the menu between calls).
    """

    menu_size = None

    def _remember_menu(self, menu):
        if self.version is not None:
            size, num_bidders, num_items = menu["allocations"].shape
            if "separable_boosts" in menu:  # the family's entries follow the explicit ones
                size += (num_bidders + 1) ** num_items
            self.menu_size = size
        return menu

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RestClient(ClientBase):
    """TF Serving's REST API: `POST {url}/v1/models/{model}[/versions/{v}]:predict`.

    Args:
      url: e.g. `http://localhost:8501`.
      model_name: the served model's name (`MODEL_NAME` / models.config `name`).
      version: a version number, or None for the version the server picks (the latest).
      timeout: seconds per request, from sending it to the answer's last byte.
    """

    def __init__(self, url, model_name, version=None, timeout=30.0):
        import requests

        self.url = checks.string("url", url).rstrip("/")
        self.model_name, self.version, self.timeout = checked_arguments(model_name, version, timeout)
        self._session = requests.Session()

    def _model_url(self):
        version = f"/versions/{int(self.version)}" if self.version is not None else ""
        return f"{self.url}/v1/models/{self.model_name}{version}"

    def _request(self, method, url, payload=None):
        # json.dumps writes NaN / Infinity, which TF Serving parses (and then refuses).
        data = None if payload is None else json.dumps(payload)
        status, content, body, problem = self._exchange(method, url, data)
        if status != 200:
            message = content.decode("utf-8", "replace") if body is _NOT_JSON else body
            if isinstance(body, dict) and "error" in body:
                message = body["error"]
            message = " ".join(str(message).split())  # one line, e.g. of an HTML page
            if len(message) > 500:
                message = f"{message[:500]}... ({len(content):,} bytes)"
            raise ServingError(message or f"HTTP {status} with an empty body", status=status)
        if body is _NOT_JSON:
            raise malformed("response body", "a JSON object", f"text that is not JSON ("
                            f"{problem}): {content[:200].decode('utf-8', 'replace')!r}")
        if not isinstance(body, dict):
            raise malformed("response body", "a JSON object", json_type(body))
        if "error" in body:
            raise ServingError(str(body["error"]), status=status)
        return body

    def _exchange(self, method, url, data):
        """`(status, body bytes, parsed body or _NOT_JSON, why not)` of one HTTP request,
        received and parsed within `timeout` seconds in all.

        requests' timeout bounds each read of the socket, not the whole answer: a server
        that sends a byte now and then would hold the caller for ever. So the request runs
        in a worker thread that the caller waits for at most `timeout` seconds; a worker
        left behind stops at its next read and closes its connection (its session is not
        used again). A body beyond `MAX_ANSWER_BYTES` is refused as gRPC refuses one."""
        import requests

        session, cancelled, result = self._session, threading.Event(), {}

        def exchange():
            try:
                with session.request(method, url, data=data, timeout=self.timeout, stream=True,
                                     headers={"Content-Type": "application/json"}
                                     if data is not None else None) as response:
                    content = bytearray()
                    for chunk in response.iter_content(1 << 16):
                        content += chunk
                        if cancelled.is_set() or len(content) > MAX_ANSWER_BYTES:
                            break
                    status, content = response.status_code, bytes(content)
                if len(content) <= MAX_ANSWER_BYTES:
                    try:
                        body, problem = parse_json(content, "response body"), None
                    except ValueError as error:  # not JSON or UTF-8, too deep, a key twice
                        body, problem = _NOT_JSON, str(error).split(": ", 1)[1].rstrip(".")
                    result["answer"] = status, content, body, problem
                else:
                    result["answer"] = status, content, _NOT_JSON, None
            except requests.RequestException as error:
                result["error"] = error
            finally:
                if cancelled.is_set():
                    session.close()

        worker = threading.Thread(target=exchange, name="tf_ama.RestClient", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():
            cancelled.set()
            self._session = requests.Session()  # the worker's may still be in use
            raise ServingError(f"no complete answer from TF Serving at {self.url} within the "
                               f"timeout of {self.timeout:g} s")
        if "error" in result:
            raise ServingError(f"cannot reach TF Serving at {self.url}: {result['error']}")
        if len(result["answer"][1]) > MAX_ANSWER_BYTES:
            raise malformed("response body", f"at most {MAX_ANSWER_BYTES:,} bytes (what gRPC "
                            "receives)", "more")
        return result["answer"]

    def predict_raw(self, inputs, signature_name=SERVING_SIGNATURE):
        """POSTs `{"signature_name": ..., "inputs": inputs}` (columnar); returns `outputs`."""
        body = self._request("POST", self._model_url() + ":predict",
                             {"signature_name": signature_name, "inputs": inputs})
        return answer_field(body, "outputs", dict, "an object of named outputs")

    def predict(self, bids, validate=True, bidder_context=None, item_context=None):
        """The exact outcome of `bids` `[batch, m, n]`: numpy `allocation` float64
        `[batch, m, n]`, `payments` float64 `[batch, m]`, `menu_index` int64 `[batch]`.
        A contextual model (`tf_ama.ContextualAuction`) needs `bidder_context` `[batch, m,
        d_x]` and `item_context` `[batch, n, d_y]` too (float64 or nested lists).
        `validate=False` skips the client-side check of the bids (the server still checks).
        The answer is always checked (`tf_ama.serving.checks.check_outcome`): `ServingError`
        if it is malformed."""
        if validate:
            bids = check_bids(bids)
        bids = np.asarray(bids)
        inputs = {"bids": bids.tolist(), **{
            name: value.tolist() for name, value in request_contexts(
                bids, bidder_context, item_context, validate).items()}}
        outputs = self.predict_raw(inputs)
        return check_outcome(outputs, sent_bids(bids), self.menu_size)

    def menu(self):
        """The served menu: `allocations` `[K, m, n]`, `boosts` `[K]`, `bidder_weights` `[m]`,
        float64, checked (`tf_ama.serving.checks.check_menu`)."""
        outputs = self.predict_raw({"dummy": 0}, signature_name=MENU_SIGNATURE)
        return self._remember_menu(check_menu(outputs))

    def metadata(self):
        """The signatures of the served model (see `simplify_signatures`)."""
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        body = self._request("GET", self._model_url() + "/metadata")
        metadata = answer_field(body, "metadata", dict, "an object with `signature_def`")
        signature_def = answer_field(metadata, "signature_def", dict, "a SignatureDefMap object")
        try:
            signature_map = json_format.ParseDict(
                signature_def, get_model_metadata_pb2.SignatureDefMap(),
                ignore_unknown_fields=True)
        except json_format.ParseError as error:
            raise malformed("signature_def", "a SignatureDefMap object", str(error)) from None
        for name, signature in signature_map.signature_def.items():  # unknown names parse as 0
            for key, info in [*signature.inputs.items(), *signature.outputs.items()]:
                if info.dtype == 0 and not name.startswith("__"):  # as simplify_signatures
                    raise malformed("signature_def", "TensorFlow dtypes", f"an unknown or "
                                    f"invalid dtype for {key!r} of {name!r}")
        return simplify_signatures(signature_map)

    def status(self):
        """`GET /v1/models/{model}`: `[{"version": "1", "state": "AVAILABLE", ...}, ...]`."""
        return answer_field(self._request("GET", self._model_url()), "model_version_status",
                           list, "a list of version states")

    def close(self):
        self._session.close()


_NOT_JSON = object()


def checked_arguments(model_name, version, timeout):
    """`(model_name, version, timeout)` of a client, checked."""
    return (checks.string("model_name", model_name),
            checks.optional(checks.integer, "version", version, minimum=1,
                            maximum=checks.MAX_MODEL_VERSION),
            checks.number("timeout", timeout, above=0, maximum=MAX_TIMEOUT))


def answer_field(body, key, expected_type, expected):
    """`body[key]` if it is an `expected_type`, else a ServingError naming the key."""
    if not isinstance(body.get(key), expected_type):
        got = f"keys {sorted(body)}" if key not in body else json_type(body[key])
        raise malformed(key, expected, got)
    return body[key]


