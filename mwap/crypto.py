"""Encryption of stored secrets: AES-256-GCM with a key ring, bound to where each secret lives.

Ciphertext format (a string, so it sits in any JSON/BSON field)::

    enc:v1:<kid>:<base64url(nonce || ciphertext || tag)>     (no padding)

- ``kid``: the key id from the ring, ``[A-Za-z0-9_-]{1,32}``.
- ``nonce``: 12 random bytes, fresh per encryption.
- associated data: ``"mwap:v1|<collection>|<tenantId or empty>|<document _id>|<field path>"``
  UTF-8, so a ciphertext copied into another document, tenant or field fails to decrypt. Ids may
  be strings or BSON ObjectIds; an ObjectId is written in its 24-hex form.

The stored secrets are the constants ``ACCESS_TOKEN``, ``REFRESH_TOKEN`` (``cloudIntegrations``)
and ``CLIENT_SECRET`` (``cloudProviders``); ``seal`` and ``unseal`` are the one way a secret is
written and read, so the collection and field path of the associated data are spelled only here.

The ring comes from ``MWAP_ENCRYPTION_KEYS`` = ``kid:base64(32 bytes),kid:...``, newest first: the
first key encrypts, every key decrypts. The platform only ever *writes* ``enc:v1``.

Legacy format (read only). The MWAP backend (Node.js) stored the same secrets as
``<iv hex>:<authTag hex>:<ciphertext hex>`` (lowercase hex, 16-byte iv and tag), made by Node's
deprecated ``crypto.createCipher('aes-256-gcm', ENCRYPTION_KEY)`` with the associated data
``MWAP-AUTH-DATA``. ``createCipher`` derives both the key and the 12-byte GCM nonce from the
password with OpenSSL's ``EVP_BytesToKey`` (MD5, one iteration, no salt); the printed iv is random
and never used. So every value under one password shares one key *and one nonce*: under GCM that
leaks the XOR of any two plaintexts and lets anyone holding two ciphertexts recover the
authentication key and forge values. Nor is the value bound to its document: the associated data
is the same constant everywhere, so a legacy ciphertext moved to another document or field still
decrypts (the binding is not authenticated). With ``MWAP_LEGACY_ENCRYPTION_KEY`` (the backend's
``ENCRYPTION_KEY``) set, the ring decrypts such values so jobs keep working, reports them as needing
rotation under the pseudo key id ``legacy``, and ``mwap keys rotate`` rewrites them as ``enc:v1``.
"""

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "enc:v1:"
NONCE_BYTES = 12
KEY_BYTES = 32
_KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

# The MWAP backend's legacy format (see the module docstring).
LEGACY_KEY_ID = "legacy"  # what key_id_of says of a legacy value; reserved, no ring key may use it
LEGACY_AAD = b"MWAP-AUTH-DATA"
LEGACY_MAX_PLAINTEXT_BYTES = 64 * 1024  # far above any OAuth token or client secret
_LEGACY = re.compile(r"[0-9a-f]{32}:[0-9a-f]{32}:(?:[0-9a-f]{2})*")  # fullmatch: no trailing \n
_LEGACY_MAX_CHARS = 32 + 1 + 32 + 1 + 2 * LEGACY_MAX_PLAINTEXT_BYTES


class CryptoError(Exception):
    """A secret could not be decrypted; the message names the key id and never the secret."""

    def __init__(self, message: str, kid: str | None) -> None:
        super().__init__(message)
        self.kid = kid


class UnknownKeyError(CryptoError):
    """The ciphertext names a key id that is not in the ring."""


class TamperedError(CryptoError):
    """Authentication failed: the ciphertext was altered or moved to another document or field."""


class MalformedCiphertextError(CryptoError):
    """The stored value is not a ciphertext in the documented format."""


class LegacyKeyMissingError(CryptoError):
    """The value is in the MWAP backend's legacy format and ``MWAP_LEGACY_ENCRYPTION_KEY`` is not set."""


class KeyRingError(ValueError):
    """``MWAP_ENCRYPTION_KEYS`` is malformed."""


@dataclass(frozen=True, slots=True)
class Binding:
    """Where a secret is stored; authenticated as associated data."""

    collection: str
    tenant_id: object  # str, bson.ObjectId or None (no tenant)
    document_id: object  # str or bson.ObjectId
    field: str

    def associated_data(self) -> bytes:
        # An ObjectId formats as its 24-hex string, so it binds like the hex id would.
        tenant = "" if self.tenant_id is None else self.tenant_id
        return f"mwap:v1|{self.collection}|{tenant}|{self.document_id}|{self.field}".encode()


@dataclass(frozen=True, slots=True)
class Secret:
    """A kind of stored secret: its collection and field path, both part of its associated data."""

    collection: str
    path: str

    def binding(self, document_id: object, tenant_id: object = None) -> Binding:
        """Its binding in the document ``document_id`` (of ``tenant_id``; None for no tenant)."""
        return Binding(self.collection, tenant_id, document_id, self.path)

    def binding_of(self, document: Mapping[str, object]) -> Binding:
        """Its binding in a stored ``document`` (its ``_id`` and ``tenantId``)."""
        return self.binding(document["_id"], document.get("tenantId"))


