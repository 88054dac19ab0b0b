"""The MWAP backend's legacy ciphertext: read with MWAP_LEGACY_ENCRYPTION_KEY, converted by rotation.

The vectors were made by the backend's own code under Node 20 (``crypto.createCipher('aes-256-gcm',
ENCRYPTION_KEY)`` with ``setAAD(Buffer.from('MWAP-AUTH-DATA'))``, printed ``iv:authTag:ciphertext``);
they are hard-coded so the tests need no Node.
"""

import hashlib
import json
import os
import subprocess
import sys

import factories
import pytest
from bson import ObjectId
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pymongo.database import Database

from mwap.connections import mongo_client
from mwap.crypto import (
    LEGACY_KEY_ID,
    Binding,
    CryptoError,
    KeyRing,
    KeyRingError,
    LegacyKeyMissingError,
    MalformedCiphertextError,
    TamperedError,
    UnknownKeyError,
    integration_binding,
    is_legacy,
    legacy_key_and_nonce,
    provider_binding,
)
from mwap.rotation import rotate
from mwap.settings import Settings

PASSWORD = "0123456789abcdef0123456789abcdef"
VECTORS = [
    (
        "ya29.legacy-access-token",
        "9328c9308e11d56c086cae0dc7021b64:8fc91c80e49cc5e7ab8480bb511cbeb1:ed0e584681e262a167bb44419c4d93fc264f2176bd5b49f5",
    ),
    (
        "1//legacy-refresh-token",
        "af90add31468ae71a697785ffb765c0f:ec1feac90077327b1178bb950c139acb:a5404513cae966a57ff54f099b5c95ea3d11786db95542",
    ),
    ("", "ed4c9df0b95322c4ac2ea8da92185b14:eb94748cc66778a72eef5538abd86ae0:"),
    (
        "héllo ✓",
        "96ac4bd6ffac7dfad785833bfc2f98a9:eb4c85256c8a96fdf40596b0794e9b69:fcacc313c3e127249a4b",
    ),
]
ACCESS_VECTOR, REFRESH_VECTOR = VECTORS[0][1], VECTORS[1][1]
K1 = KeyRing.generate_key()
K2 = KeyRing.generate_key()
ANYWHERE = integration_binding(ObjectId(), ObjectId(), "authData.accessToken")


def evp_bytes_to_key(password: str) -> tuple[bytes, bytes]:
    """OpenSSL EVP_BytesToKey(MD5, 1 round, no salt), written out apart from mwap.crypto's."""
    secret, out, block = password.encode(), b"", b""
    while len(out) < 44:
        block = hashlib.md5(block + secret, usedforsecurity=False).digest()
        out += block
    return out[:32], out[32:44]


def legacy_encrypt(plaintext: str, password: str = PASSWORD) -> str:
    """What the backend's encrypt() writes (test-only: the platform never writes this format)."""
    key, nonce = evp_bytes_to_key(password)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), b"MWAP-AUTH-DATA")
    return f"{os.urandom(16).hex()}:{sealed[-16:].hex()}:{sealed[:-16].hex()}"


def legacy_ring(*kids: str, password: str | None = PASSWORD) -> KeyRing:
    keys = {"k1": K1, "k2": K2}
    return KeyRing.parse(",".join(f"{kid}:{keys[kid]}" for kid in kids or ("k1",)), legacy_password=password)


# --- format and decryption -------------------------------------------------------------------------


@pytest.mark.parametrize(("plaintext", "ciphertext"), VECTORS)
def test_backend_vectors_decrypt_with_the_right_password(plaintext: str, ciphertext: str) -> None:
    ring = legacy_ring()
    assert ring.is_legacy(ciphertext)
    assert is_legacy(ciphertext)
    assert ring.decrypt(ciphertext, ANYWHERE) == plaintext
    assert ring.key_id_of(ciphertext) == LEGACY_KEY_ID == "legacy"
    assert ring.needs_rotation(ciphertext)


