"""Start and stop a local anvil node (Foundry's dev EVM) for tests.

anvil comes from the npm package `@foundry-rs/anvil`, pinned in the repository's
package.json: `npm ci` at the repository root installs it under node_modules/. The
binary is looked up in ANVIL_BIN, then in node_modules, then on PATH.

    with AnvilNode.started() as node:
        chain = Chain(rpc_url=node.rpc_url, private_key=ANVIL_PRIVATE_KEYS[0], deploy_missing=True)
        node.restart()   # same port, fresh chain state: for fault tests
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ANVIL_CHAIN_ID = 31337
INSTALL_HINT = "install it with `npm ci` at the repository root (npm package @foundry-rs/anvil)"

# anvil's well-known development accounts (from its public test mnemonic), each funded with
# 10,000 ETH on a fresh node. Public test keys, never to hold anything of value.
ANVIL_PRIVATE_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
)

_NPM_PLATFORM_PACKAGES = {
    ("Linux", "x86_64"): "anvil-linux-amd64",
    ("Linux", "aarch64"): "anvil-linux-arm64",
    ("Darwin", "x86_64"): "anvil-darwin-amd64",
    ("Darwin", "arm64"): "anvil-darwin-arm64",
}


class AnvilNotInstalled(RuntimeError):
    pass


class AnvilError(RuntimeError):
    pass


def find_anvil() -> str:
    """Path of the anvil binary, or AnvilNotInstalled with how to install it."""
    configured = os.environ.get("ANVIL_BIN")
    if configured:
        if not Path(configured).is_file():
            raise AnvilNotInstalled(f"ANVIL_BIN={configured} is not a file")
        return configured
    package = _NPM_PLATFORM_PACKAGES.get((platform.system(), platform.machine()))
    if package is not None:
        # The platform package's own binary: the package's bin.mjs wrapper would only add a node process.
        binary = REPO_ROOT / "node_modules" / "@foundry-rs" / package / "bin" / "anvil"
        if binary.is_file():
            return str(binary)
    on_path = shutil.which("anvil")
    if on_path:
        return on_path
    raise AnvilNotInstalled(f"anvil was not found: {INSTALL_HINT}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rpc_request(
    rpc_url: str, method: str, params: list[object] | None = None, timeout_s: float = 2.0
) -> object:
    """One bare JSON-RPC call (for readiness checks and dev-only methods)."""
    if not rpc_url.startswith(("http://", "https://")):
        raise ValueError(f"not an HTTP RPC URL: {rpc_url}")
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(rpc_url, data=body, headers=headers)  # noqa: S310 (scheme checked)
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (scheme checked)
        answer = json.loads(response.read())
    if "error" in answer:
        raise AnvilError(f"{method}: {answer['error']}")
    return answer["result"]


class AnvilNode:
    """One anvil process on 127.0.0.1, on a port fixed for the node's lifetime (kept across restarts)."""

    def __init__(self, *, port: int | None = None, binary: str | None = None, start_timeout_s: float = 15.0):
        self.binary = binary or find_anvil()
        self.port = port or free_port()
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self._process = subprocess.Popen(  # noqa: S603 (our own binary, fixed arguments)
            [
                self.binary,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--chain-id",
                str(ANVIL_CHAIN_ID),
                "--silent",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_ready()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if process.stderr is not None:
            process.stderr.close()

    def restart(self) -> None:
        """Stop and start again on the same port. anvil keeps no state: the chain starts anew."""
        self.stop()
        self.start()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            process = self._process
            assert process is not None
            if process.poll() is not None:
                error = process.stderr.read().decode(errors="replace") if process.stderr else ""
                self._process = None
                raise AnvilError(f"anvil exited with {process.returncode}: {error.strip()}")
            try:
                rpc_request(self.rpc_url, "eth_chainId", timeout_s=0.5)
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() >= deadline:
                    self.stop()
                    message = f"anvil did not answer on {self.rpc_url} in {self.start_timeout_s} s"
                    raise AnvilError(message) from None
                time.sleep(0.05)

    @classmethod
    @contextmanager
    def started(cls, *, port: int | None = None) -> Iterator[AnvilNode]:
        node = cls(port=port)
        node.start()
        try:
            yield node
        finally:
            node.stop()


@contextmanager
def anvil() -> Iterator[str]:
    """Run anvil on a free port for the duration of the block; yields its RPC URL."""
    with AnvilNode.started() as node:
        yield node.rpc_url
