"""The typed error hierarchy of docker-distribution.

Every error this package raises is a :class:`DistributionError`, except what the local
filesystem says (a full disk, a store it may not write): that stays Python's :class:`OSError`,
with its errno and the file it names, as moby passes such errors on (``no space left on
device`` is never retried). The tree::

    DistributionError
    ├── RegistryError                    a registry answered with an error code (docker/distribution registry/api/errcode)
    │   ├── UnknownError                 UNKNOWN (and any code we do not know)
    │   ├── UnsupportedError             UNSUPPORTED
    │   ├── UnauthorizedError            UNAUTHORIZED
    │   ├── DeniedError                  DENIED
    │   ├── UnavailableError             UNAVAILABLE                 (retryable)
    │   ├── TooManyRequestsError         TOOMANYREQUESTS
    │   ├── DigestInvalidError           DIGEST_INVALID
    │   ├── SizeInvalidError             SIZE_INVALID
    │   ├── NameInvalidError             NAME_INVALID
    │   ├── TagInvalidError              TAG_INVALID
    │   ├── NameUnknownError             NAME_UNKNOWN
    │   ├── ManifestUnknownError         MANIFEST_UNKNOWN
    │   ├── ManifestInvalidError         MANIFEST_INVALID
    │   ├── ManifestUnverifiedError      MANIFEST_UNVERIFIED
    │   ├── ManifestBlobUnknownError     MANIFEST_BLOB_UNKNOWN
    │   ├── BlobUnknownError             BLOB_UNKNOWN
    │   ├── BlobUploadUnknownError       BLOB_UPLOAD_UNKNOWN
    │   ├── BlobUploadInvalidError       BLOB_UPLOAD_INVALID
    │   └── PaginationNumberInvalidError PAGINATION_NUMBER_INVALID
    ├── UnexpectedHTTPResponseError      a 4xx whose body is not a registry error document
    ├── UnexpectedHTTPStatusError        any other non-success status (5xx …)  (retryable)
    ├── VerificationError                bytes did not match what was promised
    │   ├── DigestMismatchError
    │   │   └── ManifestVerificationError  ``manifest verification failed for digest <d>``
    │   └── SizeMismatchError
    ├── InvalidDigestError (ValueError)
    │   └── UnsupportedDigestAlgorithmError
    ├── InvalidReferenceError (ValueError)
    ├── InvalidRegistryConfigError (ValueError)   bad mirror / insecure registry / index name
    ├── InvalidOptionError (ValueError)           an option that cannot be honoured (a compression level)
    ├── UnsupportedMediaTypeError        ``unsupported media type <mt>``
    ├── AIModelNotSupportedError         moby's exact message
    ├── DeprecatedSchema1ImageError      moby's exact message
    ├── NoBasicAuthCredentialsError, NoTokenError, TokenAuthError, CredentialHelperError
    ├── ManifestTooLargeError, ResponseFormatError
    ├── ReservedNameError, NoEndpointsError, ImageConfigPullError, NotFoundError
    ├── OperationCancelledError          the caller cancelled
    ├── TransportError                   no HTTP answer at all (retryable)
    ├── LayerError                       a layer that cannot be applied
    │   ├── UnsupportedCompressionError  bzip2, xz
    │   ├── CorruptLayerError            truncated / corrupt stream, garbage after it, bad tar
    │   ├── PathEscapeError              an entry that would land outside the target
    │   ├── LayerLimitError              too many bytes or entries (a bomb)
    │   └── NotPermittedError            a device node without root
    ├── StoreError                       the local store
    │   ├── ObjectNotFoundError (KeyError)
    │   │   └── ReferenceNotFoundError   ``reference does not exist``
    │   │       └── NoSuchImageError     ``No such image: <ref>`` (what the store commands report)
    │   ├── AlreadyExistsError, LockedError (retryable), FailedPreconditionError
    │   ├── InvalidLayoutError           an OCI image layout that cannot be loaded
    │   ├── CorruptStoreError            one of the store's own files is unreadable (never written over)
    │   ├── MaxDepthExceededError        ``max depth exceeded``: more than 125 layers in one chain
    │   ├── ReferenceConflictError       a tag set elsewhere without force; a digest ref changed
    │   ├── UnpackTargetError            unpack into a non-empty directory (without force), or onto a file
    │   └── ImageDeleteConflictError     ``conflict: unable to delete <id> (must be forced) - …``
    ├── FallbackError                    wraps an error after which the next endpoint is tried
    └── DoNotRetry                       wraps an error that another attempt will not fix

The classification functions :func:`continue_on_error`, :func:`retry_on_error` and
:func:`translate_pull_error` are moby's (moby distribution/errors.go), over these types.

``retryable`` on each class (or instance) says whether repeating the same request may
succeed. The messages of registry errors follow moby's ``errcode`` formatting:
``"<code in lower case with spaces>: <message>"``.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Mapping
from typing import ClassVar

__all__ = [
    "AIModelNotSupportedError",
    "AlreadyExistsError",
    "CorruptLayerError",
    "CorruptStoreError",
    "FailedPreconditionError",
    "ImageDeleteConflictError",
    "InvalidLayoutError",
    "LockedError",
    "MaxDepthExceededError",
    "ObjectNotFoundError",
    "ReferenceConflictError",
    "ReferenceNotFoundError",
    "NoSuchImageError",
    "UnpackTargetError",
    "StoreError",
    "CredentialHelperError",
    "LayerError",
    "LayerLimitError",
    "NotPermittedError",
    "PathEscapeError",
    "UnsupportedCompressionError",
    "DoNotRetry",
    "FallbackError",
    "ImageConfigPullError",
    "InvalidOptionError",
    "InvalidRegistryConfigError",
    "ManifestTooLargeError",
    "NoBasicAuthCredentialsError",
    "NoEndpointsError",
    "NoTokenError",
    "NotFoundError",
    "OperationCancelledError",
    "ReservedNameError",
    "ResponseFormatError",
    "TokenAuthError",
    "TransportError",
    "check_count",
    "continue_on_error",
    "retry_on_error",
    "translate_pull_error",
    "BlobUnknownError",
    "BlobUploadInvalidError",
    "BlobUploadUnknownError",
    "DeniedError",
    "DeprecatedSchema1ImageError",
    "DigestInvalidError",
    "DigestMismatchError",
    "DistributionError",
    "InvalidDigestError",
    "InvalidReferenceError",
    "ManifestBlobUnknownError",
    "ManifestInvalidError",
    "ManifestUnknownError",
    "ManifestUnverifiedError",
    "ManifestVerificationError",
    "NameInvalidError",
    "NameUnknownError",
    "PaginationNumberInvalidError",
    "REGISTRY_ERROR_CLASSES",
    "RegistryError",
    "SizeInvalidError",
    "SizeMismatchError",
    "TagInvalidError",
    "TooManyRequestsError",
    "UnauthorizedError",
    "UnavailableError",
    "UnexpectedHTTPResponseError",
    "UnexpectedHTTPStatusError",
    "UnknownError",
    "UnsupportedDigestAlgorithmError",
    "UnsupportedError",
    "UnsupportedMediaTypeError",
    "VerificationError",
    "errors_from_response",
]

#: How much of an error body is ever read or quoted; a hostile server cannot make us buffer more.
MAX_ERROR_BODY = 64 * 1024


class DistributionError(Exception):
    """Base class of every error raised by docker-distribution."""

    retryable: ClassVar[bool] = False


# --- registry error codes -------------------------------------------------------------------


class RegistryError(DistributionError):
    """A registry error code, as sent in ``{"errors": [{"code", "message", "detail"}]}``.

    ``message`` defaults to the code's default message. ``bare`` is true when the registry
    sent no detail and an empty or default message: moby decodes such an entry to a bare
    ``ErrorCode`` rather than an ``Error``, which changes how it is classified (docker/distribution registry/api/errcode).
    """

    code: ClassVar[str] = "UNKNOWN"
    default_message: ClassVar[str] = "unknown error"
    default_status: ClassVar[int] = 500

    def __init__(
        self,
        message: str | None = None,
        *,
        detail: object = None,
        status: int | None = None,
        bare: bool | None = None,
        code: str | None = None,
    ) -> None:
        self.message = message if message else self.default_message
        self.detail = detail
        self.status = status if status is not None else self.default_status
        if code is not None and code != type(self).code:
            # an unknown code string decodes to UNKNOWN, but the text the registry sent is kept
            self.raw_code = code
        else:
            self.raw_code = type(self).code
        if bare is None:
            bare = detail is None and (not message or message == self.default_message)
        self.bare = bare
        #: ``Method "url"`` of the request that failed, when known (moby's ``url.Error`` prefix)
        self.request: str | None = None
        #: further errors the registry sent in the same response (moby logs and ignores them)
        self.others: tuple[DistributionError, ...] = ()
        super().__init__(self.__str__())

    @classmethod
    def code_text(cls) -> str:
        """``ErrorCode.Error()``: the code lower-cased with ``_`` replaced by spaces."""
        return cls.code.lower().replace("_", " ")

    def __str__(self) -> str:
        text = f"{self.code_text()}: {self.message}"
        return f"{self.request}: {text}" if self.request else text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(message={self.message!r}, detail={self.detail!r}, status={self.status})"


class UnknownError(RegistryError):
    """UNKNOWN: the registry reported an error without a code we know."""

    code = "UNKNOWN"
    default_message = "unknown error"
    default_status = 500


class UnsupportedError(RegistryError):
    """UNSUPPORTED: the operation is not supported by this registry."""

    code = "UNSUPPORTED"
    default_message = "The operation is unsupported."
    default_status = 405


class UnauthorizedError(RegistryError):
    """UNAUTHORIZED: authentication is required or the credentials were rejected."""

    code = "UNAUTHORIZED"
    default_message = "authentication required"
    default_status = 401


class DeniedError(RegistryError):
    """DENIED: the credentials do not grant access to this resource."""

    code = "DENIED"
    default_message = "requested access to the resource is denied"
    default_status = 403


class UnavailableError(RegistryError):
    """UNAVAILABLE: the registry is temporarily unavailable."""

    code = "UNAVAILABLE"
    default_message = "service unavailable"
    default_status = 503
    retryable = True


class TooManyRequestsError(RegistryError):
    """TOOMANYREQUESTS: rate limited. moby does not retry it for blobs (docker/distribution registry/client/errors.go, HandleErrorResponse)."""

    code = "TOOMANYREQUESTS"
    default_message = "too many requests"
    default_status = 429


class DigestInvalidError(RegistryError):
    """DIGEST_INVALID: the uploaded content does not match the digest given."""

    code = "DIGEST_INVALID"
    default_message = "provided digest did not match uploaded content"
    default_status = 400


class SizeInvalidError(RegistryError):
    """SIZE_INVALID: the uploaded content does not have the length given."""

    code = "SIZE_INVALID"
    default_message = "provided length did not match content length"
    default_status = 400


class NameInvalidError(RegistryError):
    """NAME_INVALID: the repository name is not valid."""

    code = "NAME_INVALID"
    default_message = "invalid repository name"
    default_status = 400


class TagInvalidError(RegistryError):
    """TAG_INVALID: the manifest tag does not match the URL."""

    code = "TAG_INVALID"
    default_message = "manifest tag did not match URI"
    default_status = 400


class NameUnknownError(RegistryError):
    """NAME_UNKNOWN: the repository is not known to the registry."""

    code = "NAME_UNKNOWN"
    default_message = "repository name not known to registry"
    default_status = 404


class ManifestUnknownError(RegistryError):
    """MANIFEST_UNKNOWN: no manifest for that tag or digest."""

    code = "MANIFEST_UNKNOWN"
    default_message = "manifest unknown"
    default_status = 404


class ManifestInvalidError(RegistryError):
    """MANIFEST_INVALID: the registry rejected the manifest."""

    code = "MANIFEST_INVALID"
    default_message = "manifest invalid"
    default_status = 400


class ManifestUnverifiedError(RegistryError):
    """MANIFEST_UNVERIFIED: a schema1 signature did not verify."""

    code = "MANIFEST_UNVERIFIED"
    default_message = "manifest failed signature verification"
    default_status = 400


class ManifestBlobUnknownError(RegistryError):
    """MANIFEST_BLOB_UNKNOWN: the manifest references a blob the repository lacks."""

    code = "MANIFEST_BLOB_UNKNOWN"
    default_message = "blob unknown to registry"
    default_status = 400


class BlobUnknownError(RegistryError):
    """BLOB_UNKNOWN: no such blob in the repository."""

    code = "BLOB_UNKNOWN"
    default_message = "blob unknown to registry"
    default_status = 404


class BlobUploadUnknownError(RegistryError):
    """BLOB_UPLOAD_UNKNOWN: the upload session does not exist (any more)."""

    code = "BLOB_UPLOAD_UNKNOWN"
    default_message = "blob upload unknown to registry"
    default_status = 404


class BlobUploadInvalidError(RegistryError):
    """BLOB_UPLOAD_INVALID: the upload session is in an invalid state."""

    code = "BLOB_UPLOAD_INVALID"
    default_message = "blob upload invalid"
    default_status = 404


class PaginationNumberInvalidError(RegistryError):
    """PAGINATION_NUMBER_INVALID: ``n`` was out of range."""

    code = "PAGINATION_NUMBER_INVALID"
    default_message = "invalid number of results requested"
    default_status = 400


#: code string → class. Unknown codes map to :class:`UnknownError`.
REGISTRY_ERROR_CLASSES: Mapping[str, type[RegistryError]] = {
    cls.code: cls
    for cls in (
        UnknownError,
        UnsupportedError,
        UnauthorizedError,
        DeniedError,
        UnavailableError,
        TooManyRequestsError,
        DigestInvalidError,
        SizeInvalidError,
        NameInvalidError,
        TagInvalidError,
        NameUnknownError,
        ManifestUnknownError,
        ManifestInvalidError,
        ManifestUnverifiedError,
        ManifestBlobUnknownError,
        BlobUnknownError,
        BlobUploadUnknownError,
        BlobUploadInvalidError,
        PaginationNumberInvalidError,
    )
}


class UnexpectedHTTPResponseError(DistributionError):
    """A 4xx response whose body could not be read as a registry error document."""

    def __init__(self, status: int, parse_error: str, body: bytes) -> None:
        self.status = status
        self.parse_error = parse_error
        self.body = body[:MAX_ERROR_BODY]
        super().__init__(f"error parsing HTTP {status} response body: {parse_error}: {_go_quote(self.body)}")


class UnexpectedHTTPStatusError(DistributionError):
    """A non-success status outside 400–499, e.g. a 5xx: retryable (moby distribution/errors.go)."""

    retryable = True

    def __init__(self, status: int, reason: str = "") -> None:
        self.status = status
        self.reason = reason
        line = f"{status} {reason}".strip()
        super().__init__(f"received unexpected HTTP status: {line}")


def _go_quote(body: bytes) -> str:
    # Go's %q of the body; json.dumps is close enough for printable ASCII and escapes the rest.
    return json.dumps(body.decode("utf-8", errors="replace"))


def _status_error(status: int, text: str) -> RegistryError:
    cls = {401: UnauthorizedError, 403: DeniedError, 429: TooManyRequestsError}.get(status, UnknownError)
    return cls(text, status=status, bare=False)


def errors_from_response(status: int, content_type: str | None, body: bytes) -> list[DistributionError]:
    """Decode a 4xx error response the way moby's ``parseHTTPErrorResponse`` does (docker/distribution registry/client/errors.go, HandleErrorResponse).

    Returns the errors in the order the registry sent them (never empty). Non-JSON bodies
    become the status's error class with the body as message; a JSON body with a
    ``details`` string uses that; an undecodable or empty document becomes
    :class:`UnexpectedHTTPResponseError`, or UNAUTHORIZED (with the body as detail) for a 401.
    """
    body = body[:MAX_ERROR_BODY]
    media = (content_type or "").split(";", 1)[0].strip().lower()
    result: list[DistributionError]
    if media not in ("application/json", "application/vnd.api+json"):
        result = [_status_error(status, body.decode("utf-8", errors="replace"))]
    else:
        result = _decode_error_document(status, body)
    if status == 401 and len(result) == 1 and isinstance(result[0], UnexpectedHTTPResponseError):
        return [UnauthorizedError(detail=body.decode("utf-8", errors="replace"), status=401, bare=False)]
    return result


def _decode_error_document(status: int, body: bytes) -> list[DistributionError]:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        return [UnexpectedHTTPResponseError(status, str(exc), body)]
    if isinstance(doc, dict) and isinstance(doc.get("details"), str) and doc["details"]:
        return [_status_error(status, doc["details"])]
    entries = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        return [UnexpectedHTTPResponseError(status, "no error details found in HTTP response body", body)]
    out: list[DistributionError] = []
    for entry in entries:
        if not isinstance(entry, dict):
            return [UnexpectedHTTPResponseError(status, "malformed error entry", body)]
        code = str(entry.get("code", ""))
        cls = REGISTRY_ERROR_CLASSES.get(code, UnknownError)
        message = entry.get("message")
        out.append(
            cls(
                message if isinstance(message, str) else None,
                detail=entry.get("detail"),
                status=status,
                code=code or None,
            )
        )
    return out


# --- verification ---------------------------------------------------------------------------


class VerificationError(DistributionError):
    """Bytes did not match the digest or size they were promised to have."""


class DigestMismatchError(VerificationError):
    """Content hashed to ``actual`` where ``expected`` was required. Nothing was committed."""

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"digest mismatch: expected {expected}, got {actual}")


class ManifestVerificationError(DigestMismatchError):
    """A manifest asked for by digest came with other bytes: moby's ``manifest verification failed
    for digest <d>``. Nothing was kept."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(expected, actual)
        self.args = (f"manifest verification failed for digest {expected}",)

    def __str__(self) -> str:
        return str(self.args[0])


