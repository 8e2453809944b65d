from accounts import keys


def test_generated_keys_are_well_formed_and_recognisable() -> None:
    secret = keys.generate_key()
    assert secret.startswith("trb_")
    assert len(secret) == keys.KEY_LENGTH
    assert keys.is_well_formed(secret)
    assert keys.key_prefix(secret) == secret[:12]


def test_a_mistyped_key_fails_its_checksum() -> None:
    secret = keys.generate_key()
    flipped = secret[:10] + ("A" if secret[10] != "A" else "B") + secret[11:]
    assert not keys.is_well_formed(flipped)
    assert not keys.is_well_formed(secret[:-1])
    assert not keys.is_well_formed("sk_" + secret[3:])


def test_hash_matches_only_the_same_key() -> None:
    secret = keys.generate_key()
    stored = keys.hash_key(secret)
    assert len(stored) == 64 and secret not in stored
    assert keys.matches(secret, stored)
    assert not keys.matches(keys.generate_key(), stored)
