//! The JSON bodies and headers of the artifact store's API.

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::refname::RefName;

/// The answer to a finished upload, and what a blob is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInfo {
    /// The blob's name.
    pub digest: Digest,
    /// Its length in bytes.
    pub size: u64,
}

/// The body of `PUT /refs/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRef {
    /// The blob the ref is to point at; it must exist.
    pub digest: Digest,
}

/// A ref and the blob it points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefInfo {
    /// The ref's name.
    pub name: RefName,
    /// The blob.
    pub digest: Digest,
}

/// The answer to `GET /refs?prefix=`: the matching refs, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RefList {
    /// The refs.
    pub refs: Vec<RefInfo>,
}

/// The answer to `POST /uploads`: a new upload session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadStatus {
    /// The session's id; its URL is `/uploads/{id}`.
    pub id: String,
    /// Bytes received so far.
    pub offset: u64,
}

/// Header of upload answers: the number of bytes the session holds (the
/// offset the next chunk must start at). OCI's `Range: 0-END` says the same.
pub const UPLOAD_OFFSET: &str = "upload-offset";

/// Query parameter of `PUT /uploads/{id}` that declares the digest.
pub const DIGEST_PARAM: &str = "digest";