INTEGRATIONS = "cloudIntegrations"
PROVIDERS = "cloudProviders"
ACCESS_TOKEN = Secret(INTEGRATIONS, "authData.accessToken")
REFRESH_TOKEN = Secret(INTEGRATIONS, "authData.refreshToken")
CLIENT_SECRET = Secret(PROVIDERS, "clientSecret")  # providers belong to no tenant
WEBHOOK_ENDPOINTS = "webhookEndpoints"
WEBHOOK_SECRET = Secret(WEBHOOK_ENDPOINTS, "secret")  # an endpoint's signing secret (mwap.webhooks)
# Every stored secret by collection (``mwap keys rotate`` walks them). An endpoint's previous
# signing secrets (``previousSecrets``, kept for a day while receivers switch) are not walked.
SECRETS: Mapping[str, tuple[Secret, ...]] = {
    INTEGRATIONS: (ACCESS_TOKEN, REFRESH_TOKEN),
    PROVIDERS: (CLIENT_SECRET,),
    WEBHOOK_ENDPOINTS: (WEBHOOK_SECRET,),
}


def is_legacy(ciphertext: object) -> bool:
    """Whether ``ciphertext`` has the MWAP backend's ``iv:authTag:ciphertext`` hex shape."""
    return (
        isinstance(ciphertext, str)
        and len(ciphertext) <= _LEGACY_MAX_CHARS
        and _LEGACY.fullmatch(ciphertext) is not None
    )


def legacy_key_and_nonce(password: str) -> tuple[bytes, bytes]:
    """Node's ``createCipher`` derivation: OpenSSL ``EVP_BytesToKey`` (MD5, 1 round, no salt).

    D_1 = MD5(password), D_i = MD5(D_(i-1) || password); the first 32 bytes are the AES-256 key,
    the next 12 the GCM nonce (the same for every value under the password).
    """
    secret = password.encode()
    derived, block = b"", b""
    while len(derived) < KEY_BYTES + NONCE_BYTES:
        block = hashlib.md5(block + secret, usedforsecurity=False).digest()
        derived += block
    return derived[:KEY_BYTES], derived[KEY_BYTES : KEY_BYTES + NONCE_BYTES]


