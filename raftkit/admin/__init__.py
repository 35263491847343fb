"""The authenticated admin endpoint of a node, its client, and its protocol.

``AdminServer(node, "127.0.0.1:7001", password=...)`` serves ``status``,
``members``, ``add``, ``remove``, ``promote``, ``transfer``, ``snapshot`` and
any extra operations given as ``handlers``; ``AdminClient`` calls them; the
``raftkit admin`` command line (``raftkit.cli``) is built on both. See
``raftkit.admin.protocol`` for the wire format and the authentication.

May import ``raftkit.errors``, ``raftkit.runtime`` (the server drives a
node), ``raftkit.core`` and the plug-in packages (its channel is a
transport's); never ``syncobj``, ``batteries``, ``cli`` or ``testing``.
"""

from raftkit.admin.client import AdminClient, AdminConnectionError
from raftkit.admin.protocol import AdminAuthError, AdminError, AdminProtocolError, AdminRequestError
from raftkit.admin.server import AdminServer

__all__ = [
    "AdminAuthError",
    "AdminClient",
    "AdminConnectionError",
    "AdminError",
    "AdminProtocolError",
    "AdminRequestError",
    "AdminServer",
]
