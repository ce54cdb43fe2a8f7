"""Pick the document store that OTN_PUSH_STORE names: folder (the embedded default), webdav or plone."""

from __future__ import annotations

from services.uploader.store import DocumentStore, FolderStore
from shared.settings import Settings, SettingsError


def make_store(settings: Settings) -> DocumentStore:
    """The store of `settings`; a store whose URL (or Plone account) is not set is refused naming the
    setting."""
    if settings.store == "plone":
        if not settings.plone_url:
            raise SettingsError("setting OTN_PUSH_PLONE_URL: required when OTN_PUSH_STORE=plone")
        # Plone takes no anonymous uploads: without the account every job would fail with 401
        if not settings.plone_user:
            raise SettingsError(
                "setting OTN_PUSH_PLONE_USER: required when OTN_PUSH_STORE=plone (the service account)"
            )
        if settings.plone_password is None or not settings.plone_password.get_secret_value():
            raise SettingsError("setting OTN_PUSH_PLONE_PASSWORD: required when OTN_PUSH_STORE=plone")
        from services.uploader.plone_store import PloneStore

        return PloneStore(
            settings.plone_url,
            settings.plone_user,
            settings.plone_password.get_secret_value(),
            path=settings.plone_path,
            node_folders=settings.plone_node_folders,
            timeout=settings.store_timeout,
        )
    if settings.store == "webdav":
        if not settings.webdav_url:
            raise SettingsError("setting OTN_PUSH_WEBDAV_URL: required when OTN_PUSH_STORE=webdav")
        from services.uploader.webdav_store import WebDavStore

        return WebDavStore(
            settings.webdav_url,
            settings.webdav_user,
            settings.webdav_password.get_secret_value() if settings.webdav_password else None,
            timeout=settings.store_timeout,
        )
    return FolderStore(settings.store_dir, base_url=settings.store_url)


def describe_store(settings: Settings) -> str:
    """The store for a log line, without credentials."""
    if settings.store == "plone":
        return f"plone {settings.plone_url}/{settings.plone_path.strip('/')}"
    if settings.store == "webdav":
        return f"webdav {settings.webdav_url}"
    return f"folder {settings.store_dir}"
