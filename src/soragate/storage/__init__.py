"""Result and upload files on local disk, served with Range support."""

from soragate.storage.local import LocalStorage

__all__ = ["LocalStorage"]
