# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of access control (issue 5): the auth matrix over every endpoint of the
route table (read from GET /api/v1, so new routes are covered automatically) x {no
credential, unknown key, wrong secret, revoked key, expired key, expired JWT, alg none,
HS/RS confusion, bad signature, wrong role, right role}, with exact status codes; the
`apikey` CLI (key printed once on the last line, list without secrets, only the HMAC
stored, revocation within a second); lockout after 5 failures; rate limits with
Retry-After; AUTH_ENABLED in `config check` and the production rule; APIKEY_CREATED /
APIKEY_REVOKED audit records written by the CLI while the server appends to the same chain;
and TRUSTED_PROXIES (X-Forwarded-For believed only from a trusted peer)."""

import contextlib
import hashlib
import hmac
import json
import os
import re
import socket
import time

import pytest

import aimedres_harness as h
import auth_helpers as a

PARK = "parkinsons_predictor"
AUTH_STATUSES = (401, 403, 429)
# role a route requires -> a role that does NOT satisfy it ("read" needs a role-less principal)
WRONG_ROLE = {"clinician": "monitor", "deployer": "clinician", "auditor": "clinician", "monitor": "clinician",
              "admin": "clinician"}


def satisfies(held, required):
    """The matrix of docs/security.md."""
    if required is None:
        return True
    if held == "admin":
        return True
    if required == "read":
        return held in a.ROLES
    return held == required


@pytest.fixture(scope="module")
def authz(demo_dir, tmp_path_factory):
    """One server with AUTH_ENABLED, limits and lockout off (the matrix sends hundreds of bad
    credentials from one address), one API key per role plus revoked/expired ones, and JWT keys."""
    work = tmp_path_factory.mktemp("auth")
    keys = a.Keys(str(work / "jwtkeys"))
    env = a.auth_env(keys, RATE_LIMIT_PER_KEY="off", RATE_LIMIT_PER_IP="off", AUTH_LOCKOUT_THRESHOLD="0")
    srv = h.start_server(demo_dir, str(work / "srv"), env)
    try:
        cenv = a.server_env(srv)
        api_keys = {role: a.create_key(cenv, "e2e-" + role, role)[1] for role in a.ROLES}
        revoked_id, revoked, _ = a.create_key(cenv, "e2e-revoked", "admin")
        a.revoke_key(cenv, revoked_id)
        _, expired, _ = a.create_key(cenv, "e2e-expired", "admin", expires="1s")
        time.sleep(1.2)
        index = srv.get("/api/v1").json()["endpoints"]
        yield {"srv": srv, "keys": keys, "api_keys": api_keys, "revoked": revoked, "expired": expired,
               "endpoints": index, "env": cenv}
    finally:
        rc, killed = srv.stop()
        assert not killed and rc == 0, srv.log_tail()


def concrete(path):
    return (path.replace("{name}", PARK).replace("{model}", PARK)
            .replace("{id}", "00000000-0000-7000-8000-000000000000").replace("{action}", "pause"))


def call(srv, ep, headers):
    path = concrete(ep["path"])
    if ep["method"] == "POST":
        if path.endswith("/predict"):
            body = {"features": h.valid_features(srv.manifest(PARK))}
            return srv.post(path, json=body, headers=headers)
        # malformed JSON: a handler refuses it without side effects, after authorization
        return srv.post(path, data=b"{not json", headers=dict(headers, **{"Content-Type": "application/json"}))
    return srv.request(ep["method"], path, headers=headers)


def expect_401(r, what, presented=True):
    err = h.assert_error_body(r, 401, "unauthorized")
    www = r.headers.get("WWW-Authenticate", "")
    assert www.startswith("Bearer realm=\"aimedres\""), (what, www)
    assert ('error="invalid_token"' in www) == presented, (what, www)
    return err


def test_verify_and_smoke_with_each_role(authz):
    """docs/rollouts.md: one role per key, so `verify` (reads /metrics, predicts) passes only with
    an admin key, `smoke` with clinician or admin; a refused check names the status it got."""
    srv = authz["srv"]
    url = "http://127.0.0.1:%d" % srv.port
    for role, verify_ok, smoke_ok in (("admin", True, True), ("clinician", False, True), ("monitor", False, False)):
        env = dict(authz["env"], AIMEDRES_API_KEY=authz["api_keys"][role])
        r = h.run_cli(["verify", "--url", url], env=env, timeout=60)
        assert (r.returncode == 0) == verify_ok, (role, r.stdout, r.stderr)
        if role == "clinician":
            assert "GET /metrics: status 403" in r.stdout, r.stdout
        if role == "monitor":
            assert "HTTP 403" in r.stdout, r.stdout
        r = h.run_cli(["smoke", "--url", url], env=env, timeout=60)
        assert (r.returncode == 0) == smoke_ok, (role, r.stdout, r.stderr)


def test_route_index_names_roles(authz):
    eps = {(e["method"], e["path"]): e["role"] for e in authz["endpoints"]}
    assert eps[("GET", "/health")] is None and eps[("GET", "/ready")] is None
    assert eps[("GET", "/")] is None and eps[("GET", "/api/v1")] is None
    assert eps[("POST", "/api/v1/models/{name}/predict")] == "clinician"
    assert eps[("GET", "/metrics")] == "monitor"
    assert eps[("GET", "/api/v1/models/list")] == "read"
    for role in eps.values():
        assert role is None or role == "read" or role in a.ROLES, role


def bad_credentials(authz):
    keys = authz["keys"]
    real_id = a.KEY_RE.match(authz["api_keys"]["admin"]).group(1)
    return {
        "unknown key": {"X-API-Key": "amr_0123456789abcdef_" + "A" * 43},
        "wrong secret for a real key id": {"X-API-Key": "amr_%s_%s" % (real_id, "B" * 42 + "A")},
        "malformed key": {"X-API-Key": "not-a-key"},
        "revoked key": {"X-API-Key": authz["revoked"]},
        "revoked key as bearer": {"Authorization": "Bearer " + authz["revoked"]},
        "expired key": {"X-API-Key": authz["expired"]},
        "expired JWT": {"Authorization": "Bearer " + a.jwt_rs256(keys, ["admin"], exp_in=-3600)},
        "not yet valid JWT": {"Authorization": "Bearer " + a.jwt_rs256(keys, ["admin"], nbf=int(time.time()) + 3600)},
        "alg none": {"Authorization": "Bearer " + a.jwt_none(["admin"])},
        "HS/RS confusion (kid)": {"Authorization": "Bearer " + a.jwt_confused(keys, ["admin"])},
        "HS/RS confusion (no kid)": {"Authorization": "Bearer " + a.jwt_confused(keys, ["admin"], kid=None)},
        "HS256 wrong secret": {"Authorization": "Bearer " + a.jwt_hs256(["admin"], secret="x" * 40)},
        "wrong issuer": {"Authorization": "Bearer " + a.jwt_rs256(keys, ["admin"], iss="https://evil.example")},
        "wrong audience": {"Authorization": "Bearer " + a.jwt_rs256(keys, ["admin"], aud="someone-else")},
        "basic auth": {"Authorization": "Basic YWRtaW46YWRtaW4="},
    }


def test_matrix_no_and_bad_credentials(authz):
    srv = authz["srv"]
    failures = []
    for ep in authz["endpoints"]:
        cases = {"no credential": {}}
        cases.update(bad_credentials(authz))
        for what, headers in cases.items():
            r = call(srv, ep, headers)
            label = "%s %s with %s" % (ep["method"], ep["path"], what)
            if ep["role"] is None:
                if r.status_code in AUTH_STATUSES:  # public: credentials are not even looked at
                    failures.append("%s: public route answered %d" % (label, r.status_code))
                continue
            try:
                expect_401(r, label, presented=bool(headers))
            except AssertionError as e:
                failures.append("%s: %s" % (label, e))
    assert not failures, "\n".join(failures)


def test_matrix_roles(authz):
    """Every endpoint x every role, as an API key and as RS256/ES256/HS256 JWTs."""
    srv, keys = authz["srv"], authz["keys"]
    failures = []
    for ep in authz["endpoints"]:
        for role in a.ROLES:
            creds = {
                "key": {"X-API-Key": authz["api_keys"][role]},
                "bearer key": {"Authorization": "Bearer " + authz["api_keys"][role]},
                "RS256": {"Authorization": "Bearer " + a.jwt_rs256(keys, [role])},
                "ES256": {"Authorization": "Bearer " + a.jwt_es256(keys, [role])},
                "HS256": {"Authorization": "Bearer " + a.jwt_hs256([role])},
            }
            for kind, headers in creds.items():
                r = call(srv, ep, headers)
                label = "%s %s as %s (%s): %d %s" % (ep["method"], ep["path"], role, kind, r.status_code,
                                                      r.text[:200])
                if satisfies(role, ep["role"]):
                    if r.status_code in AUTH_STATUSES:
                        failures.append("allowed role refused: " + label)
                    elif ep["path"].endswith("/predict") and r.status_code != 200:
                        failures.append("predict with the right role must be 200: " + label)
                else:
                    if r.status_code != 403:
                        failures.append("expected 403: " + label)
                        continue
                    err = r.json()["error"]
                    if err["code"] != "forbidden" or err["details"]["required_role"] != ep["role"]:
                        failures.append("bad 403 body: " + label)
        if ep["role"] is not None:
            # a valid token without any known role: authenticated, but nothing is granted
            r = call(srv, ep, {"Authorization": "Bearer " + a.jwt_rs256(keys, ["janitor"])})
            if r.status_code != 403:
                failures.append("%s %s with no role: %d" % (ep["method"], ep["path"], r.status_code))
    assert not failures, "\n".join(failures)


def test_predict_principal_and_wrong_role(authz):
    srv = authz["srv"]
    body = {"features": h.valid_features(srv.manifest(PARK))}
    r = srv.predict(PARK, body, headers={"X-API-Key": authz["api_keys"]["monitor"]})
    err = h.assert_error_body(r, 403, "forbidden")
    assert err["details"] == {"required_role": "clinician", "role": "monitor"}, err
    assert err["message"] == "this endpoint requires the clinician role (or admin)", err
    # review22: a read route named a role "read" that does not exist
    r = srv.get("/api/v1/models/list", headers={"Authorization": "Bearer " + a.jwt_rs256(authz["keys"], ["janitor"])})
    err = h.assert_error_body(r, 403, "forbidden")
    assert err["message"].startswith("this endpoint requires a role (one of admin|"), err
    r = srv.predict(PARK, body, headers={"X-API-Key": authz["api_keys"]["clinician"]})
    assert r.status_code == 200, r.text
    r = srv.predict(PARK, body)
    expect_401(r, "predict without credential", presented=False)


def test_jwt_roles_and_no_kid(authz):
    srv, keys = authz["srv"], authz["keys"]
    # several roles in one token; any one that grants the route is enough
    tok = a.jwt_rs256(keys, ["monitor", "clinician"])
    assert srv.get("/metrics", headers={"Authorization": "Bearer " + tok}).status_code == 200
    r = srv.predict(PARK, {"features": h.valid_features(srv.manifest(PARK))},
                    headers={"Authorization": "Bearer " + tok})
    assert r.status_code == 200, r.text
    # unknown kid -> 401
    import jwt as pyjwt
    tok = pyjwt.encode(a.claims(["admin"]), keys.rsa, algorithm="RS256", headers={"kid": "nope"})
    expect_401(srv.get("/metrics", headers={"Authorization": "Bearer " + tok}), "unknown kid")
    # an RS256 token that names the EC key: the key pins ES256
    tok = pyjwt.encode(a.claims(["admin"]), keys.rsa, algorithm="RS256", headers={"kid": "ec1"})
    expect_401(srv.get("/metrics", headers={"Authorization": "Bearer " + tok}), "alg/key mismatch")
    # oversize token
    expect_401(srv.get("/metrics", headers={"Authorization": "Bearer " + "a" * 9000}), "oversize")


# --------------------------------------------------------------------------- the CLI


def test_apikey_cli_create_list_store(make_server, tmp_path):
    srv = make_server(a.auth_env())
    env = a.server_env(srv)
    key_id, key, r = a.create_key(env, "ward 7 tablet", "clinician", expires="90d")
    secret = a.KEY_RE.match(key).group(2)
    assert r.stdout.count(secret) == 1
    assert secret not in r.stderr
    assert re.search(r"expires 20\d\d-", r.stdout), r.stdout

    for args in (["apikey", "list"], ["apikey", "list", "--json"]):
        lr = h.run_cli(args, env=env)
        assert lr.returncode == 0, lr.stderr
        assert key_id in lr.stdout and "ward 7 tablet" in lr.stdout and "clinician" in lr.stdout
        assert secret not in lr.stdout and secret not in lr.stderr
    import json
    listed = json.loads(h.run_cli(["apikey", "list", "--json"], env=env).stdout)
    mine = [k for k in listed if k["key_id"] == key_id][0]
    assert mine["status"] == "active" and mine["role"] == "clinician", mine

    # only HMAC-SHA256(API_KEY_SALT, secret) is stored; the secret is nowhere in the database files
    with contextlib.closing(srv.db()) as conn:
        row = conn.execute("SELECT secret_hmac FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
    assert row[0] == hmac.new(a.SALT.encode(), secret.encode(), hashlib.sha256).hexdigest()
    for name in os.listdir(srv.root):
        if name.startswith("aimedres.db"):
            with open(os.path.join(srv.root, name), "rb") as f:
                assert secret.encode() not in f.read(), name

    # the key works, and a different salt makes it useless (salt is part of the check)
    assert srv.get("/api/v1/models/list", headers={"X-API-Key": key}).status_code == 200

    # usage errors
    assert h.run_cli(["apikey", "create", "--name", "x", "--role", "superuser"], env=env).returncode == 2
    assert h.run_cli(["apikey", "create", "--role", "admin"], env=env).returncode == 2
    assert h.run_cli(["apikey", "create", "--name", "x", "--role", "admin", "--expires", "soon"],
                     env=env).returncode == 2
    assert h.run_cli(["apikey", "revoke", "not-an-id"], env=env).returncode == 2
    rr = h.run_cli(["apikey", "revoke", "0123456789abcdef"], env=env)
    assert rr.returncode == 1 and "no key" in rr.stderr


def test_last_use_is_written_only_for_a_use(make_server):
    """review58 #8: a wrong-secret guess at a known key id (ids are not secret) set that key's
    last use, as did a revoked key: an abandoned key could be kept looking alive."""
    srv = make_server(a.auth_env())
    env = a.server_env(srv)

    def last_used(key_id):
        r = h.run_cli(["apikey", "list", "--json"], env=env)
        assert r.returncode == 0, r.stderr
        return next(k for k in json.loads(r.stdout) if k["key_id"] == key_id)["last_used"]

    key_id, key, _ = a.create_key(env, "never used", "monitor")
    guess = key[: key.rindex(key.split("_", 2)[2])] + "A" * len(key.split("_", 2)[2])
    expect_401(srv.get("/api/v1/models/list", headers={"X-API-Key": guess}), "invalid API key")
    assert last_used(key_id) is None
    assert srv.get("/api/v1/models/list", headers={"X-API-Key": key}).status_code == 200
    assert last_used(key_id) is not None


def test_revocation_within_a_second(make_server):
    srv = make_server(a.auth_env())
    env = a.server_env(srv)
    key_id, key, _ = a.create_key(env, "soon revoked", "clinician")
    hdr = {"X-API-Key": key}
    assert srv.get("/api/v1/models/list", headers=hdr).status_code == 200  # now cached
    a.revoke_key(env, key_id)
    # the server caches key records for 500 ms: one second after the CLI returns it must refuse
    time.sleep(1.0)
    expect_401(srv.get("/api/v1/models/list", headers=hdr), "revoked")
    rr = h.run_cli(["apikey", "revoke", key_id], env=env)
    assert rr.returncode == 0 and "already revoked" in rr.stdout
    listed = h.run_cli(["apikey", "list"], env=env).stdout
    assert re.search(key_id + r"\s+clinician\s+revoked", listed), listed
    # review58 #9: the whole key pasted (a leaked one) revokes its id, and its secret is never
    # echoed; nor is a key-like argument that is not a key
    id2, key2, _ = a.create_key(env, "leaked", "clinician")
    rr = h.run_cli(["apikey", "revoke", key2], env=env)
    secret2 = key2.split("_", 2)[2]
    assert rr.returncode == 0 and "revoking its id " + id2 in rr.stderr, rr.stdout + rr.stderr
    assert secret2 not in rr.stdout + rr.stderr
    listed = h.run_cli(["apikey", "list"], env=env).stdout
    assert re.search(id2 + r"\s+clinician\s+revoked", listed), listed
    rr = h.run_cli(["apikey", "revoke", key2[:-1] + "!"], env=env)
    assert rr.returncode == 2 and secret2[:-1] not in rr.stdout + rr.stderr, rr.stderr
    assert "neither a key id" in rr.stderr, rr.stderr


# --------------------------------------------------------------------------- brute force and rate limits


def test_lockout_after_5_failures(make_server):
    srv = make_server(a.auth_env(RATE_LIMIT_PER_IP="off", AUTH_LOCKOUT_DURATION="3s"))
    env = a.server_env(srv)
    _, key, _ = a.create_key(env, "good", "admin")
    good = {"X-API-Key": key}
    # missing credentials do not count; invalid ones do
    for _ in range(8):
        assert srv.get("/api/v1/models/list").status_code == 401
    assert srv.get("/api/v1/models/list", headers=good).status_code == 200
    for i in range(5):
        r = srv.get("/api/v1/models/list", headers={"X-API-Key": "amr_0123456789abcdef_" + "A" * 43})
        expect_401(r, "failure %d" % (i + 1))
    # locked: even a valid key from this address is refused, with Retry-After
    r = srv.get("/api/v1/models/list", headers=good)
    err = h.assert_error_body(r, 429, "locked_out")
    ra = int(r.headers["Retry-After"])
    assert 1 <= ra <= 3, ra
    assert err["details"]["retry_after_s"] == ra
    # public routes stay reachable (health checks from the same address)
    assert srv.get("/health").status_code == 200
    time.sleep(ra + 0.3)
    assert srv.get("/api/v1/models/list", headers=good).status_code == 200


def test_a_genuine_but_refused_credential_does_not_lock_out_its_address(make_server, tmp_path):
    """review22: a tablet retrying with its revoked key (or an expired one, or an expired JWT
    signed with the right key) locked out every client at its address, valid keys included.
    Those credentials are authentic, not guesses: 401 each time, no lockout; a wrong secret
    for the same key id still counts. review25: unbounded by lockout, each refusal was an
    AUTH_FAILURE record (300 in 0.3 s): now one a minute per key id (JWT: per address)."""
    log = str(tmp_path / "audit.log")
    srv = make_server(a.auth_env(RATE_LIMIT_PER_IP="off", AUTH_LOCKOUT_DURATION="60s", AUDIT_LOG_PATH=log,
                                  SECRET_KEY="s" * 32))
    env = a.server_env(srv)
    _, good_key, _ = a.create_key(env, "good", "clinician")
    revoked_id, revoked_key, _ = a.create_key(env, "tablet", "clinician")
    a.revoke_key(env, revoked_id)
    _, expired_key, _ = a.create_key(env, "old", "clinician", expires="1s")
    time.sleep(1.2)
    expired_jwt = "Bearer " + a.jwt_hs256(["clinician"], exp_in=-120)
    for hdr, why in (({"X-API-Key": revoked_key}, "revoked"), ({"X-API-Key": expired_key}, "expired"),
                     ({"Authorization": expired_jwt}, "expired")):
        for i in range(7):
            expect_401(srv.get("/api/v1/models/list", headers=hdr), "%s %d" % (why, i + 1))
    assert srv.get("/api/v1/models/list", headers={"X-API-Key": good_key}).status_code == 200
    guess = revoked_key[:-4] + ("AAAA" if not revoked_key.endswith("AAAA") else "BBBB")
    for i in range(5):
        expect_401(srv.get("/api/v1/models/list", headers={"X-API-Key": guess}), "guess %d" % (i + 1))
    h.assert_error_body(srv.get("/api/v1/models/list", headers={"X-API-Key": good_key}), 429, "locked_out")
    rc, killed = srv.stop()
    assert rc == 0 and not killed
    fails = [json.loads(x) for x in open(log) if '"AUTH_FAILURE"' in x]
    auth = [f for f in fails if f["action"] == "authenticate"]
    assert len([f for f in auth if f["detail"].get("reason") == "API key revoked"]) == 1, auth
    assert len([f for f in auth if f["detail"].get("reason") == "API key expired"]) == 1, auth
    assert len([f for f in auth if "expired" in f["detail"].get("reason", "") and
                f["detail"].get("credential") == "jwt"]) == 1, auth
    assert len([f for f in auth if f["detail"].get("reason") == "invalid API key"]) == 5, auth


def test_lockout_defaults_15_minutes(make_server):
    srv = make_server(a.auth_env(RATE_LIMIT_PER_IP="off"))
    tok = "Bearer " + a.jwt_none(["admin"])
    for _ in range(5):
        assert srv.get("/metrics", headers={"Authorization": tok}).status_code == 401
    r = srv.get("/metrics", headers={"Authorization": tok})
    h.assert_error_body(r, 429, "locked_out")
    assert 890 <= int(r.headers["Retry-After"]) <= 900, r.headers["Retry-After"]


def test_rate_limit_per_key(make_server):
    srv = make_server(a.auth_env(RATE_LIMIT_PER_KEY="3/m", RATE_LIMIT_PER_IP="off"))
    env = a.server_env(srv)
    _, k1, _ = a.create_key(env, "one", "clinician")
    _, k2, _ = a.create_key(env, "two", "clinician")
    for _ in range(3):
        assert srv.get("/api/v1/models/list", headers={"X-API-Key": k1}).status_code == 200
    r = srv.get("/api/v1/models/list", headers={"X-API-Key": k1})
    h.assert_error_body(r, 429, "rate_limited")
    assert 1 <= int(r.headers["Retry-After"]) <= 20, r.headers["Retry-After"]  # 1 token per 20 s
    assert srv.get("/api/v1/models/list", headers={"X-API-Key": k2}).status_code == 200  # per key


def test_rate_limit_per_address(make_server):
    srv = make_server(a.auth_env(RATE_LIMIT_PER_IP="4/m", RATE_LIMIT_PER_KEY="off"))
    env = a.server_env(srv)
    _, k1, _ = a.create_key(env, "one", "clinician")
    _, k2, _ = a.create_key(env, "two", "clinician")
    for k in (k1, k2, k1, k2):
        assert srv.get("/api/v1/models/list", headers={"X-API-Key": k}).status_code == 200
    r = srv.get("/api/v1/models/list", headers={"X-API-Key": k2})
    h.assert_error_body(r, 429, "rate_limited")
    assert 1 <= int(r.headers["Retry-After"]) <= 15, r.headers["Retry-After"]


# --------------------------------------------------------------------------- configuration


def config_value(r, name):
    m = re.search(r"^%s=(.*)$" % name, r.stdout, re.M)
    assert m, r.stdout
    return m.group(1)


def test_auth_enabled_defaults_and_production_rule(aimedres_bin, tmp_path):
    r = h.run_cli(["config", "check"])
    assert r.returncode == 0, r.stderr
    assert config_value(r, "AUTH_ENABLED") == "false"  # development default
    r = h.run_cli(["config", "check"], env={"ENVIRONMENT": "staging"})
    assert r.returncode == 0 and config_value(r, "AUTH_ENABLED") == "true"
    prod = dict(h.production_audit_env(tmp_path / "audit"), ENVIRONMENT="production",
                SECRET_KEY="5e" + "0123456789abcdef" * 3, JWT_SECRET_KEY="7a" + "fedcba9876543210" * 3,
                API_KEY_SALT="9c" + "0f1e2d3c4b5a6978" * 3)
    r = h.run_cli(["config", "check"], env=prod)
    assert r.returncode == 0, r.stderr
    assert config_value(r, "AUTH_ENABLED") == "true"
    r = h.run_cli(["config", "check"], env=dict(prod, AUTH_ENABLED="false"))
    assert r.returncode == 1
    assert "AUTH_ENABLED: must be true when ENVIRONMENT=production" in r.stderr, r.stderr
    # review58 S9: production keeps an audit trail
    r = h.run_cli(["config", "check"], env={k: v for k, v in prod.items() if not k.startswith("AUDIT_")})
    assert r.returncode == 1 and "AUDIT_LOG_PATH: must be set when ENVIRONMENT=production" in r.stderr, r.stderr
    # review58 S8: an identity provider's keys need the audience this server's tokens carry
    keys = a.Keys(str(tmp_path / "jwtkeys"))
    idp = dict(prod, JWT_PUBLIC_KEYS=keys.spec)
    r = h.run_cli(["config", "check"], env=idp)
    assert r.returncode == 1 and "JWT_AUDIENCE: must be set when ENVIRONMENT=production and JWT_PUBLIC_KEYS" \
        in r.stderr, r.stderr
    r = h.run_cli(["config", "check"], env=dict(idp, JWT_AUDIENCE="aimedres"))
    assert r.returncode == 0, r.stderr
    # review58 S4: with the IdP's keys, HS256 may be left off
    r = h.run_cli(["config", "check"], env={k: v for k, v in dict(idp, JWT_AUDIENCE="aimedres").items()
                                            if k != "JWT_SECRET_KEY"})
    assert r.returncode == 0, r.stderr
    r = h.run_cli(["config", "check"], env={"RATE_LIMIT_PER_KEY": "lots"})
    assert r.returncode == 1 and "RATE_LIMIT_PER_KEY" in r.stderr, r.stderr


def test_auth_disabled_keeps_everything_open(server):
    r = server.get("/metrics")
    assert r.status_code == 200
    assert server.get("/api/v1/models/list").status_code == 200


def test_bad_jwt_keys_refuse_to_start(make_server, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(h.ServerStartError) as e:
        make_server(a.auth_env(JWT_PUBLIC_KEYS="k1=%s" % bad))
    assert "JWT_PUBLIC_KEYS" in str(e.value)


# --------------------------------------------------------------------------- audit and metrics


def read_audit(path, want, timeout=5.0):
    """Audit records (parsed) once `want(records)` holds, or whatever is there at the timeout."""
    import json
    deadline = time.monotonic() + h.scaled(timeout)
    recs = []
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                recs = [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            recs = []
        if want(recs):
            break
        time.sleep(0.05)
    return recs


def test_auth_audit_events_and_metrics(make_server, tmp_path):
    log = str(tmp_path / "audit" / "audit.log")
    srv = make_server(a.auth_env(AUDIT_LOG_PATH=log, SECRET_KEY="k" * 40, RATE_LIMIT_PER_IP="off"))
    env = a.server_env(srv)
    cid, ckey, _ = a.create_key(env, "ward-tablet", "clinician")
    _, akey, _ = a.create_key(env, "prom", "admin")
    for _ in range(3):
        assert srv.get("/api/v1/models/list", headers={"X-API-Key": ckey}).status_code == 200
    bad = "amr_%s_%s" % (cid, "C" * 42 + "A")
    assert srv.get("/api/v1/models/list", headers={"X-API-Key": bad}).status_code == 401
    for _ in range(3):  # review58 S3: one record a minute per principal and route
        assert srv.get("/metrics", headers={"X-API-Key": ckey}).status_code == 403
    for _ in range(3):
        assert srv.get("/api/v1/alerts").status_code == 401

    def complete(recs):
        return sum(1 for r in recs if r["type"] == "AUTH_FAILURE") >= 3
    recs = read_audit(log, complete)
    # review58 #3: an API key's principal is apikey:<id> (names are free text, not unique)
    succ = [r for r in recs if r["type"] == "AUTH_SUCCESS" and r.get("user") == "apikey:" + cid]
    assert len(succ) == 1, recs  # at most once a minute per principal
    assert succ[0]["role"] == "clinician" and succ[0]["outcome"] == "success"
    assert succ[0]["detail"]["key_id"] == cid and succ[0]["source_ip"] == "127.0.0.1"
    assert succ[0]["detail"]["key_name"] == "ward-tablet", succ[0]
    fails = [r for r in recs if r["type"] == "AUTH_FAILURE"]
    anon = [r for r in fails if r["detail"]["reason"] == "no credential"]
    assert len(anon) == 1 and "user" not in anon[0], fails  # anonymous: once a minute per address
    bad_key = [r for r in fails if r["action"] == "authenticate" and r not in anon]
    assert len(bad_key) == 1 and bad_key[0]["detail"]["reason"] == "invalid API key", fails
    assert bad_key[0]["detail"]["key_id"] == cid and bad_key[0]["entity_id"] == "/api/v1/models/list"
    assert "user" not in bad_key[0], bad_key[0]  # a stranger's guess is not the key's principal
    denied = [r for r in fails if r["action"] == "authorize"]
    assert len(denied) == 1 and denied[0]["outcome"] == "denied" and denied[0]["entity_id"] == "/metrics", fails
    with open(log) as f:
        text = f.read()
    for k in (ckey, akey, bad):
        assert a.KEY_RE.match(k).group(2) not in text  # no secret ever reaches the log

    m = srv.get("/metrics", headers={"X-API-Key": akey}).text

    def value(outcome):
        mm = re.search(r'^auth_requests_total\{outcome="%s"\} (\d+)' % outcome, m, re.M)
        assert mm, m[:2000]
        return int(mm.group(1))
    assert value("success") >= 3 and value("unauthorized") == 4 and value("forbidden") == 3


def test_jwt_access_is_recorded_under_the_granting_role_and_a_refused_genuine_token_under_its_subject(
        make_server, tmp_path):
    """review58 #5: a JWT with several roles was recorded under the first in a fixed order
    (reading the audit trail as `clinician`), not the role that granted it; a refusal showed one
    of its roles. review58 #7: a genuine (signature verified) but expired token was audited
    without its subject."""
    log = str(tmp_path / "audit" / "audit.log")
    srv = make_server(a.auth_env(AUDIT_LOG_PATH=log, SECRET_KEY="k" * 40, RATE_LIMIT_PER_IP="off"))
    multi = {"Authorization": "Bearer " + a.jwt_hs256(["clinician", "auditor"], sub="dr-multi")}
    assert srv.get("/api/v1/audit/events?limit=1", headers=multi).status_code == 200
    other = {"Authorization": "Bearer " + a.jwt_hs256(["monitor", "clinician"], sub="dr-other")}
    r = srv.get("/api/v1/audit/verify", headers=other)
    err = h.assert_error_body(r, 403, "forbidden")
    assert err["details"]["role"] == "clinician,monitor", err
    stale = {"Authorization": "Bearer " + a.jwt_hs256(["clinician"], sub="dr-stale", exp_in=-120)}
    expect_401(srv.get("/api/v1/models/list", headers=stale), "expired")

    def complete(recs):
        return any(x.get("user") == "dr-stale" for x in recs)
    recs = read_audit(log, complete)
    access = [x for x in recs if x["type"] == "DATA_ACCESS" and x.get("user") == "dr-multi"]
    assert access and {x["role"] for x in access} == {"auditor"}, access
    ok = [x for x in recs if x["type"] == "AUTH_SUCCESS" and x.get("user") == "dr-multi"]
    assert len(ok) == 1 and ok[0]["role"] == "auditor", ok
    denied = [x for x in recs if x["type"] == "AUTH_FAILURE" and x.get("user") == "dr-other"]
    assert len(denied) == 1 and denied[0]["role"] == "clinician,monitor", denied
    expired = [x for x in recs if x["type"] == "AUTH_FAILURE" and x.get("user") == "dr-stale"]
    assert len(expired) == 1 and "token expired" in expired[0]["detail"]["reason"], expired


def test_each_credential_is_its_own_user_in_the_trail(make_server, tmp_path, demo_manifests):
    """review58 #3: the audit `user` of an API-key request was the key's name, free text and not
    unique: two keys named svc-ehr and a JWT with sub svc-ehr made identical MODEL_INFERENCE
    records. A key's principal is apikey:<id>; a token may not claim that namespace."""
    log = str(tmp_path / "audit" / "audit.log")
    srv = make_server(a.auth_env(AUDIT_LOG_PATH=log, SECRET_KEY="k" * 40, RATE_LIMIT_PER_IP="off"))
    env = a.server_env(srv)
    id1, k1, _ = a.create_key(env, "svc-ehr", "clinician")
    id2, k2, _ = a.create_key(env, "svc-ehr", "clinician")
    body = {"features": h.valid_features(demo_manifests[PARK])}
    for hdr in ({"X-API-Key": k1}, {"X-API-Key": k2},
                {"Authorization": "Bearer " + a.jwt_hs256(["clinician"], sub="svc-ehr")}):
        assert srv.predict(PARK, body, headers=hdr).status_code == 200
    # review60 #1: a genuine but refused (expired) token does not name such a subject either (the
    # first genuine refusal from this address: recorded; the next ones within a minute are not)
    stale = {"Authorization": "Bearer " + a.jwt_hs256(["clinician"], sub="APIKEY:%s\nFORGED" % id1, exp_in=-120)}
    expect_401(srv.predict(PARK, body, headers=stale), "expired")
    for sub in ("apikey:" + id1, "APIKEY:" + id1, " apikey:" + id1):  # review59: any case, leading blanks
        forged = {"Authorization": "Bearer " + a.jwt_hs256(["clinician"], sub=sub)}
        err = expect_401(srv.predict(PARK, body, headers=forged), "apikey namespace")
        assert "API key namespace" in err["message"], (sub, err)
    # a subject is written into every record and SIEM line: no control characters in it
    for sub in ('dr\ntype="MODEL_INFERENCE"', "dr\u2028x", "\u200bapikey:k1", "\ufeffapikey:k1",
                "\u202e1k:yekipa", "x\u009by"):  # review61 #4: invisible and reordering characters
        odd = {"Authorization": "Bearer " + a.jwt_hs256(["clinician"], sub=sub)}
        err = expect_401(srv.predict(PARK, body, headers=odd), "control characters")
        assert "sub claim holds control or invisible characters" in err["message"], (sub, err)
    odd = {"Authorization": "Bearer " + a.jwt_hs256(["clinician"], sub="\u3000apikey:k1")}
    err = expect_401(srv.predict(PARK, body, headers=odd), "ideographic space")
    assert "API key namespace" in err["message"], err
    for sub in ("Dr. Zoë Müller", "医生", "a\u00a0b"):  # names are not refused
        ok = {"Authorization": "Bearer " + a.jwt_hs256(["clinician"], sub=sub)}
        assert srv.predict(PARK, body, headers=ok).status_code == 200, sub


    def complete(recs):
        return sum(1 for x in recs if x["type"] == "MODEL_INFERENCE") >= 6 and any(
            "token expired" in x["detail"].get("reason", "") for x in recs if x["type"] == "AUTH_FAILURE")
    recs = read_audit(log, complete)
    users = [x["user"] for x in recs if x["type"] == "MODEL_INFERENCE"]
    assert sorted(users) == sorted(["apikey:" + id1, "apikey:" + id2, "svc-ehr", "Dr. Zoë Müller", "医生",
                                    "a\u00a0b"]), users
    expired = [x for x in recs if x["type"] == "AUTH_FAILURE" and "token expired" in x["detail"]["reason"]]
    assert len(expired) == 1 and "user" not in expired[0], expired