class SizeMismatchError(VerificationError):
    """Content had ``actual`` bytes where ``expected`` were required. Nothing was committed."""

    def __init__(self, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"size mismatch: expected {expected} bytes, got {actual}")


# --- client-side validation -----------------------------------------------------------------


class InvalidDigestError(DistributionError, ValueError):
    """A string that is not a valid ``algorithm:hex`` digest."""

    def __init__(self, value: str, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"invalid digest {value!r}: {reason}")


class UnsupportedDigestAlgorithmError(InvalidDigestError):
    """A digest algorithm other than sha256, sha384 or sha512."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        DistributionError.__init__(self, f"unsupported digest algorithm {algorithm!r}")
        self.value = algorithm
        self.reason = "unsupported digest algorithm"


class InvalidReferenceError(DistributionError, ValueError):
    """A string that is not a valid image reference (upstream's validation messages)."""


class UnsupportedMediaTypeError(DistributionError):
    """A config or layer media type that is not an image type (moby's ``unsupportedMediaTypeError``)."""

    def __init__(self, media_type: str) -> None:
        self.media_type = media_type
        super().__init__(f"unsupported media type {media_type}")


class AIModelNotSupportedError(DistributionError):
    """An ``application/vnd.docker.ai.*`` artifact: moby refuses these with a pointer to ``docker model``."""

    MESSAGE: ClassVar[str] = 'AI models are not yet supported by the Engine, please use "docker model pull/run" instead'

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class DeprecatedSchema1ImageError(DistributionError):
    """A Docker schema1 manifest: support was removed; the message names ``ref`` when given."""

    def __init__(self, ref: object = None) -> None:
        self.ref = ref
        msg = "Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been removed."
        if ref is not None:
            msg += (
                f" Suggest the author of {ref} to upgrade the image to the OCI Format or "
                "Docker Image manifest v2, schema 2."
            )
        msg += " More information at https://docs.docker.com/go/deprecated-image-specs/"
        super().__init__(msg)


# --- protocol and configuration errors ------------------------------------------------------


class InvalidRegistryConfigError(DistributionError, ValueError):
    """A mirror, insecure-registry entry or index name that moby's validation rejects."""


class InvalidOptionError(DistributionError, ValueError):
    """An option the package cannot honour, refused before any work starts (e.g. a compression
    level the codec does not have)."""


def check_count(value: int, what: str) -> int:
    """``value``, or :class:`InvalidOptionError` ``invalid <what>: <value>`` when it is negative (the
    text of moby's daemon-config checks, e.g. ``invalid max concurrent downloads: -1``)."""
    if value < 0:
        raise InvalidOptionError(f"invalid {what}: {value}")
    return value


class NoBasicAuthCredentialsError(DistributionError):
    """A registry asked for basic auth and no username/password is configured."""

    def __init__(self) -> None:
        super().__init__("no basic auth credentials")


class NoTokenError(DistributionError):
    """The token server answered without a token."""

    def __init__(self) -> None:
        super().__init__("authorization server did not include a token in the response")


class TokenAuthError(DistributionError):
    """A bearer challenge that cannot be followed (no realm, a bad realm URL, an undecodable answer)."""


class CredentialHelperError(DistributionError):
    """A ``docker-credential-<name>`` helper failed or is missing."""


class ManifestTooLargeError(DistributionError):
    """A manifest body over the size cap; it is not read any further."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"manifest exceeds the {limit} byte limit")


class ResponseFormatError(DistributionError):
    """A success response that lacks what the protocol requires (a header, a parsable range …)."""


class OperationCancelledError(DistributionError):
    """The operation was cancelled by its caller (moby's ``context canceled``)."""

    def __init__(self, message: str = "context canceled") -> None:
        super().__init__(message)


class ReservedNameError(DistributionError):
    """``'scratch' is a reserved name`` (moby's reservedNameError, Forbidden class)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"'{name}' is a reserved name")


class NoEndpointsError(DistributionError):
    """No endpoint was left to try: ``no endpoints found for <ref>``."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"no endpoints found for {ref}")


class ImageConfigPullError(DistributionError):
    """``error pulling image configuration: <err>``."""

    def __init__(self, err: BaseException) -> None:
        self.err = err
        super().__init__(f"error pulling image configuration: {err}")


class FallbackError(DistributionError):
    """An error after which the next endpoint may be tried (moby's ``fallbackError``).

    ``transport_ok`` says the endpoint's TLS was confirmed to work, so its plain-HTTP
    twin is skipped. The message is the wrapped error's.
    """

    def __init__(self, err: BaseException, *, transport_ok: bool) -> None:
        self.err = err
        self.transport_ok = transport_ok
        super().__init__(str(err))


class DoNotRetry(DistributionError):
    """Marks an error as not worth another attempt (moby's ``xfer.DoNotRetry``). Same message."""

    def __init__(self, err: BaseException) -> None:
        self.err = err
        super().__init__(str(err))


class NotFoundError(DistributionError):
    """moby's ``notFoundError``: DENIED, MANIFEST_UNKNOWN or NAME_UNKNOWN, worded for a pull of ``ref``.

    The error raised is also of the registry's own class: ``NotFoundError(ManifestUnknownError(…),
    ref)`` is an instance of :class:`ManifestUnknownError` (and so of :class:`RegistryError`),
    with the registry's ``message``, ``detail`` and ``status``, so ``except
    ManifestUnknownError`` catches a missing tag as well as ``except NotFoundError`` does.
    ``cause`` (and ``__cause__``) is the registry's error as received.
    """

    cause: RegistryError
    _for_code: ClassVar[dict[type[RegistryError], type[NotFoundError]]] = {}

    def __new__(cls, cause: RegistryError, ref: object) -> NotFoundError:
        if cls is NotFoundError and isinstance(cause, RegistryError):
            cls = NotFoundError._subclass_for(type(cause))
        return super().__new__(cls, cause, ref)

    @staticmethod
    def _subclass_for(code_cls: type[RegistryError]) -> type[NotFoundError]:
        sub = NotFoundError._for_code.get(code_cls)
        if sub is None:
            name = code_cls.__name__.removesuffix("Error") + "NotFoundError"
            sub = type(name, (NotFoundError, code_cls), {"__module__": __name__, "__doc__": NotFoundError.__doc__})
            NotFoundError._for_code[code_cls] = sub
        return sub

    def __init__(self, cause: RegistryError, ref: object) -> None:
        from .reference import Reference

        self.cause = cause
        self.ref = ref
        familiar_name = ref.familiar_name if isinstance(ref, Reference) else str(ref)
        familiar = ref.familiar if isinstance(ref, Reference) else str(ref)
        if isinstance(cause, DeniedError):
            msg = (f"pull access denied for {familiar_name}, repository does not exist or may require "
                   f"'docker login': {cause}")
        elif isinstance(cause, ManifestUnknownError):
            msg = f"manifest for {familiar} not found: {cause}"
        elif isinstance(cause, NameUnknownError):
            msg = f"repository {familiar_name} not found: {cause}"
        else:
            msg = cause.message
        if isinstance(self, RegistryError):  # the registry's fields, as its own error had them
            self.message, self.detail, self.status = cause.message, cause.detail, cause.status
            self.raw_code, self.bare, self.request, self.others = cause.raw_code, cause.bare, cause.request, cause.others
        self._text = msg
        DistributionError.__init__(self, msg)

    def __str__(self) -> str:
        return self._text

    def __reduce__(self) -> tuple[object, ...]:
        return (NotFoundError, (self.cause, self.ref))


# --- classification (moby distribution/errors.go) -------------------------------------------------------------

_CANCELLED = (OperationCancelledError, KeyboardInterrupt)
_NOT_RETRIED_CODES = (UnauthorizedError, UnsupportedError, DeniedError, TooManyRequestsError, NameUnknownError)


def _is_code_error(err: BaseException) -> bool:
    """moby's ``errcode.Error``: not a bare ``ErrorCode``, and not wrapped in a ``url.Error``."""
    return isinstance(err, RegistryError) and not err.bare and err.request is None


def continue_on_error(err: BaseException, mirror: bool) -> bool:
    """``continueOnError``: may the next endpoint be tried after ``err``?"""
    if isinstance(err, _CANCELLED):
        return False
    if isinstance(err, FallbackError):
        return continue_on_error(err.err, mirror)
    if _is_code_error(err):
        return mirror
    if isinstance(err, UnexpectedHTTPResponseError):
        return True
    if isinstance(err, ImageConfigPullError):
        return mirror
    if isinstance(err, UnsupportedMediaTypeError):
        return False
    # moby's text check for "no such process" (a plugin that went away) is ESRCH
    return not (isinstance(err, OSError) and err.errno == errno.ESRCH)


def retry_on_error(err: BaseException) -> BaseException:
    """``retryOnError``: ``err`` itself when another attempt may help, else it wrapped in :class:`DoNotRetry`."""
    if isinstance(err, DoNotRetry):
        return err
    if isinstance(err, _NOT_RETRIED_CODES) and not err.bare:
        return DoNotRetry(err)
    if isinstance(err, (NoBasicAuthCredentialsError, NoTokenError, UnexpectedHTTPResponseError,
                        UnsupportedMediaTypeError, BlobUnknownError, VerificationError, LayerError)):
        return DoNotRetry(err)
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):  # a full disk, or quota
        return DoNotRetry(err)
    return err


def translate_pull_error(err: BaseException, ref: object) -> BaseException:
    """``translatePullError``: DENIED / MANIFEST_UNKNOWN / NAME_UNKNOWN become :class:`NotFoundError`."""
    if isinstance(err, _CANCELLED):
        return err
    if isinstance(err, DoNotRetry):
        return translate_pull_error(err.err, ref)
    if isinstance(err, (DeniedError, ManifestUnknownError, NameUnknownError)) and _is_code_error(err):
        return NotFoundError(err, ref)
    return err


class TransportError(DistributionError):
    """The request did not get an HTTP answer (refused, reset, timed out, TLS failure).

    Worded like Go's ``url.Error``: ``Get "<redacted url>": <reason>``. Retryable.
    """

    retryable = True

    def __init__(self, method: str, url: str, reason: str) -> None:
        self.method = method
        self.url = url
        self.reason = reason
        super().__init__(f'{method.capitalize()} "{url}": {reason}')


# --- layers ---------------------------------------------------------------------------------


class LayerError(DistributionError):
    """A layer that cannot be applied. Nothing of it is left visible in a diff target."""


class UnsupportedCompressionError(LayerError):
    """bzip2 or xz (recognised by magic bytes, not decoded), or an unknown codec asked for."""

    def __init__(self, compression: str) -> None:
        self.compression = compression
        super().__init__(f"unsupported compression: {compression}")


class CorruptLayerError(LayerError):
    """A truncated or corrupt compressed stream, trailing garbage, or an unusable tar."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class PathEscapeError(LayerError):
    """A layer entry (``..``, an absolute name, a link) that would land outside the target."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"layer entry {path!r} escapes the target directory")


class LayerLimitError(LayerError):
    """The configured limit on uncompressed bytes or entries was exceeded (a decompression bomb)."""

    def __init__(self, what: str, limit: int) -> None:
        self.what = what
        self.limit = limit
        super().__init__(f"layer exceeds the {what} limit of {limit}")


class NotPermittedError(LayerError):
    """Something only root may do, such as creating a device node."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"{what}: operation requires root")


# --- the local store ------------------------------------------------------------------------


class StoreError(DistributionError):
    """A problem with the local store (content, images, layers, references, metadata)."""


class ObjectNotFoundError(StoreError, KeyError):
    """No such blob, image, layer, ingest or metadata key in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ReferenceNotFoundError(ObjectNotFoundError):
    """moby's ``ErrDoesNotExist``: ``reference does not exist``."""

    def __init__(self) -> None:
        super().__init__("reference does not exist")


class NoSuchImageError(ReferenceNotFoundError):
    """docker's ``No such image: <ref>``, naming what was asked for: a tag, a digest reference or
    an ID prefix that resolves to no image in the store (tag, rmi, unpack, save)."""

    def __init__(self, name: str) -> None:
        ObjectNotFoundError.__init__(self, f"No such image: {name}")


class AlreadyExistsError(StoreError):
    """The content is already in the store (containerd's ``ErrAlreadyExists``)."""


class LockedError(StoreError):
    """Another writer holds this ingest ref (containerd's ``ErrUnavailable``); retry later."""

    retryable = True


class UnpackTargetError(StoreError):
    """``unpack`` refuses its target: a directory that is not empty (its files would be written
    over or mixed with the image's, as umoci refuses too) unless ``force`` is given, or a path
    that exists and is not a directory."""


class ReferenceConflictError(StoreError):
    """A tag already points elsewhere (without force), or a digest reference would change."""


class ImageDeleteConflictError(StoreError):
    """moby's ``imageDeleteConflict``: an image asked for by ID whose references are more than one
    tag, or span repositories, is deleted only when forced (``docker rmi -f``)."""

    def __init__(self, image_id: str) -> None:
        short = image_id.partition(":")[2][:12] if ":" in image_id else image_id[:12]
        super().__init__(f"conflict: unable to delete {short} (must be forced) - "
                         "image is referenced in multiple repositories")


class InvalidLayoutError(StoreError):
    """An OCI image layout (directory or ``.tar``) that ``load`` cannot read: not a tar, an unsafe
    archive member, JSON that is not what the image-spec says, a missing blob."""


class CorruptStoreError(StoreError):
    """A file of the local store that is not what the store wrote: bad JSON, the wrong shape, a
    config whose bytes no longer hash to its image ID. The message names the file. The store
    never writes over such a file with a guess (a corrupt ``repositories.json`` is not replaced
    by an empty one); a verified copy of the same content (the config or layer of a new pull)
    replaces it, and caches (V2 metadata, content labels) count it as absent."""


class MaxDepthExceededError(StoreError):
    """moby's ``ErrMaxDepthExceeded``: a layer chain deeper than the layer store allows (125)."""

    def __init__(self) -> None:
        super().__init__("max depth exceeded")


class FailedPreconditionError(StoreError):
    """A commit whose size does not match what was written, and similar misuse."""
