"""Where data files go: Iceberg's default layout, bounded for any partition value.

Iceberg's default puts a data file under its partition's folder,
`data/atlan_argo_workflow_name=<name>/month=<m>/`. A workflow name is source data: one over
255 bytes is a folder name no file system takes, one near 1 KB makes a key S3 refuses. A
partition path that long goes under `data/_long/<sha-256 of the path>/` instead: the partition
value in the metadata stays the full name (collision-free, queryable), only the folder is
bounded. Every writer of the table uses this provider (table property
`write.py-location-provider.impl`), pyiceberg's own deletes and rewrites included.
"""

from __future__ import annotations

import hashlib

from pyiceberg.table.locations import SimpleLocationProvider

from wflog_assets.iceberg._compat import PartitionKey

LOCATION_PROVIDER = "wflog_assets.iceberg.locations.BoundedLocationProvider"
MAX_FOLDER_BYTES = 200  # one folder name (file systems allow 255)
MAX_PATH_BYTES = 400  # the partition path (S3 keys allow 1,024 with the table's location)
LONG_FOLDER = "_long"


class BoundedLocationProvider(SimpleLocationProvider):
    """Iceberg's default data file locations, with overlong partition paths hashed."""

    def new_data_location(self, data_file_name: str, partition_key: PartitionKey | None = None) -> str:
        if partition_key is None:
            return f"{self.data_path}/{data_file_name}"
        path = partition_key.to_path()
        folders = path.split("/")
        if len(path.encode()) <= MAX_PATH_BYTES and all(len(f.encode()) <= MAX_FOLDER_BYTES for f in folders):
            return f"{self.data_path}/{path}/{data_file_name}"
        digest = hashlib.sha256(path.encode()).hexdigest()[:32]
        return f"{self.data_path}/{LONG_FOLDER}/{digest}/{data_file_name}"