# --------------------------------------------------------------------------- API key lifecycle audit


def _os_user():
    import pwd
    return pwd.getpwuid(os.geteuid()).pw_name


def test_apikey_lifecycle_audited_while_server_writes(make_server, tmp_path):
    """`apikey create` / `revoke` (separate processes) append APIKEY_CREATED / APIKEY_REVOKED
    to the chain the running server is writing (AUTH_FAILURE records from a client thread),
    under the log's flock: key id, key role and the OS user, never the secret; afterwards the
    whole chain (records and signed checkpoints) verifies and seq has no gap or repeat."""
    import json
    import threading

    import requests

    d = tmp_path / "audit"
    d.mkdir()
    priv, pub = str(d / "sign.pem"), str(d / "verify.pem")
    r = h.run_cli(["audit", "keygen", "--private", priv, "--public", pub])
    assert r.returncode == 0, r.stderr
    log = str(d / "audit.log")
    srv = make_server(a.auth_env(AUDIT_LOG_PATH=log, SECRET_KEY="s" * 40, AUDIT_SIGNING_KEY_PATH=priv,
                                 AUDIT_VERIFY_KEY_PATH=pub, AUDIT_CHECKPOINT_RECORDS="7",
                                 RATE_LIMIT_PER_IP="off", RATE_LIMIT_PER_KEY="off", AUTH_LOCKOUT_THRESHOLD="0"))
    env = a.server_env(srv)
    stop, sent = threading.Event(), []

    def hammer():
        s = requests.Session()
        s.trust_env = False
        bad = {"X-API-Key": "amr_0123456789abcdef_" + "A" * 43}
        while not stop.is_set():
            assert s.get(srv.url("/api/v1/models/list"), headers=bad, timeout=10).status_code == 401
            sent.append(1)

    t = threading.Thread(target=hammer)
    t.start()
    try:
        made = []
        for i in range(4):
            kid, key, _ = a.create_key(env, "svc-%d" % i, a.ROLES[i])
            made.append((kid, key, a.ROLES[i]))
        a.revoke_key(env, made[0][0])
        # unknown key: refused, nothing recorded
        r = h.run_cli(["apikey", "revoke", "fedcba9876543210"], env=env)
        assert r.returncode == 1
    finally:
        stop.set()
        t.join(10)
    assert len(sent) > 20  # the server was appending all along
    assert srv.get("/api/v1/models/list", headers={"X-API-Key": made[1][1]}).status_code == 200
    rc, killed = srv.stop()
    assert rc == 0 and not killed

    recs = [json.loads(line) for line in open(log)]
    assert [x["seq"] for x in recs] == list(range(1, len(recs) + 1))
    created = [x for x in recs if x["type"] == "APIKEY_CREATED"]
    assert [x["entity_id"] for x in created] == [m[0] for m in made]
    for x, (kid, key, role) in zip(created, made):
        assert x["detail"]["key_role"] == role and x["entity_type"] == "api_key"
        assert x["user"] == _os_user() and x["action"] == "C" and x["outcome"] == "success"
    revoked = [x for x in recs if x["type"] == "APIKEY_REVOKED"]
    assert len(revoked) == 1 and revoked[0]["entity_id"] == made[0][0]
    assert revoked[0]["detail"]["key_role"] == "admin" and revoked[0]["user"] == _os_user()
    assert sum(1 for x in recs if x["type"] == "AUTH_FAILURE") >= 20
    text = open(log).read()
    for _, key, _ in made:
        assert a.KEY_RE.match(key).group(2) not in text
    r = h.run_cli(["audit", "verify", "--json"], env=env)
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["ok"] is True, r.stdout + r.stderr
    assert out["checkpoints_signed"] and out["checkpoints_checked"] >= 3, out


