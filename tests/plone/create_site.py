"""Create the test Plone site.

Run by `zconsole run zope.conf create_site.py SERVICE_USER SERVICE_PASSWORD ADMIN_PASSWORD`:

A classic-UI site `Plone` with plone.restapi installed, the folders `data/repository` a node has, and a
service account that may add and edit content there (local roles), not a site manager.
"""

import sys

import transaction
from AccessControl.SecurityManagement import newSecurityManager
from plone.base.utils import get_installer
from plone.distribution.api import site as site_api
from zope.component.hooks import setSite

app = globals()["app"]  # given by zconsole
# zconsole keeps its own arguments first
service_user, service_password, admin_password = sys.argv[-3:]

if app.acl_users.getUserById("admin") is None:
    app.acl_users._doAddUser("admin", admin_password, ["Manager"], [])
admin = app.acl_users.getUserById("admin")
newSecurityManager(None, admin.__of__(app.acl_users))

site = site_api.create(
    app,
    "classic",
    {
        "site_id": "Plone",
        "title": "OTN test site",
        "setup_content": False,
        "default_language": "en",
        "portal_timezone": "UTC",
    },
)
setSite(site)
installer = get_installer(site)
if not installer.is_product_installed("plone.restapi"):
    installer.install_product("plone.restapi")

site.portal_registration.addMember(service_user, service_password, roles=("Member",))

site.invokeFactory("Folder", "data", title="Data")
site["data"].invokeFactory("Folder", "repository", title="Repository")
repository = site["data"]["repository"]
repository.manage_setLocalRoles(service_user, ["Contributor", "Editor", "Reader"])
repository.reindexObjectSecurity()
transaction.commit()
print("created site Plone with plone.restapi and service account", service_user)
