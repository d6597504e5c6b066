"""The real-registry test bed: Debian's docker-registry (CNCF distribution 2.8) in four variants.

* :mod:`bed.pki`: a throw-away CA, server certificates and token-signing keys.
* :mod:`bed.registry`: starting and stopping ``docker-registry`` processes on free loopback ports.
* :mod:`bed.token_issuer`: a bearer-token issuer that signs JWTs the registry trusts.
"""