def test_apikey_create_refused_when_audit_is_broken(make_server, tmp_path):
    """With AUDIT_LOG_PATH set but unusable, create and revoke refuse before changing anything."""
    srv = make_server(a.auth_env())
    env = a.server_env(srv)
    kid, _, _ = a.create_key(env, "before", "clinician")
    broken = dict(env, AUDIT_LOG_PATH=str(tmp_path / "audit.log"))  # no SECRET_KEY: audit cannot start
    broken.pop("SECRET_KEY", None)
    r = h.run_cli(["apikey", "create", "--name", "x", "--role", "admin"], env=broken)
    assert r.returncode == 1 and "SECRET_KEY" in r.stderr and not a.KEY_RE.search(r.stdout), r.stderr
    r = h.run_cli(["apikey", "revoke", kid], env=broken)
    assert r.returncode == 1 and "SECRET_KEY" in r.stderr
    listed = h.run_cli(["apikey", "list"], env=env).stdout
    assert re.search(kid + r"\s+clinician\s+active", listed) and " x\n" not in listed, listed


# --------------------------------------------------------------------------- clients behind a proxy


BAD_KEY = {"X-API-Key": "amr_0123456789abcdef_" + "A" * 43}


def test_forwarded_for_ignored_from_untrusted_peer(make_server, tmp_path):
    """TRUSTED_PROXIES empty (the default): a spoofed X-Forwarded-For changes nothing, lockout
    keys on the TCP peer and the audit names the peer."""
    log = str(tmp_path / "audit" / "audit.log")
    srv = make_server(a.auth_env(RATE_LIMIT_PER_IP="off", AUDIT_LOG_PATH=log, SECRET_KEY="k" * 40))
    _, good, _ = a.create_key(a.server_env(srv), "good", "admin")
    for i in range(5):
        expect_401(srv.get("/api/v1/models/list", headers=dict(BAD_KEY, **{"X-Forwarded-For": "203.0.113.%d" % i})), i)
    r = srv.get("/api/v1/models/list", headers={"X-API-Key": good, "X-Forwarded-For": "198.51.100.1"})
    h.assert_error_body(r, 429, "locked_out")
    recs = read_audit(log, lambda rs: sum(1 for x in rs if x["type"] == "AUTH_FAILURE") >= 6)
    fails = [x for x in recs if x["type"] == "AUTH_FAILURE"]
    assert len(fails) >= 6 and {x["source_ip"] for x in fails} == {"127.0.0.1"}, fails


