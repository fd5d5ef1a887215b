"""Image bytes in any S3 (boto3): AWS, MinIO, Ceph RGW, Swift's s3api.

Data arrives as a stream; it is collected into parts of
`s3_store_large_object_chunk_size` MiB (S3 wants 5 MiB at least; one part is the most
kumo holds in memory) and sent as a multipart upload, each part's MD5 checked by S3
(Content-MD5). Completing the upload is the commit: an unfinished multipart upload is
no object, so a crash leaves nothing that looks whole, and `sweep_partial` aborts the
leftovers. An image smaller than one part is one plain PUT.

Locations are `s3://<bucket>/<image_id>`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from kumo.config import StoreSettings
from kumo.errors import NotFound, ServiceUnavailable
from kumo.store.base import ImageStore, StoredObject

READ_CHUNK = 4 * 1024 * 1024
MIB = 1024 * 1024
Chunk = bytes | bytearray | memoryview


def _md5(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store(ImageStore):
    scheme = "s3"

    def __init__(self, settings: StoreSettings, client: Any = None) -> None:
        self.settings = settings
        self.bucket = settings.s3_store_bucket
        self.part_size = settings.s3_store_large_object_chunk_size * MIB
        self.client = client or boto3.client(
            "s3", endpoint_url=settings.s3_store_host,
            aws_access_key_id=settings.s3_store_access_key,
            aws_secret_access_key=settings.s3_store_secret_key,
            region_name=settings.s3_store_region_name,
            config=Config(s3={"addressing_style": settings.s3_store_bucket_url_format},
                          retries={"max_attempts": 3, "mode": "standard"},
                          # Content-MD5 is what every S3 checks; the newer trailing
                          # CRC checksums are not (Swift's s3api, older MinIO, RGW).
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"))
        self._guard = threading.Lock()
        self._ready = False

    def _ensure_bucket(self) -> None:
        with self._guard:
            if self._ready:
                return
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _code(exc) not in ("404", "NoSuchBucket") or \
                        not self.settings.s3_store_create_bucket_on_put:
                    raise ServiceUnavailable(f"S3 bucket {self.bucket}: {exc}") from None
                self.client.create_bucket(Bucket=self.bucket)
            except BotoCoreError as exc:
                raise ServiceUnavailable(f"S3 does not answer at "
                                         f"{self.settings.s3_store_host}: {exc}") from None
            self._ready = True

    def _location(self, image_id: str) -> str:
        return self.object_location(self.bucket, image_id)

    def _key(self, location: str) -> str:
        return self.object_name(self.bucket, location)

    def put(self, image_id: str, chunks: Iterable[Chunk]) -> StoredObject:
        self._ensure_bucket()
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        size = 0
        try:
            for chunk in chunks:
                buffer += chunk  # a copy: the caller may reuse its buffer once we return
                size += len(chunk)
                while len(buffer) >= self.part_size:
                    if upload_id is None:
                        upload_id = self.client.create_multipart_upload(
                            Bucket=self.bucket, Key=image_id)["UploadId"]
                    part = bytes(buffer[: self.part_size])
                    del buffer[: self.part_size]
                    parts.append(self._part(image_id, upload_id, len(parts) + 1, part))
            if upload_id is None:
                self.client.put_object(Bucket=self.bucket, Key=image_id, Body=bytes(buffer),
                                       ContentMD5=_md5(buffer))
            else:
                if buffer:
                    parts.append(self._part(image_id, upload_id, len(parts) + 1, bytes(buffer)))
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=image_id, UploadId=upload_id,
                    MultipartUpload={"Parts": parts})
        except BaseException as exc:
            if upload_id is not None:
                with contextlib.suppress(ClientError, BotoCoreError):  # else sweep_partial
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=image_id,
                                                       UploadId=upload_id)
            if isinstance(exc, ClientError | BotoCoreError):
                raise ServiceUnavailable(f"S3 refused image {image_id}: {exc}") from exc
            raise
        return StoredObject(self._location(image_id), size)

    def _part(self, key: str, upload_id: str, number: int, data: bytes) -> dict[str, Any]:
        answer = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                         PartNumber=number, Body=data, ContentMD5=_md5(data))
        return {"ETag": answer["ETag"], "PartNumber": number}

    def get(self, location: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        key = self._key(location)
        extra = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key, **extra)["Body"]
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey"):
                raise NotFound(f"image data is missing from S3: {location}") from None
            if _code(exc) in ("416", "InvalidRange"):
                return iter(())
            raise ServiceUnavailable(f"S3: {exc}") from None
        return iter(body.iter_chunks(READ_CHUNK))

    def delete(self, location: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(location))
        except ClientError as exc:
            if _code(exc) not in ("404", "NoSuchKey"):
                raise ServiceUnavailable(f"S3: {exc}") from None

    def locations(self) -> list[str]:
        found = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket):
                found += [self._location(item["Key"]) for item in page.get("Contents", [])]
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchBucket"):
                return []  # nothing was ever written
            raise ServiceUnavailable(f"S3: {exc}") from None
        return found

    def sweep_partial(self, busy: Callable[[str], bool] = lambda _id: False) -> list[str]:
        try:
            answer = self.client.list_multipart_uploads(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchBucket"):
                return []
            raise ServiceUnavailable(f"S3: {exc}") from None
        swept = []
        for upload in answer.get("Uploads", []):
            if busy(upload["Key"]):
                continue
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                               UploadId=upload["UploadId"])
            swept.append(f"s3://{self.bucket}/{upload['Key']}?uploadId={upload['UploadId']}")
        return swept