@pytest.mark.parametrize(("plaintext", "ciphertext"), VECTORS)
def test_helper_reproduces_the_backend_bit_for_bit(plaintext: str, ciphertext: str) -> None:
    # Key and nonce come from the password alone, so only the (unused) printed iv differs.
    assert legacy_key_and_nonce(PASSWORD) == evp_bytes_to_key(PASSWORD)
    assert legacy_encrypt(plaintext).split(":")[1:] == ciphertext.split(":")[1:]


def test_the_binding_is_not_authenticated_and_the_iv_is_unused() -> None:
    # Why the format must go: the same value decrypts anywhere, whatever iv is printed.
    ring = legacy_ring()
    elsewhere = Binding("cloudProviders", None, "another", "clientSecret")
    assert ring.decrypt(ACCESS_VECTOR, elsewhere) == "ya29.legacy-access-token"
    assert ring.decrypt("0" * 32 + ACCESS_VECTOR[32:], ANYWHERE) == "ya29.legacy-access-token"


def test_nonce_reuse_leaks_the_xor_of_plaintexts() -> None:
    # One key and one nonce for every value: XOR of two ciphertexts = XOR of their plaintexts.
    a, b = b"ya29.legacy-access-token", b"1//legacy-refresh-token"
    ca, cb = bytes.fromhex(ACCESS_VECTOR.split(":")[2]), bytes.fromhex(REFRESH_VECTOR.split(":")[2])
    n = min(len(a), len(b))
    assert bytes(x ^ y for x, y in zip(ca[:n], cb[:n], strict=True)) == bytes(
        x ^ y for x, y in zip(a[:n], b[:n], strict=True)
    )


def test_without_a_legacy_key_the_error_says_what_to_set() -> None:
    ring = legacy_ring(password=None)
    assert not ring.has_legacy_key
    assert ring.needs_rotation(ACCESS_VECTOR)  # still recognised, so rotation reports it
    with pytest.raises(LegacyKeyMissingError) as caught:
        ring.decrypt(ACCESS_VECTOR, ANYWHERE)
    assert isinstance(caught.value, CryptoError)
    assert caught.value.kid is None
    message = str(caught.value)
    assert "legacy format" in message
    assert "MWAP backend" in message
    assert "MWAP_LEGACY_ENCRYPTION_KEY" in message
    assert "ya29" not in message


def test_wrong_password_fails_authentication_clearly() -> None:
    ring = legacy_ring(password="not-the-backend-key")
    with pytest.raises(TamperedError) as caught:
        ring.decrypt(ACCESS_VECTOR, ANYWHERE)
    message = str(caught.value)
    assert (
        "legacy ciphertext failed authentication: wrong MWAP_LEGACY_ENCRYPTION_KEY or altered value"
        in message
    )
    assert caught.value.kid == LEGACY_KEY_ID
    assert "not-the-backend-key" not in message
    assert PASSWORD not in message


def flip(hex_text: str, index: int) -> str:
    return hex_text[:index] + format(int(hex_text[index], 16) ^ 1, "x") + hex_text[index + 1 :]


@pytest.mark.parametrize(
    "tampered",
    [
        flip(ACCESS_VECTOR, 33 + 31),  # last hex digit of the tag
        flip(ACCESS_VECTOR, 66),  # first hex digit of the ciphertext
        ACCESS_VECTOR[:-2],  # truncated by one byte
        VECTORS[2][1][:66] + "00",  # a byte appended to the empty ciphertext
    ],
)
def test_tampered_legacy_value_fails(tampered: str) -> None:
    assert is_legacy(tampered)
    with pytest.raises(TamperedError, match="wrong MWAP_LEGACY_ENCRYPTION_KEY or altered value"):
        legacy_ring().decrypt(tampered, ANYWHERE)


@pytest.mark.parametrize(
    "value",
    [
        ACCESS_VECTOR.upper(),  # Node prints lowercase hex
        ACCESS_VECTOR[:-1],  # odd-length ciphertext hex
        ACCESS_VECTOR[2:],  # a 15-byte iv
        ACCESS_VECTOR[:32] + ":" + ACCESS_VECTOR[35:],  # a 15-byte tag
        ACCESS_VECTOR + ":00",
        " " + ACCESS_VECTOR,
        ACCESS_VECTOR + "\n",
        "0" * 32 + ":" + "0" * 32 + ":" + "00" * (64 * 1024 + 1),  # beyond the length bound
        "plaintext",
        "enc:v1:k1:AAAA",
    ],
)
def test_only_the_exact_legacy_shape_is_legacy(value: str) -> None:
    ring = legacy_ring()
    assert not is_legacy(value)
    with pytest.raises(MalformedCiphertextError):
        ring.decrypt(value, ANYWHERE)


