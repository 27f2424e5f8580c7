"""Generate the Python modules for hopbench.proto.

    python -m hopbench.proto.generate [OUT_ROOT]

Compiles ``proto/hopbench.proto`` (top level of the checkout: the contract is
language-neutral) into hopbench_pb2.py, hopbench_pb2.pyi and hopbench_pb2_grpc.py
in this package (or under OUT_ROOT/hopbench/proto, which the staleness test uses). The
generated files are committed; tests/test_proto.py fails when they are stale.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent  # where the generated modules live
PACKAGE_ROOT = PROTO_DIR.parent.parent  # the folder that holds the hopbench package
SOURCE = PACKAGE_ROOT / "proto" / "hopbench.proto"
PROTO_FILE = "hopbench/proto/hopbench.proto"
GENERATED = ("hopbench_pb2.py", "hopbench_pb2.pyi", "hopbench_pb2_grpc.py")


def generate(out_root: Path) -> list[Path]:
    """Run protoc into out_root/hopbench/proto and return the files written."""
    from grpc_tools import protoc  # dev dependency: only generation needs it

    out_dir = out_root / "hopbench" / "proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as include_root:
        # Compile from a copy so protoc sees the import path hopbench/proto/... (the
        # path is part of the descriptor: keep it, or every reader's registry changes)
        staged = Path(include_root) / PROTO_FILE
        staged.parent.mkdir(parents=True)
        shutil.copy(SOURCE, staged)
        grpc_include = Path(protoc.__file__).parent / "_proto"
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{include_root}",
                f"-I{grpc_include}",
                f"--python_out={out_root}",
                f"--pyi_out={out_root}",
                f"--grpc_python_out={out_root}",
                str(staged),
            ]
        )
    if status != 0:
        raise SystemExit(f"protoc failed with status {status}")
    return [out_dir / name for name in GENERATED]


def main() -> None:
    out_root = Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE_ROOT
    for path in generate(out_root):
        print(path)


if __name__ == "__main__":
    main()
