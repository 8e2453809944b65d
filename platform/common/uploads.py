from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from common.problems import ApiError


def read_upload(upload: UploadedFile) -> bytes:
    """The bytes of an uploaded file, refused with 413 when it is over the upload limit.

    (The body-size middleware refuses oversize requests before they are read; this also covers a
    request whose size was not declared.)
    """
    limit = settings.UPLOAD_MAX_BYTES
    if upload.size is not None and upload.size > limit:
        raise ApiError(
            f"The file is {upload.size} bytes; the limit is {limit} bytes.",
            code="media_too_large",
            status_code=413,
        )
    return upload.read()