def test_non_strings_are_not_legacy() -> None:
    assert not is_legacy(None)
    assert not is_legacy(b"00" * 33)


def test_the_ring_still_only_writes_enc_v1() -> None:
    ring = legacy_ring("k2", "k1")
    sealed = ring.encrypt("ya29.legacy-access-token", ANYWHERE)
    assert sealed.startswith("enc:v1:k2:")
    assert not ring.is_legacy(sealed)
    assert not ring.needs_rotation(sealed)
    assert ring.key_id_of(sealed) == "k2"
    assert ring.decrypt(sealed, ANYWHERE) == "ya29.legacy-access-token"
    old = legacy_ring("k1").encrypt("x", ANYWHERE)
    assert ring.needs_rotation(old)
    with pytest.raises(UnknownKeyError):
        legacy_ring("k2").decrypt(old, ANYWHERE)


def test_legacy_key_id_is_reserved_and_the_password_cannot_be_empty() -> None:
    with pytest.raises(KeyRingError, match="reserved"):
        KeyRing.parse(f"legacy:{K1}")
    with pytest.raises(KeyRingError, match="empty"):
        KeyRing.parse(f"k1:{K1}", legacy_password="")


# --- ObjectId bindings -----------------------------------------------------------------------------


def test_objectid_binds_as_its_hex_form_and_the_aad_format_is_unchanged() -> None:
    tenant, integration = ObjectId(), ObjectId()
    as_oid = integration_binding(tenant, integration, "authData.accessToken")
    as_hex = integration_binding(str(tenant), str(integration), "authData.accessToken")
    assert as_oid.associated_data() == as_hex.associated_data()
    assert (
        as_oid.associated_data()
        == f"mwap:v1|cloudIntegrations|{tenant}|{integration}|authData.accessToken".encode()
    )
    assert integration_binding("demo-acme", "int-demo-google", "authData.refreshToken").associated_data() == (
        b"mwap:v1|cloudIntegrations|demo-acme|int-demo-google|authData.refreshToken"
    )
    assert (
        provider_binding("google-drive").associated_data()
        == b"mwap:v1|cloudProviders||google-drive|clientSecret"
    )
    provider = ObjectId()
    assert provider_binding(provider).associated_data() == provider_binding(str(provider)).associated_data()
    ring = legacy_ring()
    assert ring.decrypt(ring.encrypt("token", as_oid), as_hex) == "token"
    with pytest.raises(TamperedError):
        ring.decrypt(
            ring.encrypt("token", as_oid), integration_binding(tenant, ObjectId(), "authData.accessToken")
        )


# --- settings ---------------------------------------------------------------------------------------

REQUIRED_ENV = {
    "MWAP_REDIS_URL": "redis://127.0.0.1:6379/0",
    "MWAP_MONGO_URL": "mongodb://127.0.0.1:27017",
    "MWAP_ENCRYPTION_KEYS": f"k1:{K1}",
    "MWAP_ADMIN_API_KEY": "a" * 32,
}


def test_settings_read_mwap_legacy_encryption_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from mwap.connections import key_ring  # noqa: PLC0415 - the process cached ring

    for name, value in {**REQUIRED_ENV, "MWAP_LEGACY_ENCRYPTION_KEY": PASSWORD}.items():
        monkeypatch.setenv(name, value)
    settings = Settings()  # type: ignore[call-arg]
    assert PASSWORD not in repr(settings)
    assert settings.key_ring().decrypt(ACCESS_VECTOR, ANYWHERE) == "ya29.legacy-access-token"
    assert key_ring(settings).decrypt(ACCESS_VECTOR, ANYWHERE) == "ya29.legacy-access-token"

    monkeypatch.setenv("MWAP_LEGACY_ENCRYPTION_KEY", "")  # empty: as if unset
    unset = Settings()  # type: ignore[call-arg]
    assert unset.legacy_encryption_key is None
    for ring in (unset.key_ring(), key_ring(unset)):
        with pytest.raises(LegacyKeyMissingError):
            ring.decrypt(ACCESS_VECTOR, ANYWHERE)


