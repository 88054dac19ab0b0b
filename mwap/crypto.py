"""Encryption of stored secrets: AES-256-GCM with a key ring, bound to where each secret lives.

Ciphertext format (a string, so it sits in any JSON/BSON field)::

    enc:v1:<kid>:<base64url(nonce || ciphertext || tag)>     (no padding)

- ``kid``: the key id from the ring, ``[A-Za-z0-9_-]{1,32}``.
- ``nonce``: 12 random bytes, fresh per encryption.
- associated data: ``"mwap:v1|<collection>|<tenantId or empty>|<document _id>|<field path>"``
  UTF-8, so a ciphertext copied into another document, tenant or field fails to decrypt.

The ring comes from ``MWAP_ENCRYPTION_KEYS`` = ``kid:base64(32 bytes),kid:...``, newest first: the
first key encrypts, every key decrypts.
"""

import base64
import binascii
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "enc:v1:"
NONCE_BYTES = 12
KEY_BYTES = 32
_KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


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


class KeyRingError(ValueError):
    """``MWAP_ENCRYPTION_KEYS`` is malformed."""


@dataclass(frozen=True, slots=True)
class Binding:
    """Where a secret is stored; authenticated as associated data."""

    collection: str
    tenant_id: str | None
    document_id: str
    field: str

    def associated_data(self) -> bytes:
        return f"mwap:v1|{self.collection}|{self.tenant_id or ''}|{self.document_id}|{self.field}".encode()


class KeyRing:
    """Named AES-256 keys, newest first."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise KeyRingError("the key ring is empty")
        seen: set[str] = set()
        for kid, key in keys:
            if not _KID.match(kid):
                raise KeyRingError(f"key id {kid!r} must match {_KID.pattern}")
            if kid in seen:
                raise KeyRingError(f"key id {kid!r} appears twice")
            if len(key) != KEY_BYTES:
                raise KeyRingError(f"key {kid!r} must be {KEY_BYTES} bytes, got {len(key)}")
            seen.add(kid)
        self._keys = {kid: AESGCM(key) for kid, key in keys}
        self.primary = keys[0][0]
        self.kids = tuple(kid for kid, _ in keys)

    @classmethod
    def parse(cls, value: str) -> "KeyRing":
        """A ring from ``kid:base64key,kid:base64key`` (newest first)."""
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
        return cls(keys)

    @staticmethod
    def generate_key() -> str:
        return base64.b64encode(os.urandom(KEY_BYTES)).decode()

    def encrypt(self, plaintext: str, binding: Binding) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.primary].encrypt(nonce, plaintext.encode(), binding.associated_data())
        return f"{PREFIX}{self.primary}:{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def decrypt(self, ciphertext: str, binding: Binding) -> str:
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

    def key_id_of(self, ciphertext: str) -> str:
        return self._split(ciphertext)[0]

    def needs_rotation(self, ciphertext: str) -> bool:
        return self.key_id_of(ciphertext) != self.primary

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


def integration_binding(tenant_id: str, integration_id: str, field: str) -> Binding:
    """The binding of ``authData.accessToken`` / ``authData.refreshToken`` of an integration."""
    return Binding("cloudIntegrations", tenant_id, integration_id, field)


def provider_binding(provider_id: str) -> Binding:
    """The binding of a provider's ``clientSecret`` (providers belong to no tenant)."""
    return Binding("cloudProviders", None, provider_id, "clientSecret")
