"""`GrpcClient`: an auction served by TensorFlow Serving, over gRPC (port 8500), with TLS if
asked; the same methods, checks and errors as `tf_ama.serving.client.RestClient` (that
module's doc), and float64 bits carried unchanged.
"""

from __future__ import annotations

import os

import numpy as np

from tf_ama.serving.checks import (MENU_SIGNATURE, SERVING_SIGNATURE, ServingError, check_menu,
                                   check_outcome, malformed)
from tf_ama.serving.client import (MAX_ANSWER_BYTES, ClientBase, check_bids, checked_arguments,
                                   request_contexts, sent_bids, simplify_signatures)
from tf_ama.utils import checks
from tf_ama.utils.files import read_bytes


class GrpcClient(ClientBase):
    """TF Serving's gRPC PredictionService (`Predict`, `GetModelMetadata`), in plaintext or TLS.

    Args:
      target: `host:port`, e.g. `localhost:8500`.
      model_name, version, timeout: as for `RestClient`.
      tls: True for TLS with gRPC's default root certificates. Implied by any of the next four.
      root_certificates, private_key, certificate_chain: as for
        `grpc.ssl_channel_credentials`: PEM bytes, a PEM string, or a file path. The CA that
        signed the server's certificate (None: gRPC's default roots); `private_key` and
        `certificate_chain` together for mutual TLS (a client certificate).
      credentials: a `grpc.ChannelCredentials` instead (e.g. `grpc.ssl_channel_credentials(...)`
        composed with call credentials); not together with the three PEM arguments.

    The server's certificate must name the host in `target` (gRPC checks it). A TLS or
    certificate failure surfaces as `ServingError` with status `UNAVAILABLE`.
    """

    def __init__(self, target, model_name, version=None, timeout=30.0, *, tls=False,
                 root_certificates=None, private_key=None, certificate_chain=None,
                 credentials=None):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        pems = {name: _pem(name, value) for name, value in (
            ("root_certificates", root_certificates), ("private_key", private_key),
            ("certificate_chain", certificate_chain))}
        given = [name for name, value in pems.items() if value is not None]
        if credentials is not None and given:
            raise ValueError(f"pass either `credentials` or {given}, not both: put the "
                             "certificates into the credentials.")
        if (pems["private_key"] is None) != (pems["certificate_chain"] is None):
            raise ValueError("mutual TLS needs both `private_key` and `certificate_chain` (the "
                             "client's key and certificate); pass both or neither.")
        if credentials is None and (tls or given):
            credentials = grpc.ssl_channel_credentials(**pems)
        self.target = _checked_target(target)
        self.model_name, self.version, self.timeout = checked_arguments(model_name, version, timeout)
        self.tls = credentials is not None
        options = [("grpc.max_receive_message_length", MAX_ANSWER_BYTES),
                   ("grpc.max_send_message_length", MAX_ANSWER_BYTES)]
        self._channel = (grpc.secure_channel(target, credentials, options=options)
                         if self.tls else grpc.insecure_channel(target, options=options))
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def _model_spec(self, spec, signature_name=None):
        spec.name = self.model_name
        if signature_name is not None:
            spec.signature_name = signature_name
        if self.version is not None:
            spec.version.value = int(self.version)

    def _call(self, method, request):
        import grpc

        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise ServingError(error.details() or str(error), status=error.code().name) from None

    def predict_raw(self, inputs, signature_name=SERVING_SIGNATURE):
        """Sends `inputs` (name -> TensorProto); returns the outputs as numpy arrays (not
        checked; a tensor that cannot be decoded raises `ServingError`)."""
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, signature_name)
        for name, proto in inputs.items():
            request.inputs[name].CopyFrom(proto)
        response = self._call(self._stub.Predict, request)
        outputs = {}
        for key, proto in response.outputs.items():
            try:
                outputs[key] = tf.make_ndarray(proto)
            except Exception as error:  # a corrupt TensorProto: TypeError, ValueError, ...
                raise malformed(key, "a valid TensorProto", f"{type(error).__name__}: {error}")
        return outputs

    def predict(self, bids, validate=True, bidder_context=None, item_context=None):
        """As `RestClient.predict`; float64 bits travel unchanged."""
        import tensorflow as tf

        if validate:
            bids = check_bids(bids)
            proto = tf.make_tensor_proto(bids, dtype=tf.float64)
        else:
            proto = tf.make_tensor_proto(np.asarray(bids))  # sent as is: the server checks
        inputs = {"bids": proto, **{
            name: tf.make_tensor_proto(value) for name, value in request_contexts(
                np.asarray(bids), bidder_context, item_context, validate).items()}}
        return check_outcome(self.predict_raw(inputs), sent_bids(bids), self.menu_size)

    def menu(self):
        """As `RestClient.menu`."""
        import tensorflow as tf

        outputs = self.predict_raw({"dummy": tf.make_tensor_proto(0, dtype=tf.int32)},
                                   signature_name=MENU_SIGNATURE)
        return self._remember_menu(check_menu(outputs))

    def metadata(self):
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._model_spec(request.model_spec)
        request.metadata_field.append("signature_def")
        response = self._call(self._stub.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        if "signature_def" not in response.metadata or not response.metadata[
                "signature_def"].Unpack(signature_map):
            raise malformed("metadata", "a `signature_def` entry holding a SignatureDefMap",
                            f"entries {sorted(response.metadata)}")
        return simplify_signatures(signature_map)

    def close(self):
        self._channel.close()


def _checked_target(target):
    """`host:port` with a port in [1, 65535] (gRPC would take 99999999 modulo 2**16)."""
    host, _, port = checks.string("target", target).rpartition(":")
    if not host or not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"`target` must be host:port with a port in [1, 65535]; got "
                         f"{target!r}.")
    return target


def _pem(name, value):
    """PEM bytes from bytes, a PEM string or a file path (None stays None)."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"`{name}` must be PEM bytes or a file path; got {type(value).__name__}.")
    return read_bytes(value, f"`{name}` {os.fspath(value)!r}")