# --- rotation against MongoDB ----------------------------------------------------------------------


class Interrupted(Exception):
    pass


@pytest.fixture
def fresh(settings: Settings) -> Database:
    name = factories.uid("legacy").replace("-", "_")
    yield mongo_client(settings)[name]
    mongo_client(settings).drop_database(name)


def seed_backend(db: Database) -> dict[tuple[str, ObjectId, str], str]:
    """Documents as the MWAP backend left them: ObjectIds, legacy ciphertext; one enc:v1 under k1.

    Returns the expected plaintext of every secret by (collection, _id, field path).
    """
    tenant = ObjectId()
    provider_ids = [ObjectId(), ObjectId()]
    expected: dict[tuple[str, ObjectId, str], str] = {}
    integrations = []
    for n in range(5):
        _id = ObjectId()
        if n == 0:  # exactly what the backend wrote
            access, refresh = VECTORS[0][1], VECTORS[1][1]
            expected_access, expected_refresh = VECTORS[0][0], VECTORS[1][0]
        else:
            expected_access, expected_refresh = f"ya29.access-{n}-é", f"1//refresh-{n}"
            access, refresh = legacy_encrypt(expected_access), legacy_encrypt(expected_refresh)
        if n == 4:  # already converted once, under the older ring key
            access = legacy_ring("k1").encrypt(
                expected_access, integration_binding(tenant, _id, "authData.accessToken")
            )
        integrations.append(
            {
                "_id": _id,
                "tenantId": tenant,
                "providerId": provider_ids[n % 2],
                "status": "active",
                "authData": {
                    "accessToken": access,
                    "refreshToken": refresh,
                    "scope": ["https://www.googleapis.com/auth/drive.readonly"],
                },
            }
        )
        expected["cloudIntegrations", _id, "authData.accessToken"] = expected_access
        expected["cloudIntegrations", _id, "authData.refreshToken"] = expected_refresh
    db["cloudIntegrations"].insert_many(integrations)
    providers = [
        {
            "_id": provider_ids[0],
            "name": "Google Drive",
            "slug": "google-drive",
            "clientSecret": VECTORS[3][1],
        },
        {
            "_id": provider_ids[1],
            "name": "OneDrive",
            "slug": "onedrive",
            "clientSecret": legacy_encrypt("onedrive-client-secret"),
        },
    ]
    db["cloudProviders"].insert_many(providers)
    expected["cloudProviders", provider_ids[0], "clientSecret"] = VECTORS[3][0]
    expected["cloudProviders", provider_ids[1], "clientSecret"] = "onedrive-client-secret"
    return expected


def stored(db: Database) -> dict[tuple[str, ObjectId, str], tuple[str, Binding]]:
    """Every stored secret with the binding the platform reads it under."""
    out = {}
    for doc in db["cloudIntegrations"].find():
        for field in ("accessToken", "refreshToken"):
            path = f"authData.{field}"
            binding = integration_binding(doc["tenantId"], doc["_id"], path)
            out["cloudIntegrations", doc["_id"], path] = (doc["authData"][field], binding)
    for doc in db["cloudProviders"].find():
        out["cloudProviders", doc["_id"], "clientSecret"] = (
            doc["clientSecret"],
            provider_binding(doc["_id"]),
        )
    return out


