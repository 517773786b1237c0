"""An in-memory GCS bucket at the client boundary, for what the emulator cannot do.

gcp-storage-emulator neither enforces generation preconditions nor serves
gzip-transcoded objects; this fake does both, and records what it was asked.
"""

from __future__ import annotations

import gzip
from typing import Any, BinaryIO

CHUNK = 8192  # google-cloud-storage writes downloads in chunks of this size


class FakeBlob:
    """The few `google.cloud.storage.Blob` methods GCSStore calls."""

    def __init__(self, bucket: FakeBucket, name: str) -> None:
        self._bucket = bucket
        self.name = name
        stored = bucket.objects.get(name)
        self.generation: int | None = stored[1] if stored else None
        # Like GCS, `size` is the stored size: of the gzip bytes when encoded.
        self.size: int | None = len(stored[0]) if stored else None

    def download_to_file(self, file_obj: BinaryIO, **kwargs: Any) -> None:
        from google.api_core import exceptions as api

        stored = self._bucket.objects.get(self.name)
        if stored is None:
            raise api.NotFound(f"No such object: {self.name}")
        match = kwargs.get("if_generation_match")
        if match is not None and match != stored[1]:
            raise api.PreconditionFailed("generation does not match")
        data = stored[0]
        if self.name in self._bucket.gzipped:
            data = gzip.decompress(data)  # decompressive transcoding, as GCS does
        for start in range(0, len(data), CHUNK):
            self._bucket.served += len(data[start : start + CHUNK])
            file_obj.write(data[start : start + CHUNK])

    def upload_from_string(self, data: bytes, **kwargs: Any) -> None:
        from google.api_core import exceptions as api

        self._bucket.uploads.append({"name": self.name, **kwargs})
        current = self._bucket.objects.get(self.name, (b"", 0))[1]
        match = kwargs.get("if_generation_match")
        if match is not None and match != current:
            raise api.PreconditionFailed("conditionNotMet")
        self._bucket.generation += 1
        self._bucket.objects[self.name] = (data, self._bucket.generation)


class FakeBucket:
    """Objects as name -> (bytes, generation); records every upload's kwargs and
    counts the bytes its downloads handed over."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, int]] = {}
        self.gzipped: set[str] = set()
        self.uploads: list[dict[str, Any]] = []
        self.generation = 1000
        self.served = 0

    def blob(self, name: str) -> FakeBlob:
        return FakeBlob(self, name)

    def get_blob(self, name: str, **kwargs: Any) -> FakeBlob | None:
        return FakeBlob(self, name) if name in self.objects else None
