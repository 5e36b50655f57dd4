"""``oncofed certs``: the keys and certificates a consortium needs for TLS and
SuperNode authentication (docs/deployment.md walks through using them).

Writes, under ``--out``::

    ca/ca.crt, ca/ca.key                 the consortium's certificate authority
                                         (ca.key: keep offline, mode 0600)
    superlink/server.pem, server.key     the SuperLink's TLS certificate for
                                         every --host name or IP, signed by the CA
    superlink/ca.crt                     copy: what flower-superlink needs
    sites/<name>/node.key, node.pub      each hospital's SuperNode key pair
                                         (ECDSA P-384, OpenSSH format): node.key
                                         stays at the hospital (mode 0600);
                                         node.pub goes to the SuperLink operator
                                         for 'flwr supernode register'
    sites/<name>/ca.crt                  copy: the SuperNode's --root-certificates

Keys are generated with the ``cryptography`` package (what Flower itself uses);
no key is ever overwritten: an existing file stops the command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import re
from pathlib import Path

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "certs",
        help="make the CA, SuperLink TLS certificate and SuperNode keys",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--out", required=True, help="folder to write (must not hold keys)")
    p.add_argument(
        "--host",
        action="append",
        default=[],
        help="the SuperLink's DNS name or IP as SuperNodes reach it (repeat; "
        "default 127.0.0.1 and localhost)",
    )
    p.add_argument(
        "--sites",
        default="",
        help="comma-separated hospital names: one SuperNode key pair each",
    )
    p.add_argument("--days", type=int, default=365, help="validity (365)")
    p.set_defaults(func=run)


def _write(path: Path, data: bytes, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o600 if private else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)  # whatever the umask


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "OncoFed consortium"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: list[str]):
    from cryptography import x509

    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def make(out: Path, hosts: list[str], sites: list[str], days: int) -> list[Path]:
    """Write everything; returns the files written."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    for site in sites:
        if not NAME.match(site):
            raise SystemExit(f"site name {site!r}: use 1-32 letters, digits, - or _")
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    plain = serialization.NoEncryption()
    now = dt.datetime.now(dt.UTC)
    until = now + dt.timedelta(days=days)
    written: list[Path] = []

    def put(rel: str, data: bytes, private: bool = False) -> None:
        _write(out / rel, data, private)
        written.append(out / rel)

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = _name("OncoFed consortium CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    ca_pem = ca.public_bytes(pem)
    put("ca/ca.key", ca_key.private_bytes(pem, pkcs8, plain), private=True)
    put("ca/ca.crt", ca_pem)

    server_key = ec.generate_private_key(ec.SECP384R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    put("superlink/server.key", server_key.private_bytes(pem, pkcs8, plain), True)
    put("superlink/server.pem", server.public_bytes(pem))
    put("superlink/ca.crt", ca_pem)

    for site in sites:
        key = ec.generate_private_key(ec.SECP384R1())
        openssh = key.private_bytes(pem, serialization.PrivateFormat.OpenSSH, plain)
        pub = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        put(f"sites/{site}/node.key", openssh, private=True)
        put(f"sites/{site}/node.pub", pub + f" {site}\n".encode())
        put(f"sites/{site}/ca.crt", ca_pem)
    return written


def run(args: argparse.Namespace) -> int:
    out = Path(args.out).expanduser()
    hosts = args.host or ["127.0.0.1", "localhost"]
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    try:
        written = make(out, hosts, sites, args.days)
    except FileExistsError as err:
        raise SystemExit(
            f"{err.filename} exists: oncofed certs never overwrites a key. Fix: "
            "choose an empty --out folder."
        ) from None
    for path in written:
        mode = "private, 0600" if path.stat().st_mode & 0o077 == 0 else "public"
        print(f"{path}  ({mode})")
    print(
        "Next: give superlink/ to the SuperLink host; each sites/<name>/ to that "
        "hospital; register each sites/<name>/node.pub with 'flwr supernode "
        "register'. Keep ca/ca.key offline."
    )
    return 0
