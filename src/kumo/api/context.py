"""Who is calling: the request context that identity's middleware attaches."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from starlette.requests import Request

from kumo.errors import Forbidden, Unauthorized


@dataclass(frozen=True)
class RequestContext:
    """A validated token's subject, scope and roles."""

    user_id: str
    user_name: str
    project_id: str
    project_name: str
    roles: tuple[str, ...]
    token: str
    expires_at: datetime
    domain_id: str = "default"  # the user's domain
    # Tokens not scoped to a project (project_id is then ""): identity's API only.
    scope_domain_id: str = ""
    system_scope: bool = False
    app_cred_id: str = ""  # the application credential the token came from
    # This request's `x-openstack-request-id` (kumo.api.request_id); instance actions keep it.
    request_id: str = ""

    @property
    def scope_name(self) -> str:
        if self.project_id:
            return f"project {self.project_name}"
        if self.scope_domain_id:
            return f"domain {self.scope_domain_id}"
        return "the system" if self.system_scope else "nothing (unscoped)"

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def can_write(self) -> bool:
        """Members and admins may change things; readers may only look."""
        return self.is_admin or "member" in self.roles

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this action needs the admin role")

    def require_writer(self) -> None:
        if not self.can_write:
            raise Forbidden("this action needs the member or admin role (reader is read-only)")


def context_of(request: Request, *, any_scope: bool = False) -> RequestContext:
    """The caller's context; 401 when the request carried no valid token.

    Only identity's API takes tokens scoped to a domain, the system or nothing
    (`any_scope`); the other services need a project, as their policies do in OpenStack.
    """
    context = getattr(request.state, "context", None)
    if context is None:
        reason = getattr(request.state, "token_error", None)
        raise Unauthorized(reason or "The request you have made requires authentication.")
    assert isinstance(context, RequestContext)
    if not context.project_id and not any_scope:
        raise Forbidden("This API needs a project-scoped token (this one is scoped to "
                        f"{context.scope_name}).")
    return context
