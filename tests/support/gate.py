"""Shared set-up for deploy-gate and loader tests: a namespace with a trusted key, scanned pushes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from registry.client.http import MirClient
from signing.keys import PrivateKey, generate_private_key, public_key_to_pem
from tests.support.server import LiveServer

# A protocol-0 pickle that would run os.system('true') if anyone loaded it. Nobody does: it is only scanned.
MALICIOUS_PICKLE = b"cos\nsystem\n(S'true'\ntR."


def wait_scanned(client: MirClient, ref: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = client.show_version(ref)
        if version["scan_status"] not in (None, "pending"):
            return version
        time.sleep(0.3)
    raise AssertionError(f"{ref} was not scanned in time")


def safetensors_model(root: Path, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    save_file({"w": rng.standard_normal((8, 8)).astype(np.float32)}, str(root / "model-00001-of-00002.safetensors"))
    save_file({"b": rng.standard_normal((8,)).astype(np.float32)}, str(root / "model-00002-of-00002.safetensors"))
    (root / "config.json").write_text(json.dumps({"seed": seed}))
    return root


class Namespace:
    """A namespace with one trusted key, its key file on disk, and an admin client."""

    def __init__(self, server: LiveServer, tmp: Path, name: str) -> None:
        self.server, self.name = server, name
        self.key: PrivateKey = generate_private_key("ecdsa-p256")
        self.pub = tmp / f"{name}.pub"
        self.pub.write_bytes(public_key_to_pem(self.key.public_key()))
        self.client = MirClient(server.url, server.admin_token)
        self.key_id = self.client.register_key(name, self.pub.read_text(), "ci")["key_id"]
        self.registry_pub = tmp / "registry.pub"
        self.registry_pub.write_text(self.client.json("GET", "/v1/registry/key")["public_key"])

    def push(self, src: Path, ref: str, *, sign: bool = True, **extra: Any) -> dict[str, Any]:
        self.client.push(src, ref, sign_with=self.key if sign else None, **extra)
        return wait_scanned(self.client, ref)

    def verify(self, ref: str, directory: Path, *extra: str, **env: str) -> Any:
        return self.server.cli("verify", ref, str(directory), "--key", str(self.pub), "--policy", *extra, **env)
