# SPDX-License-Identifier: Apache-2.0
"""Helpers for the access-control e2e tests (test_auth.py, test_tls.py): API keys made with
the real CLI, JWTs made with PyJWT and by hand for the attacks (alg none, HS256 signed with
the RSA public key PEM), and key material generated with `cryptography`."""

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import time

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import aimedres_harness as h

KEY_RE = re.compile(r"^amr_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
ROLES = ("admin", "deployer", "clinician", "auditor", "monitor")
SALT = "e2e-api-key-salt-0123456789abcdef0123456789"
JWT_SECRET = "e2e-jwt-hs256-secret-0123456789abcdef0123456789"
ISSUER = "https://idp.hospital.example"
AUDIENCE = "aimedres"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Keys:
    """RSA and EC key pairs written as PEM public keys under a directory."""

    def __init__(self, directory):
        os.makedirs(directory, exist_ok=True)
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.rsa_pub_pem = self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.ec_pub_pem = self.ec.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.rsa_path = os.path.join(directory, "rsa1.pem")
        self.ec_path = os.path.join(directory, "ec1.pem")
        with open(self.rsa_path, "wb") as f:
            f.write(self.rsa_pub_pem)
        with open(self.ec_path, "wb") as f:
            f.write(self.ec_pub_pem)

    @property
    def spec(self):
        return "rsa1=%s,ec1=%s" % (self.rsa_path, self.ec_path)


def claims(roles, sub="dr.jwt", exp_in=600, **extra):
    now = int(time.time())
    c = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + exp_in, "roles": list(roles)}
    c.update(extra)
    return c


def jwt_rs256(keys, roles, **kw):
    return pyjwt.encode(claims(roles, **kw), keys.rsa, algorithm="RS256", headers={"kid": "rsa1"})


def jwt_es256(keys, roles, **kw):
    return pyjwt.encode(claims(roles, **kw), keys.ec, algorithm="ES256", headers={"kid": "ec1"})


def jwt_hs256(roles, secret=JWT_SECRET, **kw):
    return pyjwt.encode(claims(roles, **kw), secret, algorithm="HS256")


def jwt_none(roles, **kw):
    """alg=none, empty signature: must never be accepted."""
    head = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims(roles, **kw)).encode())
    return head + "." + body + "."


def jwt_confused(keys, roles, kid="rsa1", **kw):
    """HS256 'signed' with the RSA public key PEM as the HMAC secret (algorithm confusion)."""
    header = {"alg": "HS256", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    head = b64url(json.dumps(header).encode())
    body = b64url(json.dumps(claims(roles, **kw)).encode())
    mac = hmac.new(keys.rsa_pub_pem, (head + "." + body).encode(), hashlib.sha256).digest()
    return head + "." + body + "." + b64url(mac)


def auth_env(keys=None, **extra):
    env = {
        "AUTH_ENABLED": "true",
        "API_KEY_SALT": SALT,
        "JWT_SECRET_KEY": JWT_SECRET,
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "LOG_LEVEL": "WARNING",
    }
    if keys:
        env["JWT_PUBLIC_KEYS"] = keys.spec
    env.update({k: str(v) for k, v in extra.items()})
    return env


def create_key(env, name, role, expires=None):
    """Runs `aimedres apikey create`; returns (key_id, key, CompletedProcess)."""
    args = ["apikey", "create", "--name", name, "--role", role]
    if expires:
        args += ["--expires", expires]
    r = h.run_cli(args, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.rstrip("\n").split("\n")
    m = KEY_RE.match(lines[-1])
    assert m, "last line of stdout is not a key: %r" % r.stdout
    for line in lines[:-1]:
        assert m.group(2) not in line, "secret printed more than once"
    return m.group(1), lines[-1], r


def revoke_key(env, key_id):
    r = h.run_cli(["apikey", "revoke", key_id], env=env)
    assert r.returncode == 0, r.stderr
    return r


def server_env(srv, extra=None):
    """The environment of srv for CLI calls against its store."""
    env = dict(srv.env)
    env.update(extra or {})
    return env


def openssl(*args, check=True, input_bytes=b"", timeout=30):
    return subprocess.run(["openssl"] + list(args), input=input_bytes, capture_output=True, timeout=timeout,
                          check=check)
