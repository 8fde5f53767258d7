"""The web dashboard at ``/ui``: server-rendered pages (Jinja2), htmx and uPlot vendored in
``static/`` (see VENDORED.md), live figures from a sampler that runs only while someone looks."""

from modelserve.server.dashboard.audit import Audit
from modelserve.server.dashboard.endpoints import Dashboard
from modelserve.server.dashboard.roles import Roles
from modelserve.server.dashboard.sampler import Sampler
from modelserve.server.dashboard.views import Views

__all__ = ["Audit", "Dashboard", "Roles", "Sampler", "Views"]
