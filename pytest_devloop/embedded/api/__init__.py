"""The embedded API server's verbs, grouped: discovery, reads, writes, subresources.

`server.ApiServer` routes each request to one group; the groups share an `ApiContext`
(the store, the type registry, validation, admission, the token signer and the request
helpers). The HTTP layer (connections, watches and log streams) stays in `server.py`.
"""
