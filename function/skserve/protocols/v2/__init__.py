"""Protocol v2, the Open Inference Protocol (KServe V2 / Triton HTTP) under /v2:
`codec` reads requests and writes answers, `endpoints` routes them."""

from __future__ import annotations

from skserve.protocols.v2.codec import (
    DATATYPES,
    DECISION_FUNCTION,
    HEADER_LENGTH,
    INPUT_NAME,
    OUTPUTS,
    PREDICT,
    PREDICT_PROBA,
    InferRequest,
    RequestedOutput,
    Tensor,
    accepted_types,
    columnar,
    decode_infer,
    encode_output,
    infer_response,
    input_tensors,
    label_type,
    split_body,
    table_of,
)
from skserve.protocols.v2.endpoints import V2Protocol, output_tensors, server_version

# Its public home, where the registry (skserve.protocols.PROTOCOLS) finds it.
V2Protocol.__module__ = __name__

__all__ = [
    "DATATYPES",
    "DECISION_FUNCTION",
    "HEADER_LENGTH",
    "INPUT_NAME",
    "OUTPUTS",
    "PREDICT",
    "PREDICT_PROBA",
    "InferRequest",
    "RequestedOutput",
    "Tensor",
    "V2Protocol",
    "accepted_types",
    "columnar",
    "decode_infer",
    "encode_output",
    "infer_response",
    "input_tensors",
    "label_type",
    "output_tensors",
    "server_version",
    "split_body",
    "table_of",
]
