"""HTTP plumbing shared by every part: request context, errors, app assembly."""