def test_forwarded_for_from_trusted_proxy(make_server, tmp_path, demo_manifests):
    """TRUSTED_PROXIES lists 127.0.0.1: the client is the right-most untrusted X-Forwarded-For
    entry. Lockout keys on it (the locked client is refused, another client and the proxy
    itself are not), the audit records it for auth and prediction events."""
    log = str(tmp_path / "audit" / "audit.log")
    srv = make_server(a.auth_env(RATE_LIMIT_PER_IP="off", AUDIT_LOG_PATH=log, SECRET_KEY="k" * 40,
                                 TRUSTED_PROXIES="10.0.0.0/8, 127.0.0.1, ::1"))
    env = a.server_env(srv)
    _, good, _ = a.create_key(env, "good", "admin")
    _, clin, _ = a.create_key(env, "ward", "clinician")
    attacker = {"X-Forwarded-For": "6.6.6.6, 203.0.113.7, 10.1.2.3"}  # spoof, client, inner proxy
    for _ in range(5):
        expect_401(srv.get("/api/v1/models/list", headers=dict(BAD_KEY, **attacker)), "bad key")
    r = srv.get("/api/v1/models/list", headers=dict(attacker, **{"X-API-Key": good}))
    h.assert_error_body(r, 429, "locked_out")
    r = srv.get("/api/v1/models/list", headers={"X-API-Key": good, "X-Forwarded-For": "203.0.113.7"})
    h.assert_error_body(r, 429, "locked_out")  # the same client, whatever it puts on the left
    r = srv.get("/api/v1/models/list", headers={"X-API-Key": good, "X-Forwarded-For": "203.0.113.8"})
    assert r.status_code == 200, r.text  # another client behind the same proxy
    assert srv.get("/api/v1/models/list", headers={"X-API-Key": good}).status_code == 200  # the proxy itself
    body = {"features": h.valid_features(demo_manifests[PARK]), "patient_id": "xff-patient"}
    r = srv.predict(PARK, body, headers={"X-API-Key": clin, "X-Forwarded-For": "[2001:db8::7]:4431"})
    assert r.status_code == 200, r.text
    pid = r.json()["prediction_id"]

    def done(rs):
        return any(x["type"] == "MODEL_INFERENCE" for x in rs)
    recs = read_audit(log, done)
    fails = [x for x in recs if x["type"] == "AUTH_FAILURE"]
    assert {x["source_ip"] for x in fails} == {"203.0.113.7"}, fails
    assert any(x["action"] == "lockout" for x in fails)
    inf = [x for x in recs if x["type"] == "MODEL_INFERENCE"]
    assert len(inf) == 1 and inf[0]["detail"]["prediction_id"] == pid and inf[0]["source_ip"] == "2001:db8::7", inf


