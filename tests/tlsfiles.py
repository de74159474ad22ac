"""Certificates for TLS tests, made by trustme: a CA, a server certificate, client ones."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import trustme


@dataclass
class TLSFiles:
    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path

    def client_context(self, client_cert: Path | None = None) -> ssl.SSLContext:
        """A client context trusting this CA, presenting ``client_cert`` (PEM with key) if given."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if client_cert is not None:
            context.load_cert_chain(client_cert)
        return context


def server_files(directory: Path, name: str = "server") -> TLSFiles:
    """A new CA and a certificate for 127.0.0.1/localhost, written to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = TLSFiles(ca, directory / f"{name}-ca.crt", directory / f"{name}.crt",
                     directory / f"{name}.key")
    ca.cert_pem.write_to_path(str(files.ca_file))
    cert.cert_chain_pems[0].write_to_path(str(files.cert_file))
    cert.private_key_pem.write_to_path(str(files.key_file))
    return files


def client_cert(ca: trustme.CA, path: Path, *names: str) -> Path:
    """A client certificate (and its key) for ``names``, signed by ``ca``, in one PEM file."""
    ca.issue_cert(*(names or ("client.example",))).private_key_and_cert_chain_pem.write_to_path(
        str(path))
    return path


def bcrypt_hash(password: str) -> str:
    """A cheap (cost 4) bcrypt hash, as htpasswd -nBC 4 makes."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
