"""Who may see, change, download and share an image: Glance's rules.

- admin: everything.
- owner (the project that created the image): everything on its own images.
- public and community images: everyone may read them (community images are
  listed only when asked for with `visibility=community`).
- shared images: the owner and the member projects (any member status may
  read by id; the default list shows only accepted ones).
- private images: the owner only.
Only the owner (or admin) changes an image; a member only its own membership status.
"""

from __future__ import annotations

from kumo.api.context import RequestContext
from kumo.errors import Forbidden, NotFound
from kumo.image.lifecycle import DEACTIVATED
from kumo.image.models import Image, ImageMember


def is_owner(context: RequestContext, image: Image) -> bool:
    return image.owner is not None and image.owner == context.project_id


def membership(context: RequestContext, image: Image) -> ImageMember | None:
    for member in image.members:
        if member.member == context.project_id:
            return member
    return None


def can_read(context: RequestContext, image: Image) -> bool:
    if context.is_admin or is_owner(context, image):
        return True
    if image.visibility in ("public", "community"):
        return True
    if image.visibility == "shared":
        return membership(context, image) is not None
    return False


def check_read(context: RequestContext, image: Image) -> None:
    """404 (not 403) for an image the caller may not see, so ids do not leak."""
    if not can_read(context, image):
        raise NotFound(f"No image found with ID {image.id}")


def check_modify(context: RequestContext, image: Image) -> None:
    """Owner or admin, with a writing role; others get 403 (they can see it) or 404."""
    check_read(context, image)
    context.require_writer()
    if not (context.is_admin or is_owner(context, image)):
        raise Forbidden(f"You are not permitted to modify image {image.id}")


def check_download(context: RequestContext, image: Image) -> None:
    check_read(context, image)
    if image.status == DEACTIVATED and not context.is_admin:
        raise Forbidden(
            "The requested image has been deactivated. Image data download is forbidden."
        )


def check_set_visibility(context: RequestContext, visibility: str) -> None:
    # Glance's default policy (publicize_image) keeps `public` for admins.
    if visibility == "public" and not context.is_admin:
        raise Forbidden(
            "You are not authorized to set an image's visibility to public (admin only)"
        )


def check_set_owner(context: RequestContext, owner: str | None) -> None:
    if owner is not None and owner != context.project_id and not context.is_admin:
        raise Forbidden("You are not permitted to create images owned by another project")


def check_manage_members(context: RequestContext, image: Image) -> None:
    check_modify(context, image)


def check_member_status_change(context: RequestContext, image: Image, member_id: str) -> None:
    """Only the member project itself sets its status (admin too)."""
    check_read(context, image)
    context.require_writer()
    if context.is_admin:
        return
    if member_id != context.project_id:
        raise Forbidden("Only the member project can change its membership status")


def listed_by_default(
    context: RequestContext, image: Image, member_status: str = "accepted"
) -> bool:
    """Whether `image` belongs in the caller's default (no visibility filter) list."""
    if context.is_admin or is_owner(context, image):
        return True
    if image.visibility == "public":
        return True
    if image.visibility == "shared":
        member = membership(context, image)
        return member is not None and (member_status == "all" or member.status == member_status)
    return False
