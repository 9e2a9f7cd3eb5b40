"""Signing and encryption primitives the channel protocols share (``cryptography``)."""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def load_private_key(path: str | Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA private key")
    return key


def load_public_key(path: str | Path) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"{path} is not an RSA public key")
    return key


def rsa2_sign(private_key: rsa.RSAPrivateKey, message: bytes) -> str:
    """SHA256withRSA (PKCS#1 v1.5), base64: Alipay RSA2 and WeChat Pay v3 signatures."""
    signature = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def rsa2_verify(public_key: rsa.RSAPublicKey, message: bytes, signature_b64: str) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def aes_gcm_decrypt(key: bytes, nonce: str, ciphertext_b64: str, associated_data: str) -> bytes:
    """AEAD_AES_256_GCM as WeChat Pay v3 uses it for notification resources.

    :raises ValueError: when the tag does not match (tampered or wrong key).
    """
    try:
        return AESGCM(key).decrypt(
            nonce.encode(), base64.b64decode(ciphertext_b64), associated_data.encode()
        )
    except (InvalidTag, ValueError) as exc:
        raise ValueError("resource does not decrypt with the APIv3 key") from exc


def aes_gcm_encrypt(key: bytes, nonce: str, plaintext: bytes, associated_data: str) -> str:
    return base64.b64encode(
        AESGCM(key).encrypt(nonce.encode(), plaintext, associated_data.encode())
    ).decode()


def generate_key_pair(private_path: Path, public_path: Path) -> None:
    """Write a new 2048-bit RSA pair as PEM files (development and sandbox keys only)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    private_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private_path.chmod(0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
