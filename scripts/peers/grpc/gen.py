"""Generates the Python stubs of helloworld.proto (once per proto content)
and makes them importable: `import gen; pb2, pb2_grpc = gen.stubs()`."""
import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def stubs():
    proto = os.path.join(HERE, "helloworld.proto")
    digest = hashlib.sha256(open(proto, "rb").read()).hexdigest()[:12]
    out = os.path.join("/tmp", f"podtap-grpc-stubs-{digest}")
    if not os.path.exists(os.path.join(out, "helloworld_pb2_grpc.py")):
        from grpc_tools import protoc

        os.makedirs(out, exist_ok=True)
        code = protoc.main(["protoc", f"-I{HERE}", f"--python_out={out}", f"--grpc_python_out={out}", proto])
        if code != 0:
            raise SystemExit(f"protoc failed ({code})")
    sys.path.insert(0, out)
    import helloworld_pb2
    import helloworld_pb2_grpc

    return helloworld_pb2, helloworld_pb2_grpc
