"""Runs scim2-tester (PyPI) against a live keyward SCIM endpoint.

Usage: python check.py BASE_URL KEY

Prints every check and exits 1 if one that applies fails. A check "applies"
unless it needs what the contract excludes: creating and deleting Groups (the
tenant's roles are fixed; 403 by API.md section 12). The Group checks are run
and listed, as excluded when that 403 is what failed them.

One adaptation of the tester's random data, also printed: keyward's userName
is the user's email address (API.md section 12: anything else is 400
invalidValue), and emails/name.formatted are derived from userName/displayName,
so generated Users get an address as userName, that address as their one
work email, and their displayName as name.formatted. Everything else is the
tester's own.

One more check is listed as excluded, only when it fails for that reason: the
tester creates a User without roles and then PATCHes `add` roles, expecting
exactly what it added; a user created without roles holds `Default users`
(API.md section 12), and `add` keeps what is there (RFC 7644 3.5.2.1).
"""

import sys
import uuid

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server
import scim2_tester.filling as filling

# Group CRUD checks start by creating a Group (their fixture) and end by
# deleting it: keyward answers 403 by contract, so those checks are listed
# as excluded when, and only when, that 403 is why they failed. Groups are
# covered by tests/it/scim.rs instead.
FIXED_GROUPS = "Groups are the tenant's roles"

_fill = filling.fill_with_random_values
_generate = filling.generate_random_value


def _address():
    return f"{uuid.uuid4().hex[:12]}@{uuid.uuid4().hex[:8]}.test"


def _generate_like_keyward(context, path, *args, **kwargs):
    if str(path).lower().endswith("username"):
        return _address()
    return _generate(context, path, *args, **kwargs)


def _fill_user_like_keyward(context, obj, *args, **kwargs):
    obj = _fill(context, obj, *args, **kwargs)
    if type(obj).__name__ == "User" and hasattr(obj, "user_name"):
        address = _address()
        obj.user_name = address
        if getattr(obj, "emails", None):
            email = obj.emails[0]
            email.value, email.type = address, "work"
            obj.emails = [email]
        if getattr(obj, "name", None) is not None and getattr(obj, "display_name", None):
            obj.name.formatted = obj.display_name
    return obj


def main() -> int:
    base, key = sys.argv[1], sys.argv[2]
    # Every module that imported the fillers by name gets the adapted ones.
    for module in list(sys.modules.values()):
        if not getattr(module, "__name__", "").startswith("scim2_tester"):
            continue
        if getattr(module, "fill_with_random_values", None) is _fill:
            module.fill_with_random_values = _fill_user_like_keyward
        if getattr(module, "generate_random_value", None) is _generate:
            module.generate_random_value = _generate_like_keyward
    http = httpx2.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    client = SyncSCIMClient(http)
    results = check_server(client)
    failed = 0
    for r in results:
        kind = getattr(r, "resource_type", None)
        title = getattr(r, "title", "") or ""
        why = None
        if kind == "Group" and FIXED_GROUPS in str(r.reason or ""):
            why = "groups are the tenant's two fixed roles: 403 on create/delete"
        reason = str(r.reason or "")
        if (kind, title) == ("User", "check_add_attribute") and "'roles'" in reason and (
            "Returned value: [Roles(value='Default users'), " in reason
        ):
            why = "a user created without roles holds Default users (API.md section 12), and add keeps it"
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
