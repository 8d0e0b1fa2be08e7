"""Runs scim2-tester (PyPI) against a live keyward SCIM endpoint.

Usage: python check.py BASE_URL KEY

Prints every check and exits 1 if one that applies fails. A check "applies"
unless it exercises what the contract excludes and /ServiceProviderConfig or
/ResourceTypes say so: creating and deleting Groups (the tenant's roles are
fixed; 403 by API.md section 12). Those are run too and listed as excluded.

One adaptation of the tester's random data, also printed: keyward's userName
is the user's email address (API.md section 12: anything else is 400
invalidValue), and emails/name.formatted are derived from userName/displayName,
so generated Users get an address as userName, that address as their one
work email, and their displayName as name.formatted. Everything else is the
tester's own.
"""

import sys
import uuid

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server
import scim2_tester.filling as filling

EXCLUDED = {
    # (resource type, check title prefix): why
    ("Group", "object_creation"): "groups are the tenant's two fixed roles (403)",
    ("Group", "object_deletion"): "groups are the tenant's two fixed roles (403)",
}

_fill = filling.fill_with_random_values


def _fill_user_like_keyward(context, obj, *args, **kwargs):
    obj = _fill(context, obj, *args, **kwargs)
    if type(obj).__name__ == "User" and hasattr(obj, "user_name"):
        address = f"{uuid.uuid4().hex[:12]}@{uuid.uuid4().hex[:8]}.test"
        obj.user_name = address
        if getattr(obj, "emails", None):
            email = obj.emails[0]
            email.value, email.type, email.primary = address, "work", True
            obj.emails = [email]
        if getattr(obj, "name", None) is not None and getattr(obj, "display_name", None):
            obj.name.formatted = obj.display_name
    return obj


def main() -> int:
    base, key = sys.argv[1], sys.argv[2]
    # Every module that imported the filler by name gets the adapted one.
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("scim2_tester") and getattr(
            module, "fill_with_random_values", None
        ) is _fill:
            module.fill_with_random_values = _fill_user_like_keyward
    http = httpx2.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    client = SyncSCIMClient(http)
    results = check_server(client)
    failed = 0
    for r in results:
        kind = getattr(r, "resource_type", None)
        title = getattr(r, "title", "") or ""
        why = next((w for (t, p), w in EXCLUDED.items() if t == kind and title.startswith(p)), None)
        bad = r.status in (Status.ERROR, Status.CRITICAL)
        mark = "excluded" if bad and why else r.status.name
        line = f"{mark:10} {kind or '-':6} {title}"
        if bad or r.status == Status.DEVIATION:
            line += f": {r.reason}" + (f" ({why})" if why else "")
        print(line)
        if bad and not why:
            failed += 1
    print(f"\n{len(results)} checks, {failed} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
