"""Who may act from the dashboard.

With ``--auth on`` (issue #12), the request's API key decides: an ``admin`` key may act, and the
audit log names the key. With auth off, the admin role is the server's model control API: a
server started with ``--control-api on`` lets every dashboard user act; otherwise nobody may.
This module is the one place that decides. Pages hide the controls of a non-admin, and every action endpoint refuses one
with 403 on its own (the page is never trusted).
"""

from __future__ import annotations

from modelserve.errors import Forbidden, InvalidInput
from modelserve.server.auth import ADMIN, identity_of
from modelserve.server.http.app import Request
from modelserve.server.info import CONTROL_DISABLED

ACTOR = "dashboard"  # the audit log's actor of dashboard actions when auth is off


class Roles:
    def __init__(self, control_api: bool, auth: bool = False) -> None:
        self._control_api = control_api
        self._auth = auth

    def is_admin(self, request: Request) -> bool:
        """Whether ``request`` may load, unload, roll back and change traffic."""
        if self._auth:
            identity = identity_of(request.scope)
            return identity is not None and identity.role == ADMIN
        return self._control_api

    def actor(self, request: Request) -> str:
        """The name the audit log records for ``request``'s actions: the API key's name with auth on."""
        identity = identity_of(request.scope) if self._auth else None
        return ACTOR if identity is None else identity.name

    def check_action(self, request: Request) -> str:
        """The actor of an admin action. Raises Forbidden for a non-admin, and InvalidInput for a
        request without the ``HX-Request`` header: a cross-site form cannot set it, so a page on
        another site cannot make an operator's browser act."""
        if not self.is_admin(request):
            why = "an API key with role admin" if self._auth else CONTROL_DISABLED
            raise Forbidden("dashboard actions need the admin role: " + why)
        if request.header("hx-request") != "true":
            raise InvalidInput("dashboard actions are sent by the dashboard (header HX-Request: true)")
        return self.actor(request)
