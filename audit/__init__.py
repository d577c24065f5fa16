"""Tamper-evident audit trail: canonical JSON entries chained by SHA-256, Ed25519-signed checkpoints.

``chain`` is the pure format (hashing, signing, verification of a stream of entries), ``keys`` loads or
creates the signing and pseudonym keys, ``log`` appends to and reads from the database, ``export`` writes and
verifies the offline JSONL file.
"""