def test_forwarded_for_rate_limit_per_client(make_server):
    """RATE_LIMIT_PER_IP counts per forwarded client, not per proxy."""
    srv = make_server(a.auth_env(RATE_LIMIT_PER_IP="2/m", RATE_LIMIT_PER_KEY="off", TRUSTED_PROXIES="127.0.0.1"))
    _, k, _ = a.create_key(a.server_env(srv), "one", "clinician")
    for client in ("192.0.2.1", "192.0.2.1"):
        assert srv.get("/api/v1/models/list", headers={"X-API-Key": k, "X-Forwarded-For": client}).status_code == 200
    r = srv.get("/api/v1/models/list", headers={"X-API-Key": k, "X-Forwarded-For": "192.0.2.1"})
    h.assert_error_body(r, 429, "rate_limited")
    assert srv.get("/api/v1/models/list", headers={"X-API-Key": k, "X-Forwarded-For": "192.0.2.2"}).status_code == 200


def test_forwarded_for_repeated_headers_are_one_list(make_server):
    """A proxy that adds its own X-Forwarded-For header after the client's (instead of
    appending to it) still has the last word: the headers are read as one list, in order."""
    srv = make_server(a.auth_env(RATE_LIMIT_PER_IP="1/m", RATE_LIMIT_PER_KEY="off", TRUSTED_PROXIES="127.0.0.1"))
    _, k, _ = a.create_key(a.server_env(srv), "one", "clinician")
    assert srv.get("/api/v1/models/list", headers={"X-API-Key": k, "X-Forwarded-For": "192.0.2.7"}).status_code == 200

    def two_headers(spoof, real):
        return h.raw_request(srv.port, ("GET /api/v1/models/list HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\n"
                                        "X-Forwarded-For: %s\r\nX-Forwarded-For: %s\r\nConnection: close\r\n\r\n"
                                        % (k, spoof, real)).encode())
    # the client claims 192.0.2.99 in its own header; the proxy's header says 192.0.2.7
    r = two_headers("192.0.2.99", "192.0.2.7")
    assert r.status == 429 and r.json()["error"]["code"] == "rate_limited", r.body[:200]
    r = two_headers("192.0.2.7", "192.0.2.8")  # and the other way round: a fresh client
    assert r.status == 200, r.body[:200]
    # review58 #1: a client header padded past 4 KiB was ignored whole, with the proxy's entry:
    # the client became the proxy (here 127.0.0.1, with a fresh budget). Its end still counts.
    r = two_headers("6.6.6.6," * 520, "192.0.2.7")
    assert r.status == 429 and r.json()["error"]["code"] == "rate_limited", r.body[:200]
    r = two_headers("6.6.6.6," * 520 + " 192.0.2.7", "10.9.9.9")  # one header: its end is the client
    assert r.status == 200, r.body[:200]
    r = h.raw_request(srv.port, ("GET /api/v1/models/list HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\n"
                                 "X-Forwarded-For: %s 192.0.2.7\r\nConnection: close\r\n\r\n"
                                 % (k, "6.6.6.6," * 520)).encode())
    assert r.status == 429 and r.json()["error"]["code"] == "rate_limited", r.body[:200]


