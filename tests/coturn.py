"""A real coturn (Debian's `turnserver`) on loopback for the TURN tests: config, TLS cert, process.

Each server gets its own temp directory (config, SQLite user db, log, pid file), free
ports found by binding port 0, and, when asked, a TLS listener with a self-signed
certificate for `localhost`/127.0.0.1 generated here (the tests pass it as the CA).
Readiness is a TCP connect to the listening port that succeeds, polled.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REALM = "unbroken.test"
USER = "alice"
PASSWORD = "wonderland"


def coturn_problem() -> str | None:
    """None when turnserver can run here, else what is missing (for prereq.require)."""
    if shutil.which("turnserver") is None:
        return "coturn (turnserver) is not installed; run scripts/install-test-deps.sh"
    return None


def free_port(kind: int = socket.SOCK_STREAM, also_udp: bool = True) -> int:
    """A port free on 127.0.0.1 for TCP (and UDP), found by binding port 0."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not also_udp:
            return port
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1: (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o644)  # coturn may drop privileges before reading it
    return cert_path, key_path


@dataclass
class Coturn:
    """One running turnserver; `stop()` ends it (by its own pid)."""

    directory: Path
    port: int
    tls_port: int | None
    cert: Path | None
    process: subprocess.Popen[bytes] | None = None
    options: dict[str, str | None] = field(default_factory=dict)

    @property
    def log(self) -> str:
        path = self.directory / "turn.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_coturn(
    directory: Path,
    *,
    tls: bool = False,
    rest_secret: str | None = None,
    extra: dict[str, str | None] | None = None,
) -> Coturn:
    """Start turnserver on 127.0.0.1 with long-term credentials (or REST ones when
    `rest_secret` is given), a TLS listener when `tls`, and `extra` options."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    tls_port = free_port(also_udp=False) if tls else None
    cert = key = None
    if tls:
        cert, key = make_certificate(directory)
    options: dict[str, str | None] = {
        "listening-ip": "127.0.0.1",
        "relay-ip": "127.0.0.1",
        "listening-port": str(port),
        "realm": REALM,
        "lt-cred-mech": None,
        "no-dtls": None,
        "no-cli": None,
        "no-rfc5780": None,
        "no-multicast-peers": None,
        "allow-loopback-peers": None,
        "fingerprint": None,
        "userdb": str(directory / "turndb"),
        "pidfile": str(directory / "turn.pid"),
        "log-file": str(directory / "turn.log"),
        "simple-log": None,
        "no-stdout-log": None,
    }
    if rest_secret is not None:
        options["use-auth-secret"] = None
        options["static-auth-secret"] = rest_secret
        del options["lt-cred-mech"]
    else:
        options["user"] = f"{USER}:{PASSWORD}"
    if tls:
        assert cert is not None and key is not None and tls_port is not None
        options["tls-listening-port"] = str(tls_port)
        options["cert"] = str(cert)
        options["pkey"] = str(key)
    else:
        options["no-tls"] = None
    options.update(extra or {})
    config = directory / "turnserver.conf"
    config.write_text("".join(f"{k}\n" if v is None else f"{k}={v}\n" for k, v in options.items()))
    process = subprocess.Popen(
        ["turnserver", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = Coturn(directory, port, tls_port, cert, process, options)
    _wait_listening(server)
    return server


def _wait_listening(server: Coturn, timeout: float = 15.0) -> None:
    """Poll until every listener accepts a TCP connection (readiness, not a fixed sleep)."""
    ports = [server.port] + ([server.tls_port] if server.tls_port else [])
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            if server.process is not None and server.process.poll() is not None:
                raise RuntimeError(f"turnserver exited early:\n{server.log[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    server.stop()
                    raise RuntimeError(f"turnserver did not listen on {port}") from None
                time.sleep(0.05)
