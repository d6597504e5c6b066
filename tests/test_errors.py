"""The error hierarchy: registry error bodies, moby's messages, and classification attributes."""

from __future__ import annotations

import json

import pytest
from docker_distribution import errors as E
from hypothesis import given
from hypothesis import strategies as st


def _body(*entries: dict[str, object]) -> bytes:
    return json.dumps({"errors": list(entries)}).encode()


@pytest.mark.parametrize("code, cls", sorted(E.REGISTRY_ERROR_CLASSES.items()))
def test_every_registry_code_maps_to_its_class(code: str, cls: type[E.RegistryError]) -> None:
    [err] = E.errors_from_response(cls.default_status, "application/json", _body({"code": code, "message": "m", "detail": {"x": 1}}))
    assert type(err) is cls
    assert isinstance(err, E.RegistryError) and isinstance(err, E.DistributionError)
    assert err.code == code
    assert err.status == cls.default_status
    assert err.detail == {"x": 1}
    assert str(err) == f"{code.lower().replace('_', ' ')}: m"
    assert not err.bare


def test_the_code_table_covers_the_spec_codes() -> None:
    assert set(E.REGISTRY_ERROR_CLASSES) == {
        "UNKNOWN", "UNSUPPORTED", "UNAUTHORIZED", "DENIED", "UNAVAILABLE", "TOOMANYREQUESTS",
        "DIGEST_INVALID", "SIZE_INVALID", "NAME_INVALID", "TAG_INVALID", "NAME_UNKNOWN",
        "MANIFEST_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNVERIFIED", "MANIFEST_BLOB_UNKNOWN",
        "BLOB_UNKNOWN", "BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID", "PAGINATION_NUMBER_INVALID",
    }


def test_messages_follow_moby_formatting() -> None:
    [err] = E.errors_from_response(404, "application/json", _body({"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": "latest"}))
    assert str(err) == "manifest unknown: manifest unknown"
    assert str(E.UnauthorizedError()) == "unauthorized: authentication required"
    assert str(E.DeniedError()) == "denied: requested access to the resource is denied"


def test_entry_without_detail_and_default_message_is_bare() -> None:
    [bare] = E.errors_from_response(404, "application/json", _body({"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}))
    [empty] = E.errors_from_response(404, "application/json", _body({"code": "MANIFEST_UNKNOWN"}))
    [full] = E.errors_from_response(404, "application/json", _body({"code": "MANIFEST_UNKNOWN", "message": "other"}))
    assert bare.bare and empty.bare and not full.bare  # type: ignore[attr-defined]
    assert str(empty) == "manifest unknown: manifest unknown"


def test_unknown_code_becomes_unknown_but_keeps_the_text() -> None:
    [err] = E.errors_from_response(400, "application/json", _body({"code": "WEIRD_THING", "message": "hm", "detail": 1}))
    assert type(err) is E.UnknownError
    assert err.raw_code == "WEIRD_THING"  # type: ignore[attr-defined]
    assert str(err) == "unknown: hm"


def test_several_errors_keep_their_order() -> None:
    errs = E.errors_from_response(401, "application/json; charset=utf-8", _body(
        {"code": "UNAUTHORIZED", "message": "a", "detail": None},
        {"code": "DENIED", "message": "b", "detail": "x"},
    ))
    assert [type(e) for e in errs] == [E.UnauthorizedError, E.DeniedError]


@pytest.mark.parametrize("status, cls", [(401, E.UnauthorizedError), (403, E.DeniedError), (429, E.TooManyRequestsError), (404, E.UnknownError)])
def test_non_json_bodies_map_by_status(status: int, cls: type[E.RegistryError]) -> None:
    [err] = E.errors_from_response(status, "text/plain", b"you need to be authenticated")
    assert type(err) is cls
    assert err.message == "you need to be authenticated"  # type: ignore[attr-defined]


def test_401_text_body_gives_mobys_message() -> None:
    # TestPullSchema2Config, "401 text body"
    [err] = E.errors_from_response(401, None, b"you need to be authenticated")
    assert str(err) == "unauthorized: you need to be authenticated"


def test_401_json_with_empty_body_is_authentication_required() -> None:
    [err] = E.errors_from_response(401, "application/json", b"")
    assert type(err) is E.UnauthorizedError
    assert str(err) == "unauthorized: authentication required"


def test_json_details_string_is_used_as_message() -> None:
    [err] = E.errors_from_response(429, "application/json", b'{"details": "slow down"}')
    assert type(err) is E.TooManyRequestsError and str(err) == "toomanyrequests: slow down"


def test_undecodable_json_is_an_unexpected_response() -> None:
    [err] = E.errors_from_response(400, "application/json", b"{not json")
    assert type(err) is E.UnexpectedHTTPResponseError
    assert str(err).startswith("error parsing HTTP 400 response body: ")
    [empty] = E.errors_from_response(400, "application/json", b'{"errors": []}')
    assert "no error details found in HTTP response body" in str(empty)


def test_error_bodies_are_capped() -> None:
    [err] = E.errors_from_response(400, "application/json", b"x" * (E.MAX_ERROR_BODY * 4))
    assert isinstance(err, E.UnexpectedHTTPResponseError)
    assert len(err.body) == E.MAX_ERROR_BODY


@given(st.binary(max_size=2048), st.sampled_from([None, "application/json", "text/html", "application/vnd.api+json"]),
       st.integers(400, 499))
def test_decoder_never_fails_on_arbitrary_bodies(body: bytes, ctype: str | None, status: int) -> None:
    errs = E.errors_from_response(status, ctype, body)
    assert errs and all(isinstance(e, E.DistributionError) for e in errs)


def test_unexpected_status_is_retryable() -> None:
    err = E.UnexpectedHTTPStatusError(503, "Service Unavailable")
    assert str(err) == "received unexpected HTTP status: 503 Service Unavailable"
    assert err.retryable
    assert not E.UnauthorizedError().retryable
    assert E.UnavailableError().retryable


def test_moby_exact_messages() -> None:
    assert str(E.AIModelNotSupportedError()) == (
        'AI models are not yet supported by the Engine, please use "docker model pull/run" instead'
    )
    assert str(E.DeprecatedSchema1ImageError()) == (
        "Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been removed. "
        "More information at https://docs.docker.com/go/deprecated-image-specs/"
    )
    assert str(E.DeprecatedSchema1ImageError("docker.io/library/foo:latest")) == (
        "Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been removed. "
        "Suggest the author of docker.io/library/foo:latest to upgrade the image to the OCI Format or "
        "Docker Image manifest v2, schema 2. More information at https://docs.docker.com/go/deprecated-image-specs/"
    )
    assert str(E.UnsupportedMediaTypeError("application/x-foo")) == "unsupported media type application/x-foo"


def test_client_side_value_errors_are_value_errors() -> None:
    assert issubclass(E.InvalidReferenceError, ValueError)
    assert issubclass(E.InvalidDigestError, ValueError)
    assert issubclass(E.InvalidReferenceError, E.DistributionError)
