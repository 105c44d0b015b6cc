"""ossl_vault.ops.generate: uniformly random values from the real ``openssl rand``."""

from __future__ import annotations

import base64
import math
import string
from collections import Counter

import pytest

from ossl_vault.errors import UsageError
from ossl_vault.ops import generate as gen

ALNUM = set(string.ascii_letters + string.digits)


def test_default_is_32_bytes_base64() -> None:
    value = gen.generate()
    assert len(value) == 44
    assert len(base64.b64decode(value, validate=True)) == 32
    assert base64.b64encode(base64.b64decode(value)) == value


def test_values_differ() -> None:
    assert len({gen.generate() for _ in range(5)}) == 5


@pytest.mark.parametrize(
    ("fmt", "nbytes", "check"),
    [
        ("hex", None, lambda v: len(v) == 64 and set(v.decode()) <= set("0123456789abcdef")),
        ("hex", 5, lambda v: len(v) == 10),
        ("base64", 1, lambda v: len(base64.b64decode(v, validate=True)) == 1),
        ("raw", None, lambda v: len(v) == 32),
        ("raw", 1024 * 1024, lambda v: len(v) == 1024 * 1024),
    ],
)
def test_formats(fmt: str, nbytes: int | None, check: object) -> None:
    assert check(gen.generate(fmt, nbytes))  # type: ignore[operator]


@pytest.mark.parametrize("alphabet", ["alnum", "symbols"])
def test_password_default_carries_256_bits(alphabet: str) -> None:
    chars = gen.ALPHABETS[alphabet]
    value = gen.generate("password", alphabet=alphabet).decode()
    assert len(value) * math.log2(len(chars)) >= 256
    # and not more than one character beyond what 256 bits need
    assert (len(value) - 1) * math.log2(len(chars)) < 256
    assert set(value) <= set(chars)


def test_password_length() -> None:
    value = gen.generate("password", length=7).decode()
    assert len(value) == 7
    assert set(value) <= ALNUM
    assert len(gen.generate("password", length=4096)) == 4096


def test_password_length_formula() -> None:
    assert gen.password_length("01") == 256
    assert gen.password_length(string.hexdigits[:16]) == 64
    assert gen.password_length(string.ascii_letters + string.digits) == 43


def test_sample_three_chars_uniform_and_closed() -> None:
    out = gen.sample("abc", 30_000)
    assert len(out) == 30_000
    counts = Counter(out)
    assert set(counts) <= set("abc")
    for ch in "abc":
        # expected 10000, standard deviation ~82: 5 % is about 6 sigma
        assert abs(counts[ch] - 10_000) < 500, counts


def test_sample_has_no_modulo_bias() -> None:
    """With 200 characters, ``byte % 200`` would make the first 56 characters
    twice as likely as the others; rejection sampling keeps them all equal."""
    alphabet = "".join(chr(0x100 + i) for i in range(200))
    out = gen.sample(alphabet, 40_000)
    counts = Counter(out)
    assert set(counts) <= set(alphabet)
    low = sum(counts[c] for c in alphabet[:56]) / 56  # would be ~1.6x high with bias
    high = sum(counts[c] for c in alphabet[56:]) / 144
    assert 0.9 < low / high < 1.1, (low, high)


def test_sample_full_byte_alphabet() -> None:
    alphabet = "".join(chr(0x100 + i) for i in range(256))
    assert len(gen.sample(alphabet, 1000)) == 1000


def test_sample_zero_length() -> None:
    assert gen.sample("ab", 0) == ""


@pytest.mark.parametrize("alphabet", ["", "a", "".join(chr(0x100 + i) for i in range(257))])
def test_sample_bad_alphabet(alphabet: str) -> None:
    with pytest.raises(UsageError):
        gen.sample(alphabet, 5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fmt": "base64", "nbytes": 0},
        {"fmt": "hex", "nbytes": -1},
        {"fmt": "raw", "nbytes": 1024 * 1024 + 1},
        {"fmt": "base64", "length": 10},
        {"fmt": "hex", "length": 10},
        {"fmt": "password", "nbytes": 10},
        {"fmt": "password", "length": 0},
        {"fmt": "password", "length": -3},
        {"fmt": "password", "length": 4097},
        {"fmt": "bogus"},
    ],
)
def test_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError) as e:
        gen.generate(**kwargs)  # type: ignore[arg-type]
    message = e.value.message
    assert not message[:1].isupper() and not message.endswith(".")
