//! Blobs and refs: the names and wire types of the artifact store's API,
//! and the client that streams blobs in and out of it.
//!
//! The API (every endpoint needs a token; scopes in brackets):
//!
//! | request | answer |
//! | --- | --- |
//! | `POST /blobs` body (blobs:write) | 201 [`BlobInfo`] (200 if it existed) |
//! | `PUT /blobs/{digest}` body (blobs:write) | the same; 400 if the bytes do not match |
//! | `GET /blobs/{digest}` (blobs:read) | the bytes; `Range` gives 206 |
//! | `HEAD /blobs/{digest}` (blobs:read) | `Content-Length`, `ETag` |
//! | `DELETE /blobs/{digest}` (blobs:delete) | 204 |
//! | `POST /uploads` (blobs:write) | 201, `Location: /uploads/{id}` |
//! | `PATCH /uploads/{id}` chunk, `Content-Range` (blobs:write) | 202, [`UPLOAD_OFFSET`] |
//! | `HEAD /uploads/{id}` (blobs:write) | 204, [`UPLOAD_OFFSET`] |
//! | `PUT /uploads/{id}?digest=` (blobs:write) | 201 [`BlobInfo`] |
//! | `DELETE /uploads/{id}` (blobs:write) | 204 |
//! | `PUT /refs/{name}` [`SetRef`] (blobs:write) | [`RefInfo`] |
//! | `GET /refs/{name}` (blobs:read) | [`RefInfo`] |
//! | `DELETE /refs/{name}` (blobs:delete) | 204 |
//! | `GET /refs?prefix=` (blobs:read) | [`RefList`] |

mod client;
mod digest;
mod range;
mod refname;
mod retry;
mod stream;
mod transfer;
mod wire;

pub use client::{BlobClient, BlobError};
pub use digest::{Digest, DigestError, Hasher, SHA256_PREFIX};
pub use range::{ByteRange, ChunkRange, content_range, parse_content_range};
pub use refname::{MAX_REF_NAME, MAX_REF_SEGMENT, RefName, RefNameError, RefPrefix};
pub use retry::RetryPolicy;
pub use transfer::UploadSession;
pub use wire::{BlobInfo, DIGEST_PARAM, RefInfo, RefList, SetRef, UPLOAD_OFFSET, UploadStatus};
