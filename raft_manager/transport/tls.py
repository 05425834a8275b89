"""Mutual TLS for the TCP transport: both ends prove themselves with certificates from one CA.

Theory of operation: every node holds a certificate and key signed by the cluster's CA. The
listening side requires a client certificate that chains to that CA (CERT_REQUIRED), and the
dialling side checks the listener's certificate against the same CA and, unless turned off,
that it names the address dialled (a subjectAltName with the host or IP). TLS 1.2 is the floor.
A connection whose handshake fails is closed and counted (reason tls-handshake); nothing is
read from it. Building the contexts reads the three files once; a missing or mismatched file
raises TlsConfigError with the file named.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

HANDSHAKE_SECONDS = 10.0


class TlsConfigError(ValueError):
    """The certificate, key or CA file cannot be used."""


@dataclass(frozen=True, slots=True)
class TlsContexts:
    server: ssl.SSLContext  # for connections peers dial in on
    client: ssl.SSLContext  # for connections this node dials


def mutual_tls(
    cert_file: Path, key_file: Path, ca_file: Path, check_hostname: bool = True
) -> TlsContexts:
    def build(purpose: ssl.Purpose) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(purpose, cafile=str(ca_file))
        except (OSError, ssl.SSLError) as error:
            raise TlsConfigError(f"CA file {ca_file}: {error}") from None
        try:
            context.load_cert_chain(str(cert_file), str(key_file))
        except (OSError, ssl.SSLError) as error:
            raise TlsConfigError(f"certificate {cert_file} / key {key_file}: {error}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    server = build(ssl.Purpose.CLIENT_AUTH)
    client = build(ssl.Purpose.SERVER_AUTH)
    client.check_hostname = check_hostname
    return TlsContexts(server, client)