def test_malformed_trusted_proxies_refuses_to_start(make_server):
    with pytest.raises(h.ServerStartError) as e:
        make_server(a.auth_env(TRUSTED_PROXIES="10.0.0.0/8, proxy.internal"))
    assert "TRUSTED_PROXIES" in str(e.value) and "proxy.internal" in str(e.value)
    r = h.run_cli(["config", "check"], env={"TRUSTED_PROXIES": "::1/200"})
    assert r.returncode == 1 and "TRUSTED_PROXIES" in r.stderr, r.stderr
    r = h.run_cli(["config", "check"], env={"TRUSTED_PROXIES": "127.0.0.1, ::1, 10.0.0.0/8, fd00::/8"})
    assert r.returncode == 0, r.stderr
    # review62 #6, review63 #2: a well-formed but too wide value is refused with its reason
    for spec, why in [("::ffff:0.0.0.0/96", "'::ffff:0.0.0.0/96' trusts too much of IPv4"),
                      (",".join("%d.0.0.0/8" % i for i in range(1, 4)), "the entries together trust more than two /8s of IPv4")]:
        r = h.run_cli(["config", "check"], env={"TRUSTED_PROXIES": spec})
        assert r.returncode == 1 and "TRUSTED_PROXIES: " + why in r.stderr, r.stderr