class KeyRing:
    """Named AES-256 keys, newest first; optionally the MWAP backend's legacy password (read only)."""

    def __init__(self, keys: list[tuple[str, bytes]], *, legacy_password: str | None = None) -> None:
        if not keys:
            raise KeyRingError("the key ring is empty")
        seen: set[str] = set()
        for kid, key in keys:
            if not _KID.match(kid):
                raise KeyRingError(f"key id {kid!r} must match {_KID.pattern}")
            if kid == LEGACY_KEY_ID:
                raise KeyRingError(f"key id {kid!r} is reserved for the MWAP backend's legacy format")
            if kid in seen:
                raise KeyRingError(f"key id {kid!r} appears twice")
            if len(key) != KEY_BYTES:
                raise KeyRingError(f"key {kid!r} must be {KEY_BYTES} bytes, got {len(key)}")
            seen.add(kid)
        self._keys = {kid: AESGCM(key) for kid, key in keys}
        self.primary = keys[0][0]
        self.kids = tuple(kid for kid, _ in keys)
        if legacy_password is not None and not legacy_password:
            raise KeyRingError("the legacy encryption key is empty")
        self._legacy: tuple[AESGCM, bytes] | None = None
        if legacy_password:
            key, nonce = legacy_key_and_nonce(legacy_password)
            self._legacy = (AESGCM(key), nonce)

    @property
    def has_legacy_key(self) -> bool:
        return self._legacy is not None

    @classmethod
    def parse(cls, value: str, *, legacy_password: str | None = None) -> "KeyRing":
        """A ring from ``kid:base64key,kid:base64key`` (newest first), plus the legacy password if any."""
        keys = []
        for raw_entry in value.split(","):
            entry = raw_entry.strip()
            if not entry:
                continue
            kid, sep, encoded = entry.partition(":")
            if not sep:
                raise KeyRingError(f"entry {kid[:8]!r}… is not kid:base64key")
            try:
                key = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                raise KeyRingError(f"key {kid!r} is not valid base64") from None
            keys.append((kid, key))
        return cls(keys, legacy_password=legacy_password)

    @staticmethod
    def generate_key() -> str:
        return base64.b64encode(os.urandom(KEY_BYTES)).decode()

    def encrypt(self, plaintext: str, binding: Binding) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.primary].encrypt(nonce, plaintext.encode(), binding.associated_data())
        return f"{PREFIX}{self.primary}:{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def decrypt(self, ciphertext: str, binding: Binding) -> str:
        """The plaintext of an ``enc:v1`` value under ``binding``, or of a legacy value.

        A legacy value does not authenticate ``binding`` (its format has no place for it); the
        binding only names the secret in errors. ``mwap keys rotate`` gives it one.
        """
        if is_legacy(ciphertext):
            return self._decrypt_legacy(ciphertext, binding)
        kid, payload = self._split(ciphertext)
        cipher = self._keys.get(kid)
        if cipher is None:
            raise UnknownKeyError(
                f"secret is encrypted with key id {kid!r}, which is not in the key ring", kid
            )
        try:
            plain = cipher.decrypt(payload[:NONCE_BYTES], payload[NONCE_BYTES:], binding.associated_data())
        except InvalidTag:
            raise TamperedError(
                f"secret under key id {kid!r} failed authentication for {binding.collection}/"
                f"{binding.document_id}/{binding.field} (tampered, or copied from elsewhere)",
                kid,
            ) from None
        return plain.decode()

    def _decrypt_legacy(self, ciphertext: str, binding: Binding) -> str:
        where = f"{binding.collection}/{binding.document_id}/{binding.field}"
        if self._legacy is None:
            raise LegacyKeyMissingError(
                f"secret at {where} is in the MWAP backend's legacy format (iv:authTag:ciphertext); "
                "set MWAP_LEGACY_ENCRYPTION_KEY to the backend's ENCRYPTION_KEY to read it, "
                "then run `mwap keys rotate`",
                None,
            )
        cipher, nonce = self._legacy
        _iv, tag, sealed = ciphertext.split(":")  # the iv is random and unused by Node's createCipher
        try:
            plain = cipher.decrypt(nonce, bytes.fromhex(sealed) + bytes.fromhex(tag), LEGACY_AAD)
        except InvalidTag:
            raise TamperedError(
                f"legacy ciphertext failed authentication: wrong MWAP_LEGACY_ENCRYPTION_KEY or altered "
                f"value (at {where})",
                LEGACY_KEY_ID,
            ) from None
        try:
            return plain.decode()
        except UnicodeDecodeError:
            raise MalformedCiphertextError(
                f"legacy secret at {where} decrypts to bytes that are not UTF-8", LEGACY_KEY_ID
            ) from None

    is_legacy = staticmethod(is_legacy)

    def key_id_of(self, ciphertext: str) -> str:
        """The key id an ``enc:v1`` value names, or ``LEGACY_KEY_ID`` for a legacy value."""
        if is_legacy(ciphertext):
            return LEGACY_KEY_ID
        return self._split(ciphertext)[0]

    def needs_rotation(self, ciphertext: str) -> bool:
        """True for a value under another key than the primary, and for every legacy value."""
        return is_legacy(ciphertext) or self.key_id_of(ciphertext) != self.primary

    @staticmethod
    def _split(ciphertext: str) -> tuple[str, bytes]:
        if not isinstance(ciphertext, str) or not ciphertext.startswith(PREFIX):
            raise MalformedCiphertextError("stored secret is not an enc:v1 ciphertext", None)
        kid, sep, encoded = ciphertext[len(PREFIX) :].partition(":")
        if not sep or not _KID.match(kid):
            raise MalformedCiphertextError("stored secret has no valid key id", None)
        try:
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            raise MalformedCiphertextError(
                f"secret under key id {kid!r} is not valid base64url", kid
            ) from None
        if len(payload) < NONCE_BYTES + 16:
            raise MalformedCiphertextError(f"secret under key id {kid!r} is truncated", kid)
        return kid, payload


def seal(
    ring: KeyRing, secret: Secret, plaintext: str, *, document_id: object, tenant_id: object = None
) -> str:
    """``plaintext`` encrypted under the ring's primary key, bound to ``secret`` in its document."""
    return ring.encrypt(plaintext, secret.binding(document_id, tenant_id))


def unseal(
    ring: KeyRing, secret: Secret, ciphertext: str, *, document_id: object, tenant_id: object = None
) -> str:
    """The plaintext of ``secret`` stored in its document (raises CryptoError naming the key id)."""
    return ring.decrypt(ciphertext, secret.binding(document_id, tenant_id))


_INTEGRATION_PATHS = {secret.path: secret for secret in SECRETS[INTEGRATIONS]}


def integration_binding(tenant_id: object, integration_id: object, field: str) -> Binding:
    """The binding of ``authData.accessToken`` / ``authData.refreshToken`` of an integration.

    Ids are ObjectIds or strings (an ObjectId binds as its 24-hex form). Another field is refused:
    a value sealed under a misspelt path could never be read where the jobs look for it.
    """
    secret = _INTEGRATION_PATHS.get(field)
    if secret is None:
        raise ValueError(f"{field!r} is not a secret of {INTEGRATIONS}")
    return secret.binding(integration_id, tenant_id)


def provider_binding(provider_id: object) -> Binding:
    """The binding of a provider's ``clientSecret`` (providers belong to no tenant)."""
    return CLIENT_SECRET.binding(provider_id)
