"""Secrets we hand out (API tokens, device tokens, enrollment codes) are random and
high-entropy, so a single SHA-256 is the right stored form: a slow password hash adds
nothing against guessing 256 random bits, and lets us look a secret up by its hash."""
import hashlib
import secrets


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str, nbytes: int = 32) -> tuple[str, str]:
    """A fresh secret and its stored hash."""
    secret = f"{prefix}_{secrets.token_urlsafe(nbytes)}"
    return secret, hash_secret(secret)


def new_enrollment_code() -> tuple[str, str]:
    """A code a person can type: 12 characters from an unambiguous alphabet, in groups."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(12))
    code = "-".join(raw[i : i + 4] for i in range(0, 12, 4))
    return code, hash_secret(code)


def normalize_enrollment_code(code: str) -> str:
    raw = "".join(ch for ch in code.upper() if ch.isalnum())
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))
