"""Credential encryption: round trip, nonces, binding, tampering, key ring handling."""

import base64

import pytest

from mwap.crypto import (
    ACCESS_TOKEN,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    SECRETS,
    Binding,
    KeyRing,
    KeyRingError,
    MalformedCiphertextError,
    TamperedError,
    UnknownKeyError,
    integration_binding,
    provider_binding,
    seal,
    unseal,
)


def ring(*kids: str) -> KeyRing:
    return KeyRing.parse(",".join(f"{kid}:{KeyRing.generate_key()}" for kid in kids))


ACCESS = integration_binding("tenant-a", "int-1", "authData.accessToken")


def test_round_trip_and_format() -> None:
    keys = ring("k1")
    sealed = keys.encrypt("ya29.secret-token", ACCESS)
    assert sealed.startswith("enc:v1:k1:")
    assert "secret-token" not in sealed
    assert keys.decrypt(sealed, ACCESS) == "ya29.secret-token"


def test_every_encryption_uses_a_fresh_nonce() -> None:
    keys = ring("k1")
    sealed = [keys.encrypt("same", ACCESS) for _ in range(200)]
    nonces = {base64.urlsafe_b64decode(s.split(":")[3] + "==")[:12] for s in sealed}
    assert len(nonces) == 200


@pytest.mark.parametrize(
    "elsewhere",
    [
        integration_binding("tenant-a", "int-2", "authData.accessToken"),  # another integration
        integration_binding("tenant-b", "int-1", "authData.accessToken"),  # another tenant
        integration_binding("tenant-a", "int-1", "authData.refreshToken"),  # another field
        Binding("cloudProviders", None, "int-1", "authData.accessToken"),  # another collection
    ],
)
def test_ciphertext_moved_elsewhere_fails(elsewhere: Binding) -> None:
    keys = ring("k1")
    sealed = keys.encrypt("token", ACCESS)
    with pytest.raises(TamperedError, match="'k1'"):
        keys.decrypt(sealed, elsewhere)


def test_tampered_ciphertext_fails_naming_the_key() -> None:
    keys = ring("k1")
    sealed = keys.encrypt("token", ACCESS)
    payload = bytearray(base64.urlsafe_b64decode(sealed.split(":")[3] + "=="))
    payload[-1] ^= 1
    tampered = "enc:v1:k1:" + base64.urlsafe_b64encode(bytes(payload)).decode().rstrip("=")
    with pytest.raises(TamperedError) as caught:
        keys.decrypt(tampered, ACCESS)
    assert caught.value.kid == "k1"


def test_missing_key_names_the_key_id() -> None:
    sealed = ring("old").encrypt("token", ACCESS)
    with pytest.raises(UnknownKeyError, match="'old'"):
        ring("new").decrypt(sealed, ACCESS)


def test_newest_encrypts_all_decrypt() -> None:
    # Build a two-key ring sharing k1's material through the setting string instead of internals.
    k1 = KeyRing.generate_key()
    k2 = KeyRing.generate_key()
    first = KeyRing.parse(f"k1:{k1}")
    both = KeyRing.parse(f"k2:{k2},k1:{k1}")
    sealed_old = first.encrypt("token", ACCESS)
    assert both.decrypt(sealed_old, ACCESS) == "token"
    assert both.needs_rotation(sealed_old)
    sealed_new = both.encrypt("token", ACCESS)
    assert both.key_id_of(sealed_new) == "k2"
    assert not both.needs_rotation(sealed_new)


@pytest.mark.parametrize(
    "value", ["plaintext", "enc:v1:", "enc:v1:k1:@@@", "enc:v1:k1:AAAA", "enc:v1:bad kid:AAAA"]
)
def test_malformed_ciphertext(value: str) -> None:
    with pytest.raises(MalformedCiphertextError):
        ring("k1").decrypt(value, ACCESS)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("", "empty"),
        ("k1", "not kid:base64key"),
        ("k1:not-base64!", "not valid base64"),
        ("k1:" + base64.b64encode(b"short").decode(), "must be 32 bytes"),
        ("bad kid:" + base64.b64encode(b"x" * 32).decode(), "must match"),
        (
            "k1:" + base64.b64encode(b"x" * 32).decode() + ",k1:" + base64.b64encode(b"y" * 32).decode(),
            "twice",
        ),
    ],
)
def test_malformed_key_ring(setting: str, message: str) -> None:
    with pytest.raises(KeyRingError, match=message):
        KeyRing.parse(setting)


def test_seal_and_unseal_bind_the_secret_to_its_document() -> None:
    keys = ring("k1")
    sealed = seal(keys, ACCESS_TOKEN, "ya29.token", document_id="int-1", tenant_id="tenant-a")
    assert unseal(keys, ACCESS_TOKEN, sealed, document_id="int-1", tenant_id="tenant-a") == "ya29.token"
    # The same associated data as the documented binding: values stored before still read.
    assert keys.decrypt(sealed, ACCESS) == "ya29.token"
    for secret, document_id, tenant_id in (
        (REFRESH_TOKEN, "int-1", "tenant-a"),  # another field
        (ACCESS_TOKEN, "int-2", "tenant-a"),  # another integration
        (ACCESS_TOKEN, "int-1", "tenant-b"),  # another tenant
        (CLIENT_SECRET, "int-1", None),  # another collection
    ):
        with pytest.raises(TamperedError):
            unseal(keys, secret, sealed, document_id=document_id, tenant_id=tenant_id)


def test_every_stored_secret_is_listed_once_under_its_collection() -> None:
    listed = [(collection, secret) for collection, secrets in SECRETS.items() for secret in secrets]
    assert [(c, s.path) for c, s in listed] == [
        ("cloudIntegrations", "authData.accessToken"),
        ("cloudIntegrations", "authData.refreshToken"),
        ("cloudProviders", "clientSecret"),
        ("webhookEndpoints", "secret"),
    ]
    assert all(secret.collection == collection for collection, secret in listed)
    assert provider_binding("p-1") == CLIENT_SECRET.binding("p-1")


def test_an_integration_binding_names_a_stored_secret() -> None:
    with pytest.raises(ValueError, match="not a secret of cloudIntegrations"):
        integration_binding("tenant-a", "int-1", "authData.accesToken")