def test_repeated_credential_fields_are_refused_and_an_empty_bearer_is_named(make_server):
    """review58 S5: two Authorization or two X-API-Key fields are a 400 before any credential is
    read (a front end and the server could each act on a different one); S6: "Bearer" without
    a token, and an over-long token, say "invalid token"."""
    srv = make_server(a.auth_env(RATE_LIMIT_PER_IP="off", RATE_LIMIT_PER_KEY="off", AUTH_LOCKOUT_THRESHOLD="0"))
    _, k, _ = a.create_key(a.server_env(srv), "one", "admin")
    tok = "Bearer " + a.jwt_hs256(["admin"])

    def raw(*fields):
        head = "GET /api/v1/models/list HTTP/1.1\r\nHost: x\r\n%s\r\nConnection: close\r\n\r\n" % "\r\n".join(fields)
        return h.raw_request(srv.port, head.encode())
    assert raw("X-API-Key: " + k).status == 200  # positive controls
    assert raw("Authorization: " + tok).status == 200
    assert raw("X-API-Key: " + k, "Authorization: " + tok).status == 200  # the API key is the credential
    for fields, name in [(("X-API-Key: " + k, "X-API-Key: " + k), "X-API-Key"),
                         (("Authorization: " + tok, "authorization: " + tok), "Authorization"),
                         (("X-API-Key: " + k, "Authorization: " + tok, "Authorization: Bearer x"), "Authorization")]:
        r = raw(*fields)
        assert r.status == 400, (fields, r.status, r.body[:300])
        err = r.json()["error"]
        assert err["code"] == "bad_request" and err["details"]["header"] == name, err
        assert "the %s header is repeated" % name in err["message"], err
    for value, msg in [("Bearer", "invalid token: empty"), ("Bearer   ", "invalid token: empty"),
                       ("bearer " + "a" * 9000, "invalid token: longer than")]:
        r = raw("Authorization: " + value)
        assert r.status == 401 and msg in r.json()["error"]["message"], (value[:20], r.body[:300])
    r = raw("Authorization: Bearerx")
    assert r.status == 401 and "unsupported authorization scheme" in r.json()["error"]["message"], r.body[:300]


