"""The gRPC server the grpc tests call: grpcio serving lab.v1.Lab (see
lab.proto) with server reflection, on 127.0.0.1:PORT, h2c.

    lab_server.py PORT CALL_LOG DESCRIPTOR_SET_OUT

It compiles lab.proto at start (grpcio-tools), writes the compiled
FileDescriptorSet (imports included) to DESCRIPTOR_SET_OUT, and appends one
JSON line per call to CALL_LOG: the method, each request message as the
proto3 JSON mapping writes it, the `x-` metadata and whether a deadline came.
"""

import importlib
import json
import os
import sys
import threading
import time
from concurrent import futures

import grpc
from google.protobuf import json_format
from grpc_reflection.v1alpha import reflection
from grpc_tools import protoc
import grpc_tools

HERE = os.path.dirname(os.path.abspath(__file__))
port, call_log, descriptor_out = sys.argv[1], sys.argv[2], sys.argv[3]

# Generated code goes beside the descriptor set, in the test's own directory.
out = os.path.dirname(os.path.abspath(descriptor_out))
include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
status = protoc.main([
    "protoc", f"-I{HERE}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}",
    f"--descriptor_set_out={descriptor_out}", "--include_imports", os.path.join(HERE, "lab.proto"),
])
if status != 0:
    sys.exit(f"protoc failed ({status})")
sys.path.insert(0, out)
lab_pb2 = importlib.import_module("lab_pb2")
lab_pb2_grpc = importlib.import_module("lab_pb2_grpc")

lock = threading.Lock()


def log(method, context, requests):
    entry = {
        "method": method,
        "requests": [json.loads(json_format.MessageToJson(r)) for r in requests],
        "metadata": {k: v for k, v in context.invocation_metadata() if k.startswith("x-")},
        "deadline": context.time_remaining() is not None,
    }
    with lock, open(call_log, "a") as f:
        f.write(json.dumps(entry) + "\n")


class Lab(lab_pb2_grpc.LabServicer):
    def Echo(self, request, context):
        log("Echo", context, [request])
        return request

    def ListItems(self, request, context):
        log("ListItems", context, [request])
        size = request.page_size or 2
        start = _token(request.page_token, context)
        end = min(start + size, request.count)
        items = [lab_pb2.Item(id=i, name=f"item-{i}") for i in range(start + 1, end + 1)]
        token = str(end) if end < request.count else ""
        return lab_pb2.ListResponse(items=items, next_page_token=token)

    def Count(self, request, context):
        log("Count", context, [request])
        after = _token(request.page_token, context)
        for i in range(after + 1, request.count + 1):
            if i > after + 1 and request.delay_ms:
                time.sleep(request.delay_ms / 1000)
            yield lab_pb2.Item(id=i, name=f"item-{i}")

    def Collect(self, request_iterator, context):
        items = list(request_iterator)
        log("Collect", context, items)
        return lab_pb2.Summary(count=len(items), total=sum(i.id for i in items), names=[i.name for i in items])

    def Fail(self, request, context):
        log("Fail", context, [request])
        if request.code == 0:
            return lab_pb2.Shape(name=request.message)
        context.abort(_code(request.code), request.message)

    def Big(self, request, context):
        log("Big", context, [request])
        return lab_pb2.Blob(data=b"x" * request.bytes)


def _token(text, context):
    """A page token this server issued (a number), or INVALID_ARGUMENT as AIP-158 asks."""
    if not text:
        return 0
    if not text.isdigit():
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"page token {text!r} was not issued here")
    return int(text)


def _code(number):
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code
    raise ValueError(number)


server = grpc.server(
    futures.ThreadPoolExecutor(max_workers=8),
    options=[("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)],
)
lab_pb2_grpc.add_LabServicer_to_server(Lab(), server)
reflection.enable_server_reflection(
    (lab_pb2.DESCRIPTOR.services_by_name["Lab"].full_name, reflection.SERVICE_NAME), server
)
server.add_insecure_port(f"127.0.0.1:{port}")
server.start()
server.wait_for_termination()
