"""Peak memory of one function instance for the worst request bodies we know of.

Each body is sent to a fresh functions-framework process (so peaks do not mix),
within MAX_BODY_BYTES (10 MiB); the figure is the worker's VmHWM (peak RSS).

Usage: `.venv/bin/python bench/hostile_bodies.py [--source function/main.py]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 10 * 1024 * 1024 - 64  # just inside MAX_BODY_BYTES with its wrapper


def _fill(head: bytes, unit: bytes, last: bytes, tail: bytes) -> bytes:
    count = (LIMIT - len(head) - len(tail) - len(last)) // len(unit)
    return head + unit * count + last + tail


BODIES = {
    "seed request": json.dumps({"features": [0.1] * 10}).encode(),
    "empty lists as one row's values": _fill(b'{"features": [', b"[],", b"[]", b"]}"),
    "empty lists as rows": _fill(b'{"instances": [', b"[],", b"[]", b"]}"),
    "empty objects as rows": _fill(b'{"instances": [', b"{},", b"{}", b"]}"),
    "one row of 0s": _fill(b'{"features": [', b"0,", b"0", b"]}"),
    "one row of floats": _fill(b'{"features": [', b"1.5,", b"1.5", b"]}"),
    "one long string": _fill(b'{"features": ["', b"a", b"", b'"]}'),
    "many short keys": _fill(b'{"features": {', b'"a":0,', b'"b":0', b"}}"),
}


def _worker_peak_kib(parent: int) -> int:
    """VmHWM of the gunicorn worker (the child of the arbiter), in KiB."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    peaks = []
    for pid in [parent, *map(int, children)]:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]))
    return max(peaks)


def measure(source: Path, store: str, body: bytes) -> tuple[int, int]:
    """(status, worker peak MiB) of one fresh instance answering `body`."""
    port = 18000 + os.getpid() % 1000
    env = {**os.environ, "MODEL_URI": store, "PYTHONPATH": str(source.parent)}
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "functions-framework"),
            "--source",
            str(source),
            "--target",
            "predict",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                # Load the model first: its memory is not the body's.
                if requests.get(url + "/metadata", timeout=30).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        status = requests.post(
            url + "/predict",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=120,
        ).status_code
        return status, _worker_peak_kib(process.pid) // 1024
    finally:
        process.terminate()
        process.wait(timeout=20)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=ROOT / "function" / "main.py")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "train", "--store", tmp, "--name", "bench"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        print("| body | bytes | status | worker peak RSS (MiB) |")
        print("|---|---:|---:|---:|")
        for name, body in BODIES.items():
            status, peak = measure(args.source.resolve(), f"{tmp}/bench", body)
            print(f"| {name} | {len(body):,} | {status} | {peak} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