def test_interrupted_rotation_converts_every_legacy_value_and_resumes(fresh: Database) -> None:
    expected = seed_backend(fresh)
    ring = legacy_ring("k2", "k1")
    legacy_total = sum(is_legacy(value) for value, _ in stored(fresh).values())
    assert legacy_total == 5 * 2 - 1 + 2

    def stop_after_first_batch(collection: str, report: object) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        rotate(fresh, ring, batch_size=2, progress=stop_after_first_batch)
    halfway = stored(fresh)
    assert {ring.key_id_of(value) for value, _ in halfway.values()} == {"legacy", "k1", "k2"}
    assert sum(is_legacy(value) for value, _ in halfway.values()) == legacy_total - 4  # 2 documents
    assert {key: ring.decrypt(value, binding) for key, (value, binding) in halfway.items()} == expected

    report = rotate(fresh, ring, batch_size=2)
    assert report.failures == []
    assert report.scanned == 5 + 2
    assert report.legacy_converted == legacy_total - 4
    assert report.rotated_secrets == legacy_total - 4 + 1  # plus the enc:v1 value under k1
    assert report.rotated_documents == 3 + 2
    audit = fresh["auditLogs"].find_one({"action": "keys.rotated"}, sort=[("createdAt", -1)])
    assert audit["details"]["legacyConverted"] == legacy_total - 4
    assert audit["details"]["rotatedSecrets"] == report.rotated_secrets

    final = stored(fresh)
    newest_only = KeyRing.parse(f"k2:{K2}")  # neither k1 nor the legacy key is needed any more
    for key, (value, binding) in final.items():
        assert value.startswith("enc:v1:k2:"), key
        assert newest_only.decrypt(value, binding) == expected[key]
    # Converted values are now bound to their place: another integration's binding fails.
    (_, first_id, _), (value, _) = next(iter(final.items()))
    other = next(doc for doc in fresh["cloudIntegrations"].find() if doc["_id"] != first_id)
    with pytest.raises(TamperedError):
        newest_only.decrypt(
            value, integration_binding(other["tenantId"], other["_id"], "authData.accessToken")
        )

    again = rotate(fresh, ring)
    assert (again.rotated_secrets, again.legacy_converted, again.failures) == (0, 0, [])
    assert stored(fresh) == final


def test_legacy_values_without_the_legacy_key_are_failures_not_a_crash(fresh: Database) -> None:
    expected = seed_backend(fresh)
    before = stored(fresh)
    report = rotate(fresh, legacy_ring("k2", "k1", password=None), batch_size=2)
    legacy_keys = [key for key, (value, _) in before.items() if is_legacy(value)]
    assert sorted((f["collection"], f["id"], f["field"]) for f in report.failures) == sorted(
        (collection, str(_id), path) for collection, _id, path in legacy_keys
    )
    assert all("MWAP_LEGACY_ENCRYPTION_KEY" in f["error"] for f in report.failures)
    assert (report.rotated_secrets, report.legacy_converted) == (1, 0)  # only the enc:v1 value under k1
    after = stored(fresh)
    assert all(after[key][0] == before[key][0] for key in legacy_keys)  # left as they were

    report = rotate(fresh, legacy_ring("k2", "k1"))
    assert report.failures == []
    assert report.legacy_converted == len(legacy_keys)
    ring = legacy_ring("k2")
    assert {key: ring.decrypt(value, binding) for key, (value, binding) in stored(fresh).items()} == expected


def test_keys_rotate_cli_counts_legacy_conversions(fresh: Database, stack_env: dict[str, str]) -> None:
    expected = seed_backend(fresh)
    env = {**stack_env, "MWAP_MONGO_DB": fresh.name, "MWAP_ENCRYPTION_KEYS": f"k2:{K2},k1:{K1}"}

    def run(extra: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mwap_cli", "--json", "keys", "rotate", "--batch-size", "3"],
            env={**env, **extra},
            capture_output=True,
            text=True,
            check=False,
            cwd=os.getcwd(),
        )

    missing = run({})
    assert missing.returncode == 1, missing.stderr
    output = json.loads(missing.stdout)
    assert output["legacyConverted"] == 0
    assert len(output["failures"]) == 11
    assert "MWAP_LEGACY_ENCRYPTION_KEY" in output["failures"][0]["error"]

    result = run({"MWAP_LEGACY_ENCRYPTION_KEY": PASSWORD})
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert (output["primaryKey"], output["legacyConverted"], output["rotatedSecrets"]) == ("k2", 11, 11)
    assert output["failures"] == []
    assert "legacy format" in result.stderr  # progress on stderr
    for secret in [PASSWORD, *filter(None, expected.values())]:
        assert secret not in missing.stdout + missing.stderr + result.stdout + result.stderr
    assert K2 not in result.stdout + result.stderr  # nor the ring's key material
