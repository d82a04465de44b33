"""NATS across untrusted networks: TLS with a verified certificate, NKEY users and credentials files.

Each test starts a real ``nats-server`` configured as an operator would (TLS certificate,
``authorization { users = [{nkey: ...}] }``, or operator mode with account and user JWTs)
and two ``wsa-fast serve --nats`` nodes on it; a relay between a client on each node,
spoken with the ``websockets`` library, shows the nodes joined. The certificates are made
here with ``cryptography``, the NKEYs with ``nkeys``, and the JWTs are written by hand
(header, claims, Ed25519 signature by the issuer's NKEY), as ``nsc`` would write them.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import os
import secrets
import time
from pathlib import Path

import nkeys
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from nats_server import NatsServer
from test_cluster import gateway, relay_round_trip
from wsa_ws import Clients, aio, expect_fail, uid

# A nats-server with TLS, NKEY users or an operator started per test: seconds each.
pytestmark = pytest.mark.slow

# ---------------------------------------------------------------- certificates


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def make_ca(folder: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def make_server_cert(folder: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("nats-test"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.pem", folder / "server-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca, ca_key, ca_cert = make_ca(folder, "test-ca")
    other_ca, _, _ = make_ca(folder, "other-ca")
    cert, key = make_server_cert(folder, ca_key, ca_cert)
    return {"ca": ca, "other_ca": other_ca, "cert": cert, "key": key}


def tls_flags(pki: dict[str, Path]) -> list[str]:
    return ["--tls", "--tlscert", str(pki["cert"]), "--tlskey", str(pki["key"])]


# ---------------------------------------------------------------- NKEYs and JWTs


def new_key(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(bytearray(nkeys.encode_seed(secrets.token_bytes(32), prefix)))


def public(key: nkeys.KeyPair) -> str:
    return key.public_key.decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(issuer: nkeys.KeyPair, subject: str, name: str, nats: dict) -> str:
    """A NATS JWT (v2): ``ed25519-nkey`` header, claims, and the issuer's signature over both."""
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    claims = {
        "jti": _b64(secrets.token_bytes(24)),
        "iat": int(time.time()),
        "iss": public(issuer),
        "name": name,
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    body = _b64(json.dumps(claims).encode())
    signature = issuer.sign(f"{header}.{body}".encode())
    return f"{header}.{body}.{_b64(signature)}"


def write_creds(path: Path, user_jwt: str, user_seed: bytes) -> None:
    """The layout of the .creds files ``nsc`` writes."""
    path.write_text(
        "-----BEGIN NATS USER JWT-----\n" + user_jwt + "\n------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n\n"
        "-----BEGIN USER NKEY SEED-----\n" + user_seed.decode() + "\n------END USER NKEY SEED------\n"
    )
    os.chmod(path, 0o600)


UNLIMITED = {"subs": -1, "data": -1, "payload": -1}


def operator_mode(folder: Path) -> tuple[Path, Path, Path]:
    """A nats-server config trusting one operator and one account, a user's .creds, and a stranger's."""
    operator = new_key(nkeys.PREFIX_BYTE_OPERATOR)
    account = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
    operator_jwt = make_jwt(operator, public(operator), "test-operator", {"type": "operator"})
    account_jwt = make_jwt(
        operator,
        public(account),
        "gateway",
        {
            "type": "account",
            "limits": {**UNLIMITED, "imports": -1, "exports": -1, "wildcards": True, "conn": -1, "leaf": -1},
        },
    )
    config = folder / "operator.conf"
    config.write_text(
        f'operator: "{operator_jwt}"\nresolver: MEMORY\n'
        f'resolver_preload: {{\n  {public(account)}: "{account_jwt}"\n}}\n'
    )
    creds = []
    for name, signer in (("gw", account), ("stranger", new_key(nkeys.PREFIX_BYTE_ACCOUNT))):
        user = new_key(nkeys.PREFIX_BYTE_USER)
        user_jwt = make_jwt(signer, public(user), name, {"type": "user", "pub": {}, "sub": {}, **UNLIMITED})
        path = folder / f"{name}.creds"
        write_creds(path, user_jwt, user.seed)
        creds.append(path)
    return config, creds[0], creds[1]


def check_joined(one, two) -> None:
    @aio
    async def check() -> None:
        async with Clients(one) as on_one, Clients(two) as on_two:
            a = await on_one.open("verbose", login=uid("sec"))
            b = await on_two.open("compact", login=uid("sec"))
            await relay_round_trip(a, b)
            await relay_round_trip(b, a)

    check()


# ---------------------------------------------------------------- TLS


@pytest.mark.parametrize("scheme", ["tls", "nats"])
def test_nats_over_tls_with_the_servers_certificate_verified(pki: dict[str, Path], scheme: str) -> None:
    """tls:// asks for TLS; nats:// to a server whose INFO requires TLS gets it too."""
    with NatsServer(extra=tls_flags(pki)) as nats:
        url = f"{scheme}://127.0.0.1:{nats.port}"
        with (
            gateway("--nats", url, "--nats-ca-file", str(pki["ca"])) as one,
            gateway("--nats", url, "--nats-ca-file", str(pki["ca"])) as two,
        ):
            check_joined(one, two)
        assert f"connected to NATS server tls://127.0.0.1:{nats.port}" in one.log or scheme == "nats", one.log


def test_a_nats_certificate_from_another_ca_is_refused_at_once(pki: dict[str, Path]) -> None:
    with NatsServer(extra=tls_flags(pki)) as nats:
        with pytest.raises(RuntimeError, match="TLS certificate is not trusted") as refused:
            gateway("--nats", f"tls://127.0.0.1:{nats.port}", "--nats-ca-file", str(pki["other_ca"]))
        assert "unable to get local issuer certificate" in str(refused.value), refused.value
        # Without a CA file the system's CAs are used, which do not know the test CA either.
        with pytest.raises(RuntimeError, match="TLS certificate is not trusted"):
            gateway("--nats", f"nats://127.0.0.1:{nats.port}")


def test_tls_url_to_a_server_without_tls_is_refused(pki: dict[str, Path]) -> None:
    with NatsServer() as nats:
        with pytest.raises(RuntimeError, match="does not offer it"):
            gateway("--nats", f"tls://127.0.0.1:{nats.port}", "--nats-ca-file", str(pki["ca"]))


def test_nats_over_tls_restarts_and_the_nodes_route_again(pki: dict[str, Path]) -> None:
    """The TLS nats-server goes away: requests across nodes are answered UNAVAILABLE; it comes back on
    the same port: both nodes reconnect over TLS (certificate verified again) and relay again."""
    with NatsServer(extra=tls_flags(pki)) as nats:
        url = f"tls://127.0.0.1:{nats.port}"
        with (
            gateway("--nats", url, "--nats-ca-file", str(pki["ca"]), "--request-timeout", "1") as one,
            gateway("--nats", url, "--nats-ca-file", str(pki["ca"])) as two,
        ):

            @aio
            async def check() -> None:
                async with Clients(one) as on_one, Clients(two) as on_two:
                    a = await on_one.open("verbose", login=uid("tr"))
                    b = await on_two.open("compact", login=uid("tr"))
                    await relay_round_trip(a, b)
                    nats.stop()
                    assert await asyncio.to_thread(one.wait_for_log, "lost the NATS server", 10), one.log
                    msg_id = await a.request(b.cid, "test@v1/hello")
                    expect_fail(await a.recv(), "UNAVAILABLE", id=msg_id, to=a.cid)
                    nats.start()
                    for node in (one, two):
                        assert await asyncio.to_thread(node.wait_for_log, "reconnected to NATS server", 30), node.log
                    await relay_round_trip(a, b)
                    await relay_round_trip(b, a)

            check()
    assert f"reconnected to NATS server tls://127.0.0.1:{nats.port}" in one.log, one.log


# ---------------------------------------------------------------- NKEY users and credentials files


def test_an_nkey_user_over_tls(pki: dict[str, Path], tmp_path: Path) -> None:
    user = new_key(nkeys.PREFIX_BYTE_USER)
    config = tmp_path / "nkey.conf"
    config.write_text(f'authorization {{ users = [ {{ nkey: "{public(user)}" }} ] }}\n')
    seed_file = tmp_path / "gw.nk"
    seed_file.write_bytes(user.seed + b"\n")
    stranger_file = tmp_path / "stranger.nk"
    stranger_file.write_bytes(new_key(nkeys.PREFIX_BYTE_USER).seed)
    with NatsServer(extra=["-c", str(config), *tls_flags(pki)]) as nats:
        url = f"tls://127.0.0.1:{nats.port}"
        common = ("--nats", url, "--nats-ca-file", str(pki["ca"]))
        with (
            gateway(*common, "--nats-nkey-seed-file", str(seed_file)) as one,
            gateway(*common, "--nats-nkey-seed-file", str(seed_file)) as two,
        ):
            check_joined(one, two)
        for node in (one, two):
            assert user.seed.decode() not in node.log, "the NKEY seed was logged"
        with pytest.raises(RuntimeError, match="refused the credentials"):
            gateway(*common, "--nats-nkey-seed-file", str(stranger_file))
        with pytest.raises(RuntimeError, match="refused the credentials"):
            gateway(*common)


def test_a_credentials_file_in_operator_mode(tmp_path: Path) -> None:
    config, creds, stranger = operator_mode(tmp_path)
    with NatsServer(extra=["-c", str(config)]) as nats:
        with (
            gateway("--nats", nats.url, "--nats-creds-file", str(creds)) as one,
            gateway("--nats", nats.url, "--nats-creds-file", str(creds)) as two,
        ):
            check_joined(one, two)
        seed = [line for line in creds.read_text().split() if line.startswith("SU")][0]
        for node in (one, two):
            assert seed not in node.log, "the NKEY seed was logged"
        with pytest.raises(RuntimeError, match="refused the credentials"):
            gateway("--nats", nats.url, "--nats-creds-file", str(stranger))


def test_a_bad_credentials_setting_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.creds"
    bad.write_text("not a creds file\n")
    with pytest.raises(RuntimeError, match="did not start") as refused:
        gateway("--nats", "nats://127.0.0.1:4222", "--nats-creds-file", str(bad))
    output = str(refused.value).split("output:\n", 1)[1]
    assert output.startswith("wsa-fast: error: ") and "nats_creds_file: " in output, output
    assert output.count("\n") == 1, output
