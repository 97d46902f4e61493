"""The Talk page's server side (one WebSocket connection = one live session), as a package:

``protocol`` (messages, media packets) <- ``options`` (choices, personalised workflow) <- ``connection``
(``TalkConnection``) <- ``relay`` (a connection relayed through Redis to a cluster worker) <- ``routes``.
"""

from server.talk.routes import PAGE_DIR, mount_talk, router, talk_connections

__all__ = ["PAGE_DIR", "mount_talk", "router", "talk_connections"]
