"""Certificates for TLS tests, made with trustme: a CA, a server certificate for 127.0.0.1
and localhost, and a client certificate for mutual TLS, written to files as the server
reads them (--ssl-certfile, --ssl-keyfile, --ssl-ca-certs)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization


@dataclass
class Certs:
    ca: trustme.CA
    ca_file: str
    cert_file: str
    key_file: str
    client_cert_file: str  # certificate and key in one PEM, as httpx/ssl load them

    def options(self, **more: object) -> dict[str, object]:
        """Server options for `running_server`."""
        return {"ssl_certfile": self.cert_file, "ssl_keyfile": self.key_file, **more}

    def args(self) -> list[str]:
        return ["--ssl-certfile", self.cert_file, "--ssl-keyfile", self.key_file]

    def client_context(self, *, client_cert: bool = False, alpn: list[str] | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if client_cert:
            context.load_cert_chain(self.client_cert_file)
        if alpn:
            context.set_alpn_protocols(alpn)
        return context


def make_certs(directory: Path, ca: trustme.CA | None = None) -> Certs:
    ca = ca or trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@example.test", common_name="test client")
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "ca.pem": ca.cert_pem.bytes(),
        "cert.pem": b"".join(blob.bytes() for blob in server.cert_chain_pems),
        "key.pem": server.private_key_pem.bytes(),
        "client.pem": client.private_key_and_cert_chain_pem.bytes(),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return Certs(
        ca,
        str(directory / "ca.pem"),
        str(directory / "cert.pem"),
        str(directory / "key.pem"),
        str(directory / "client.pem"),
    )


def encrypted_key(certs: Certs, password: bytes, path: Path) -> str:
    """The server key, encrypted with `password`, for --ssl-keyfile-password."""
    key = serialization.load_pem_private_key(Path(certs.key_file).read_bytes(), None)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        )
    )
    return str(path)
