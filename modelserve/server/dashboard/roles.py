"""Who may act from the dashboard.

Until API keys with roles exist (issue #12), the admin role is the server's model control API:
a server started with ``--control-api on`` lets every dashboard user act; otherwise nobody may.
This module is the one place that decides; #12 replaces :meth:`Roles.is_admin` with a check of
the request's key. Pages hide the controls of a non-admin, and every action endpoint refuses one
with 403 on its own (the page is never trusted).
"""

from __future__ import annotations

from modelserve.errors import Forbidden, InvalidInput
from modelserve.server.http.app import Request
from modelserve.server.info import CONTROL_DISABLED

ACTOR = "dashboard"  # the audit log's actor of dashboard actions (the key's name once keys exist)


class Roles:
    def __init__(self, control_api: bool) -> None:
        self._control_api = control_api

    def is_admin(self, request: Request) -> bool:
        """Whether ``request`` may load, unload, roll back and change traffic."""
        return self._control_api

    def actor(self, request: Request) -> str:
        """The name the audit log records for ``request``'s actions."""
        return ACTOR

    def check_action(self, request: Request) -> str:
        """The actor of an admin action. Raises Forbidden for a non-admin, and InvalidInput for a
        request without the ``HX-Request`` header: a cross-site form cannot set it, so a page on
        another site cannot make an operator's browser act."""
        if not self.is_admin(request):
            raise Forbidden("dashboard actions need the admin role: " + CONTROL_DISABLED)
        if request.header("hx-request") != "true":
            raise InvalidInput("dashboard actions are sent by the dashboard (header HX-Request: true)")
        return self.actor(request)
