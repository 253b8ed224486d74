"""The bridge signature scheme, pure: no settings, no clock (``now`` is passed in)."""

import hashlib
import hmac

import pytest

from chat_service.machinery.signatures import SignatureError, SignatureFailure, sign, verify

SECRET = "current-secret-" + "c" * 32
PREVIOUS = "previous-secret-" + "p" * 32
BODY = b'{"event_id":"e1","type":"order.updated"}'
NOW = 1_800_000_000


def reason_of(header, body=BODY, secrets=(SECRET,), now=NOW, **kw):
    with pytest.raises(SignatureError) as caught:
        verify(header, body, list(secrets), now, **kw)
    return caught.value.reason


def test_sign_follows_the_contract_formula():
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, NOW) == f"t={NOW},v1={expected}"


def test_a_fresh_signature_verifies_and_returns_its_timestamp():
    assert verify(sign(SECRET, BODY, NOW), BODY, [SECRET], NOW) == NOW


def test_tampered_body_is_invalid():
    assert reason_of(sign(SECRET, BODY, NOW), body=BODY.replace(b"e1", b"e2")) == SignatureFailure.INVALID


def test_one_extra_byte_of_body_is_invalid():
    assert reason_of(sign(SECRET, BODY, NOW), body=BODY + b" ") == SignatureFailure.INVALID


def test_tampered_timestamp_is_invalid():
    header = sign(SECRET, BODY, NOW).replace(f"t={NOW}", f"t={NOW + 1}")
    assert reason_of(header) == SignatureFailure.INVALID


def test_wrong_secret_is_invalid():
    assert reason_of(sign("someone-else-" + "x" * 32, BODY, NOW)) == SignatureFailure.INVALID


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header(header):
    assert reason_of(header) == SignatureFailure.MISSING


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        "v1=" + "a" * 64,  # no timestamp
        f"t={NOW}",  # no signature
        f"t={NOW},v1=xyz",  # not hex
        f"t={NOW},v1=" + "a" * 63,  # too short for SHA-256
        "t=-5,v1=" + "a" * 64,
        "t=12.5,v1=" + "a" * 64,
        f"t={NOW},t={NOW},v1=" + "a" * 64,  # two timestamps
        "t=" + "9" * 40 + ",v1=" + "a" * 64,  # absurd timestamp
        "t=١٢٣,v1=" + "a" * 64,  # non-ASCII digits
        f"t={NOW},v1=" + "a" * 64 + ",x" * 600,  # oversized
    ],
)
def test_malformed_header(header):
    assert reason_of(header) == SignatureFailure.MALFORMED


def test_stale_timestamp_beyond_the_window_is_expired():
    assert reason_of(sign(SECRET, BODY, NOW - 301)) == SignatureFailure.EXPIRED


def test_future_timestamp_beyond_the_window_is_expired():
    assert reason_of(sign(SECRET, BODY, NOW + 301)) == SignatureFailure.EXPIRED


@pytest.mark.parametrize("skew", [-300, -299, 0, 299, 300])
def test_timestamps_within_the_window_both_ways_are_accepted(skew):
    assert verify(sign(SECRET, BODY, NOW + skew), BODY, [SECRET], NOW) == NOW + skew


def test_window_is_configurable():
    header = sign(SECRET, BODY, NOW - 61)
    assert verify(header, BODY, [SECRET], NOW, window_s=300) == NOW - 61
    assert reason_of(header, window_s=60) == SignatureFailure.EXPIRED


def test_a_forged_old_request_is_invalid_not_expired():
    # "expired" is only said about authentic requests.
    assert reason_of(sign("forger-" + "f" * 32, BODY, NOW - 3600)) == SignatureFailure.INVALID


def test_previous_secret_is_accepted_during_rotation():
    assert verify(sign(PREVIOUS, BODY, NOW), BODY, [SECRET, PREVIOUS], NOW) == NOW
    assert verify(sign(SECRET, BODY, NOW), BODY, [SECRET, PREVIOUS], NOW) == NOW


def test_previous_secret_is_refused_once_rotation_is_over():
    assert reason_of(sign(PREVIOUS, BODY, NOW), secrets=[SECRET]) == SignatureFailure.INVALID


def test_a_header_with_several_v1_values_verifies_if_one_matches():
    ours = sign(SECRET, BODY, NOW).split("v1=")[1]
    header = f"t={NOW},v1={'0' * 64},v1={ours},v0=legacy"
    assert verify(header, BODY, [SECRET], NOW) == NOW


def test_uppercase_hex_and_spaces_after_commas_are_tolerated():
    t, v1 = sign(SECRET, BODY, NOW).split(",")
    assert verify(f"{t}, {v1.upper().replace('V1=', 'v1=')}", BODY, [SECRET], NOW) == NOW


def test_empty_secrets_are_a_programming_error():
    with pytest.raises(ValueError):
        verify(sign(SECRET, BODY, NOW), BODY, ["", ""], NOW)