def test_an_ipv4_client_of_a_dual_stack_listener_is_one_client(make_server, tmp_path):
    """review62 #5: on an IPv6 socket (here bound to ::ffff:127.0.0.1, loopback only, as a
    server on "::" takes IPv4 clients) a direct IPv4 client was ::ffff:127.0.0.1 while the same
    client through a trusted proxy was 127.0.0.1: two lockout counts, two rate-limit buckets,
    two source_ips in the trail. Now it is 127.0.0.1 both ways."""
    log = str(tmp_path / "audit" / "audit.log")
    srv = make_server(a.auth_env(AUDIT_LOG_PATH=log, SECRET_KEY="k" * 40, RATE_LIMIT_PER_IP="off",
                                 AUTH_LOCKOUT_THRESHOLD="3", TRUSTED_PROXIES="127.0.0.2"),
                      args=["--host", "::ffff:127.0.0.1"])
    kid, key, _ = a.create_key(a.server_env(srv), "one", "clinician")
    bad = "amr_%s_%s" % (kid, "C" * 42 + "A")

    def get(api_key, source, xff=None):
        extra = "X-Forwarded-For: %s\r\n" % xff if xff else ""
        req = ("GET /api/v1/models/list HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\n%sConnection: close\r\n\r\n"
               % (api_key, extra)).encode()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10, source_address=(source, 0)) as s:
            s.sendall(req)
            return h.read_raw_response(s).status
    assert get(bad, "127.0.0.2", xff="127.0.0.1") == 401  # through the proxy: client 127.0.0.1
    assert get(bad, "127.0.0.2", xff="127.0.0.1") == 401
    assert get(bad, "127.0.0.1") == 401  # direct: the same client, its third failure
    assert get(key, "127.0.0.1") == 429  # locked out, whichever way it comes
    recs = read_audit(log, lambda r: sum(1 for x in r if x["type"] == "AUTH_FAILURE") >= 4)
    ips = {x.get("source_ip") for x in recs if x["type"] == "AUTH_FAILURE"}
    assert ips == {"127.0.0.1"}, ips
